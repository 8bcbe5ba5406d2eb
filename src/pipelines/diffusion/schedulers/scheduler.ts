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
