// Euler and Euler ancestral (Karras et al. 2022, k-diffusion), as diffusers'
// EulerDiscreteScheduler and EulerAncestralDiscreteScheduler: sigma-space steps over
// sigmas interpolated at the (possibly fractional) inference timesteps.
import type { NoiseSource, Scheduler, StepOutput } from './scheduler.js';
import { interpolate, noiseTable, spacedTimesteps, type SchedulerConfig } from './schedule.js';

abstract class SigmaScheduler implements Scheduler {
  static readonly defaults: Partial<SchedulerConfig> = { timestep_spacing: 'linspace' };

  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  stepIndex = 0;

  constructor(
    readonly config: SchedulerConfig,
    steps: number,
  ) {
    const table = noiseTable(config);
    this.timesteps = spacedTimesteps(config, steps, false);
    this.sigmas = [...this.timesteps.map((t) => Math.fround(interpolate(table.trainSigmas, t))), 0];
    const max = Math.max(...this.sigmas);
    const spacing = config.timestep_spacing;
    this.initNoiseSigma = spacing === 'linspace' || spacing === 'trailing' ? max : Math.fround(Math.sqrt(max * max + 1));
  }

  protected get sigma(): number {
    return this.sigmas[this.stepIndex] ?? 0;
  }

  beginAt(index: number): void {
    this.stepIndex = index;
  }

  addNoise(original: Float32Array, noise: Float32Array, index: number): Float32Array {
    const sigma = this.sigmas[index] ?? 0;
    return original.map((x, i) => x + Math.fround((noise[i] ?? 0) * sigma));
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    const scale = 1 / Math.sqrt(this.sigma * this.sigma + 1);
    return sample.map((x) => x * scale);
  }

  protected predictOriginal(modelOutput: Float32Array, sample: Float32Array): Float32Array {
    const sigma = this.sigma;
    if (this.config.prediction_type === 'v_prediction') {
      const c = -sigma / Math.sqrt(sigma * sigma + 1);
      const d = 1 / (sigma * sigma + 1);
      return modelOutput.map((m, i) => m * c + (sample[i] ?? 0) * d);
    }
    if (this.config.prediction_type === 'sample') return modelOutput.slice();
    return modelOutput.map((m, i) => (sample[i] ?? 0) - sigma * m);
  }

  abstract step(modelOutput: Float32Array, sample: Float32Array, noise: NoiseSource): StepOutput;
}

export class EulerScheduler extends SigmaScheduler {
  step(modelOutput: Float32Array, sample: Float32Array, _noise: NoiseSource): StepOutput {
    const sigma = this.sigma;
    const original = this.predictOriginal(modelOutput, sample);
    const dt = (this.sigmas[this.stepIndex + 1] ?? 0) - sigma;
    const prevSample = sample.map((x, i) => x + ((x - (original[i] ?? 0)) / sigma) * dt);
    this.stepIndex += 1;
    return { prevSample, predictedOriginal: original };
  }
}

export class EulerAncestralScheduler extends SigmaScheduler {
  step(modelOutput: Float32Array, sample: Float32Array, noise: NoiseSource): StepOutput {
    const from = this.sigma;
    const to = this.sigmas[this.stepIndex + 1] ?? 0;
    const original = this.predictOriginal(modelOutput, sample);
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(Math.max(0, to * to - up * up));
    const dt = down - from;
    const eps = noise.standardNormal(sample.length);
    const prevSample = sample.map((x, i) => x + ((x - (original[i] ?? 0)) / from) * dt + (eps[i] ?? 0) * up);
    this.stepIndex += 1;
    return { prevSample, predictedOriginal: original };
  }
}
