// The noise schedule shared by every scheduler: betas, cumulative alphas, sigmas and the
// placement of inference timesteps, following diffusers' formulas (`scheduling_*.py`).
// Tables are float32 where diffusers keeps them in float32 tensors, so the values agree to
// the last bits; per-step arithmetic is done in float64 and stored as float32.

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** The keys of diffusers' scheduler_config.json that Easel's schedulers read. */
export interface SchedulerConfig {
  readonly num_train_timesteps: number;
  readonly beta_start: number;
  readonly beta_end: number;
  readonly beta_schedule: BetaSchedule;
  readonly trained_betas: readonly number[] | null;
  readonly prediction_type: PredictionType;
  readonly timestep_spacing: TimestepSpacing;
  readonly steps_offset: number;
  readonly set_alpha_to_one: boolean;
  readonly clip_sample: boolean;
  readonly clip_sample_range: number;
  /** LCM: the step count the model was distilled at, and the boundary-condition scaling. */
  readonly original_inference_steps: number;
  readonly timestep_scaling: number;
}

const f32 = Math.fround;

/** torch.linspace in float32 (ATen computes from both ends, in the tensor's dtype). */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const from = f32(start);
  const to = f32(end);
  const step = f32(f32(to - from) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i += 1) {
    out[i] = i < halfway ? f32(from + f32(step * i)) : f32(to - f32(step * (steps - i - 1)));
  }
  return out;
}

/** Squared-cosine betas (Nichol & Dhariwal), diffusers' `betas_for_alpha_bar`. */
function cosineBetas(count: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas = new Float32Array(count);
  for (let i = 0; i < count; i += 1) {
    betas[i] = Math.min(1 - alphaBar((i + 1) / count) / alphaBar(i / count), maxBeta);
  }
  return betas;
}

export function betasFor(config: SchedulerConfig): Float32Array {
  const n = config.num_train_timesteps;
  if (config.trained_betas) return Float32Array.from(config.trained_betas);
  switch (config.beta_schedule) {
    case 'linear':
      return linspaceF32(config.beta_start, config.beta_end, n);
    case 'scaled_linear':
      return linspaceF32(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n).map((b) => f32(b * b));
    case 'squaredcos_cap_v2':
      return cosineBetas(n);
  }
}

export interface NoiseTable {
  readonly alphasCumprod: Float32Array;
  /** alphas_cumprod for "t = -1": 1, or alphas_cumprod[0] unless set_alpha_to_one. */
  readonly finalAlphaCumprod: number;
  /** sqrt((1 - ᾱ) / ᾱ) per training timestep, as the sigma-based schedulers define it. */
  readonly trainSigmas: Float32Array;
}

const tables = new Map<string, NoiseTable>();

/** The table for a config (cached: it depends only on the beta keys). */
export function noiseTable(config: SchedulerConfig): NoiseTable {
  const key = JSON.stringify([
    config.num_train_timesteps,
    config.beta_start,
    config.beta_end,
    config.beta_schedule,
    config.trained_betas,
    config.set_alpha_to_one,
  ]);
  let table = tables.get(key);
  if (!table) {
    const betas = betasFor(config);
    const alphasCumprod = new Float32Array(betas.length);
    // torch.cumprod accumulates float32 inputs in double and stores each partial product.
    let product = 1;
    betas.forEach((beta, i) => {
      product *= f32(1 - beta);
      alphasCumprod[i] = product;
    });
    const trainSigmas = alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
    const finalAlphaCumprod = config.set_alpha_to_one ? 1 : (alphasCumprod[0] ?? 1);
    table = { alphasCumprod, finalAlphaCumprod, trainSigmas };
    tables.set(key, table);
  }
  return table;
}

/** numpy's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** numpy.linspace(start, stop, num[, endpoint]) in float64. */
export function linspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const step = div > 0 ? (stop - start) / div : 0;
  const out = Array.from({ length: num }, (_, i) => start + i * step);
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** numpy.arange(start, stop, step) in float64. */
export function arange(start: number, stop: number, step: number): number[] {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  return Array.from({ length }, (_, i) => start + i * step);
}

/**
 * The inference timesteps of the DDIM family (DDIM, Euler, PNDM), descending, for a spacing:
 * `leading` (SD 1.x: multiples of 1000 // n plus steps_offset), `trailing` (ending at 999)
 * and `linspace` (evenly from 0 to 999). `integer` rounds linspace values as DDIM does; the
 * Euler schedulers keep them fractional.
 */
export function spacedTimesteps(config: SchedulerConfig, steps: number, integer: boolean): number[] {
  const n = config.num_train_timesteps;
  switch (config.timestep_spacing) {
    case 'linspace': {
      const values = linspace(0, n - 1, steps).reverse();
      return integer ? values.map(roundHalfEven) : values.map(f32);
    }
    case 'leading': {
      const ratio = Math.floor(n / steps);
      return arange(0, steps, 1)
        .map((i) => i * ratio + config.steps_offset)
        .reverse();
    }
    case 'trailing': {
      const ratio = n / steps;
      return arange(n, 0, -ratio).map((t) => roundHalfEven(t) - 1);
    }
  }
}

/** numpy.interp over the integer grid 0..values.length-1. */
export function interpolate(values: ArrayLike<number>, x: number): number {
  const last = values.length - 1;
  if (x <= 0) return values[0] ?? 0;
  if (x >= last) return values[last] ?? 0;
  const low = Math.floor(x);
  const a = values[low] ?? 0;
  const b = values[low + 1] ?? 0;
  return low === x ? a : (b - a) * (x - low) + a;
}

export const SCHEDULER_DEFAULTS: SchedulerConfig = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
  set_alpha_to_one: true,
  clip_sample: true,
  clip_sample_range: 1,
  original_inference_steps: 50,
  timestep_scaling: 10,
});
