// DPM-Solver++ 2M (Lu et al. 2022), as diffusers' DPMSolverMultistepScheduler with
// algorithm_type "dpmsolver++", solver_order 2, solver_type "midpoint", final sigma 0.
import type { NoiseSource, Scheduler, StepOutput } from './scheduler.js';
import { interpolate, linspace, noiseTable, roundHalfEven, type SchedulerConfig } from './schedule.js';

function timestepsFor(config: SchedulerConfig, steps: number): number[] {
  const n = config.num_train_timesteps;
  switch (config.timestep_spacing) {
    case 'linspace':
      return linspace(0, n - 1, steps + 1)
        .map(roundHalfEven)
        .reverse()
        .slice(0, steps);
    case 'leading': {
      const ratio = Math.floor(n / (steps + 1));
      return Array.from({ length: steps + 1 }, (_, i) => i * ratio)
        .reverse()
        .slice(0, steps)
        .map((t) => t + config.steps_offset);
    }
    case 'trailing': {
      const ratio = n / steps;
      return Array.from({ length: Math.ceil(n / ratio) }, (_, i) => roundHalfEven(n - i * ratio) - 1);
    }
  }
}

/** alpha_t, sigma_t and lambda_t = log(alpha_t / sigma_t) from a VE sigma. */
function coefficients(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const s = sigma * alpha;
  return { alpha, sigma: s, lambda: Math.log(alpha) - Math.log(s) };
}

export class DpmSolverMultistepScheduler implements Scheduler {
  static readonly defaults: Partial<SchedulerConfig> = { timestep_spacing: 'linspace' };

  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma = 1;
  stepIndex = 0;
  /** The previous step's data prediction, for the second-order update. */
  #previous: Float32Array | null = null;

  constructor(
    readonly config: SchedulerConfig,
    steps: number,
  ) {
    const table = noiseTable(config);
    this.timesteps = timestepsFor(config, steps);
    this.sigmas = [...this.timesteps.map((t) => Math.fround(interpolate(table.trainSigmas, t))), 0];
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  beginAt(index: number): void {
    this.stepIndex = index;
  }

  /** In DPM-Solver's terms: α_t·x0 + σ_t·ε, with α_t = 1/√(σ²+1) and σ_t = σ·α_t at the call's sigma. */
  addNoise(original: Float32Array, noise: Float32Array, index: number): Float32Array {
    const { alpha, sigma } = coefficients(this.sigmas[index] ?? 0);
    return original.map((x, i) => Math.fround(alpha * x) + Math.fround(sigma * (noise[i] ?? 0)));
  }

  step(modelOutput: Float32Array, sample: Float32Array, _noise: NoiseSource): StepOutput {
    const index = this.stepIndex;
    const count = this.timesteps.length;
    const s0 = coefficients(this.sigmas[index] ?? 0);
    const t = coefficients(this.sigmas[index + 1] ?? 0);
    const x0 = this.#dataPrediction(modelOutput, sample, s0);

    // The last step goes to sigma 0 and is always first order (diffusers' lower_order_final
    // with final_sigmas_type "zero"); with order 2 no other step is lowered.
    const lastStep = index === count - 1;
    const h = t.lambda - s0.lambda;
    const expm = Math.exp(-h) - 1;
    const ratio = t.sigma / s0.sigma;
    let prevSample: Float32Array;
    if (this.#previous === null || lastStep) {
      prevSample = sample.map((x, i) => ratio * x - t.alpha * expm * (x0[i] ?? 0));
    } else {
      const previous = this.#previous;
      const s1 = coefficients(this.sigmas[index - 1] ?? 0);
      const r0 = (s0.lambda - s1.lambda) / h;
      prevSample = sample.map((x, i) => {
        const m0 = x0[i] ?? 0;
        const d1 = (1 / r0) * (m0 - (previous[i] ?? 0));
        return ratio * x - t.alpha * expm * m0 - 0.5 * t.alpha * expm * d1;
      });
    }
    this.#previous = x0;
    this.stepIndex += 1;
    return { prevSample, predictedOriginal: x0 };
  }

  #dataPrediction(modelOutput: Float32Array, sample: Float32Array, s: { alpha: number; sigma: number }): Float32Array {
    switch (this.config.prediction_type) {
      case 'epsilon':
        return sample.map((x, i) => (x - s.sigma * (modelOutput[i] ?? 0)) / s.alpha);
      case 'v_prediction':
        return sample.map((x, i) => s.alpha * x - s.sigma * (modelOutput[i] ?? 0));
      case 'sample':
        return modelOutput.slice();
    }
  }
}
