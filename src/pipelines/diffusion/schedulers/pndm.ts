// PNDM's pseudo linear multistep part (PLMS, Liu et al. 2022), as diffusers' PNDMScheduler
// with skip_prk_steps (Stable Diffusion's setting): one extra UNet call at the start, then
// Adams–Bashforth combinations of up to four previous noise predictions.
import { ddpmAddNoise, splitPrediction, type NoiseSource, type Scheduler, type StepOutput } from './scheduler.js';
import { arange, linspace, noiseTable, roundHalfEven, type NoiseTable, type SchedulerConfig } from './schedule.js';

function ascendingTimesteps(config: SchedulerConfig, steps: number): number[] {
  const n = config.num_train_timesteps;
  switch (config.timestep_spacing) {
    case 'linspace':
      return linspace(0, n - 1, steps).map(roundHalfEven);
    case 'leading': {
      const ratio = Math.floor(n / steps);
      return arange(0, steps, 1).map((i) => i * ratio + config.steps_offset);
    }
    case 'trailing':
      return arange(n, 0, -n / steps)
        .map((t) => roundHalfEven(t) - 1)
        .reverse();
  }
}

export class PndmScheduler implements Scheduler {
  static readonly defaults: Partial<SchedulerConfig> = { timestep_spacing: 'leading' };

  readonly timesteps: readonly number[];
  readonly sigmas = null;
  readonly initNoiseSigma = 1;
  stepIndex = 0;
  readonly #table: NoiseTable;
  readonly #stride: number;
  #history: Float32Array[] = [];
  #firstSample: Float32Array | null = null;
  /** The first call run (image-to-image skips those before it); PLMS counts its steps from there. */
  #begin = 0;

  constructor(
    readonly config: SchedulerConfig,
    steps: number,
  ) {
    this.#table = noiseTable(config);
    this.#stride = Math.floor(config.num_train_timesteps / steps);
    const ascending = ascendingTimesteps(config, steps);
    // [t0 .. t(n-2), t(n-2), t(n-1)] descending: the second-highest timestep is visited twice.
    const plms = [...ascending.slice(0, -1), ...ascending.slice(-2, -1), ...ascending.slice(-1)];
    this.timesteps = plms.reverse();
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  beginAt(index: number): void {
    this.stepIndex = index;
    this.#begin = index;
  }

  addNoise(original: Float32Array, noise: Float32Array, index: number): Float32Array {
    return ddpmAddNoise(this.#table.alphasCumprod, this.timesteps[index] ?? 0, original, noise);
  }

  step(modelOutput: Float32Array, sample: Float32Array, _noise: NoiseSource): StepOutput {
    // diffusers' counter: steps made since the run began (its timestep comes from the loop).
    const counter = this.stepIndex - this.#begin;
    let t = this.timesteps[this.stepIndex] ?? 0;
    let prevT = t - this.#stride;
    let output: Float32Array;
    let from = sample;
    if (counter !== 1) {
      this.#history = [...this.#history.slice(-3), modelOutput];
    } else {
      prevT = t;
      t += this.#stride;
    }
    const e = this.#history;
    const at = (back: number, i: number): number => e[e.length - back]?.[i] ?? 0;
    if (e.length === 1 && counter === 0) {
      output = modelOutput;
      this.#firstSample = sample;
    } else if (e.length === 1 && counter === 1) {
      // The extra call: average the two predictions at t0 and restart from the first sample.
      output = modelOutput.map((m, i) => (m + at(1, i)) / 2);
      from = this.#firstSample ?? sample;
      this.#firstSample = null;
    } else if (e.length === 2) {
      output = modelOutput.map((_, i) => (3 * at(1, i) - at(2, i)) / 2);
    } else if (e.length === 3) {
      output = modelOutput.map((_, i) => (23 * at(1, i) - 16 * at(2, i) + 5 * at(3, i)) / 12);
    } else {
      output = modelOutput.map((_, i) => (55 * at(1, i) - 59 * at(2, i) + 37 * at(3, i) - 9 * at(4, i)) / 24);
    }
    const result = this.#previousSample(from, t, prevT, output);
    this.stepIndex += 1;
    return result;
  }

  /** Formula (9) of the PNDM paper: x_{t-δ} from x_t and the combined ε. */
  #previousSample(sample: Float32Array, t: number, prevT: number, modelOutput: Float32Array): StepOutput {
    const alphaProd = this.#table.alphasCumprod[t] ?? 1;
    const alphaPrev = prevT >= 0 ? (this.#table.alphasCumprod[prevT] ?? 1) : this.#table.finalAlphaCumprod;
    const { original, epsilon } = splitPrediction(this.config.prediction_type, sample, modelOutput, alphaProd);
    const betaProd = 1 - alphaProd;
    const sampleCoeff = Math.sqrt(alphaPrev / alphaProd);
    const denominator = alphaProd * Math.sqrt(1 - alphaPrev) + Math.sqrt(alphaProd * betaProd * alphaPrev);
    const prevSample = sample.map((x, i) => sampleCoeff * x - ((alphaPrev - alphaProd) * (epsilon[i] ?? 0)) / denominator);
    return { prevSample, predictedOriginal: original };
  }
}
