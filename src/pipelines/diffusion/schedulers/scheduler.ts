// The scheduler contract. A scheduler instance belongs to one request: its step index,
// multistep history and noise source live on it, never on the pipeline, so requests at
// different steps can share one UNet call.
import type { SchedulerConfig } from './schedule.js';

/** Where stochastic schedulers draw their noise from: the request's own seeded generator. */
export interface NoiseSource {
  standardNormal(count: number): Float32Array;
}

export interface StepOutput {
  /** The latents for the next step. */
  readonly prevSample: Float32Array;
  /** The current estimate of the clean latents (x0), for previews. */
  readonly predictedOriginal: Float32Array;
}

export interface Scheduler {
  readonly config: SchedulerConfig;
  /** The timestep given to the UNet at each call, in order; one entry per call. */
  readonly timesteps: readonly number[];
  /** Noise levels per call plus a final one, for the sigma-based schedulers. */
  readonly sigmas: readonly number[] | null;
  /** Multiplies the initial Gaussian latents. */
  readonly initNoiseSigma: number;
  /** How many calls have been stepped. */
  readonly stepIndex: number;
  /** Scales the latents into the UNet's input for the current step. */
  scaleModelInput(sample: Float32Array): Float32Array;
  /** Advances one step given the (guided) model output for the current step. */
  step(modelOutput: Float32Array, sample: Float32Array, noise: NoiseSource): StepOutput;
  /** Image-to-image: the run starts at call `index`, the calls before it skipped (diffusers' set_begin_index). */
  beginAt(index: number): void;
  /** Clean latents noised to the level of call `index` (diffusers' add_noise at that call's timestep). */
  addNoise(original: Float32Array, noise: Float32Array, index: number): Float32Array;
}

/** DDPM's forward process at training timestep t: √ᾱ_t·x0 + √(1-ᾱ_t)·ε (the DDPM-parameterised schedulers' add_noise). */
export function ddpmAddNoise(alphasCumprod: Float32Array, t: number, original: Float32Array, noise: Float32Array): Float32Array {
  const alphaProd = alphasCumprod[Math.trunc(t)] ?? 1;
  const a = Math.fround(Math.sqrt(alphaProd));
  const b = Math.fround(Math.sqrt(Math.fround(1 - alphaProd)));
  return original.map((x, i) => Math.fround(a * x) + Math.fround(b * (noise[i] ?? 0)));
}

/** x0 and ε from a model output, for the DDPM-parameterised schedulers (ᾱ_t given). */
export function splitPrediction(
  predictionType: SchedulerConfig['prediction_type'],
  sample: Float32Array,
  modelOutput: Float32Array,
  alphaProd: number,
): { original: Float32Array; epsilon: Float32Array } {
  const a = Math.sqrt(alphaProd);
  const b = Math.sqrt(1 - alphaProd);
  const original = new Float32Array(sample.length);
  const epsilon = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i += 1) {
    const x = sample[i] ?? 0;
    const m = modelOutput[i] ?? 0;
    switch (predictionType) {
      case 'epsilon':
        original[i] = (x - b * m) / a;
        epsilon[i] = m;
        break;
      case 'sample':
        original[i] = m;
        epsilon[i] = (x - a * m) / b;
        break;
      case 'v_prediction':
        original[i] = a * x - b * m;
        epsilon[i] = a * m + b * x;
        break;
    }
  }
  return { original, epsilon };
}

export function clamp(values: Float32Array, range: number): Float32Array {
  return values.map((v) => Math.min(range, Math.max(-range, v)));
}
