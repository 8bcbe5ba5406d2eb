// Latent Consistency Model sampling (Luo et al. 2023), as diffusers' LCMScheduler: each step
// jumps to a denoised estimate, then re-noises it to the next timestep (except the last).
import { clamp, ddpmAddNoise, splitPrediction, type NoiseSource, type Scheduler, type StepOutput } from './scheduler.js';
import { linspace, noiseTable, type NoiseTable, type SchedulerConfig } from './schedule.js';

const SIGMA_DATA = 0.5;

export class LcmScheduler implements Scheduler {
  static readonly defaults: Partial<SchedulerConfig> = {
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    clip_sample: false,
  };

  readonly timesteps: readonly number[];
  readonly sigmas = null;
  readonly initNoiseSigma = 1;
  stepIndex = 0;
  readonly #table: NoiseTable;

  constructor(
    readonly config: SchedulerConfig,
    steps: number,
  ) {
    this.#table = noiseTable(config);
    // The distillation schedule (every k-th training step), sampled evenly; spacing is not used.
    const original = config.original_inference_steps;
    const k = Math.floor(config.num_train_timesteps / original);
    const distilled = Array.from({ length: original }, (_, i) => (original - i) * k - 1);
    this.timesteps = linspace(0, original, steps, false).map((x) => distilled[Math.floor(x)] ?? 0);
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

  step(modelOutput: Float32Array, sample: Float32Array, noise: NoiseSource): StepOutput {
    const index = this.stepIndex;
    const t = this.timesteps[index] ?? 0;
    const last = index === this.timesteps.length - 1;
    const prevT = last ? t : (this.timesteps[index + 1] ?? 0);
    const alphaProd = this.#table.alphasCumprod[t] ?? 1;
    const alphaPrev = prevT >= 0 ? (this.#table.alphasCumprod[prevT] ?? 1) : this.#table.finalAlphaCumprod;

    const scaled = t * this.config.timestep_scaling;
    const cSkip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2);
    const cOut = scaled / Math.sqrt(scaled ** 2 + SIGMA_DATA ** 2);
    const split = splitPrediction(this.config.prediction_type, sample, modelOutput, alphaProd);
    const original = this.config.clip_sample ? clamp(split.original, this.config.clip_sample_range) : split.original;
    const denoised = original.map((x0, i) => cOut * x0 + cSkip * (sample[i] ?? 0));
    this.stepIndex += 1;
    if (last) return { prevSample: denoised, predictedOriginal: denoised };
    const eps = noise.standardNormal(sample.length);
    const a = Math.sqrt(alphaPrev);
    const b = Math.sqrt(1 - alphaPrev);
    return { prevSample: denoised.map((d, i) => a * d + b * (eps[i] ?? 0)), predictedOriginal: denoised };
  }
}
