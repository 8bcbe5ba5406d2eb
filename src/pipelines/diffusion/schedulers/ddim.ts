// DDIM (Song et al. 2020), deterministic (eta = 0), as diffusers' DDIMScheduler.
import { clamp, ddpmAddNoise, splitPrediction, type NoiseSource, type Scheduler, type StepOutput } from './scheduler.js';
import { noiseTable, spacedTimesteps, type NoiseTable, type SchedulerConfig } from './schedule.js';

export class DdimScheduler implements Scheduler {
  static readonly defaults: Partial<SchedulerConfig> = { timestep_spacing: 'leading', clip_sample: true };

  readonly timesteps: readonly number[];
  readonly sigmas = null;
  readonly initNoiseSigma = 1;
  stepIndex = 0;
  readonly #table: NoiseTable;
  readonly #stride: number;

  constructor(
    readonly config: SchedulerConfig,
    steps: number,
  ) {
    this.#table = noiseTable(config);
    this.timesteps = spacedTimesteps(config, steps, true);
    this.#stride = Math.floor(config.num_train_timesteps / steps);
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  beginAt(index: number): void {
    this.stepIndex = index;
  }

  addNoise(original: Float32Array, noise: Float32Array, index: number): Float32Array {
    return ddpmAddNoise(this.#table.alphasCumprod, this.timesteps[index] ?? 0, original, noise);
  }

  step(modelOutput: Float32Array, sample: Float32Array, _noise: NoiseSource): StepOutput {
    const t = this.timesteps[this.stepIndex] ?? 0;
    // diffusers steps back by 1000 // n whatever the spacing; kept for identical results.
    const prevT = t - this.#stride;
    const alphaProd = this.#table.alphasCumprod[t] ?? 1;
    const alphaPrev = prevT >= 0 ? (this.#table.alphasCumprod[prevT] ?? 1) : this.#table.finalAlphaCumprod;
    const split = splitPrediction(this.config.prediction_type, sample, modelOutput, alphaProd);
    const original = this.config.clip_sample ? clamp(split.original, this.config.clip_sample_range) : split.original;
    const a = Math.sqrt(alphaPrev);
    const b = Math.sqrt(1 - alphaPrev);
    const prevSample = original.map((x0, i) => a * x0 + b * (split.epsilon[i] ?? 0));
    this.stepIndex += 1;
    return { prevSample, predictedOriginal: original };
  }
}
