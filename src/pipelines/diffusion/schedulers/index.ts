// The scheduler registry: Easel's names, diffusers' class names as aliases, and the config
// merge (Easel defaults < the scheduler class's defaults < scheduler_config.json < request).
import { z } from 'zod';
import { DdimScheduler } from './ddim.js';
import { DpmSolverMultistepScheduler } from './dpm-solver.js';
import { EulerAncestralScheduler, EulerScheduler } from './euler.js';
import { LcmScheduler } from './lcm.js';
import { PndmScheduler } from './pndm.js';
import { SCHEDULER_DEFAULTS, type SchedulerConfig } from './schedule.js';
import type { Scheduler } from './scheduler.js';

export type { NoiseSource, Scheduler, StepOutput } from './scheduler.js';
export type { SchedulerConfig } from './schedule.js';

interface SchedulerClass {
  readonly defaults: Partial<SchedulerConfig>;
  new (config: SchedulerConfig, steps: number): Scheduler;
}

export const SCHEDULER_NAMES = ['ddim', 'euler', 'euler_a', 'dpmpp_2m', 'lcm', 'pndm'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

// Maps, not plain objects: a user's "constructor" or "__proto__" is just an unknown name.
const SCHEDULERS: ReadonlyMap<string, SchedulerClass> = new Map<SchedulerName, SchedulerClass>([
  ['ddim', DdimScheduler],
  ['euler', EulerScheduler],
  ['euler_a', EulerAncestralScheduler],
  ['dpmpp_2m', DpmSolverMultistepScheduler],
  ['lcm', LcmScheduler],
  ['pndm', PndmScheduler],
]);

const ALIASES: ReadonlyMap<string, SchedulerName> = new Map<string, SchedulerName>([
  ['DDIMScheduler', 'ddim'],
  ['EulerDiscreteScheduler', 'euler'],
  ['EulerAncestralDiscreteScheduler', 'euler_a'],
  ['euler_ancestral', 'euler_a'],
  ['DPMSolverMultistepScheduler', 'dpmpp_2m'],
  ['dpm++_2m', 'dpmpp_2m'],
  ['dpmsolver_multistep', 'dpmpp_2m'],
  ['LCMScheduler', 'lcm'],
  ['PNDMScheduler', 'pndm'],
  ['plms', 'pndm'],
]);

/** Easel's scheduler name for an Easel name or a diffusers class name, or undefined. */
export function schedulerName(name: string): SchedulerName | undefined {
  if (SCHEDULERS.has(name)) return name as SchedulerName;
  return ALIASES.get(name);
}

const configSchema = z
  .object({
    num_train_timesteps: z.number().int().min(2).max(10_000),
    beta_start: z.number().positive().lt(1),
    beta_end: z.number().positive().lt(1),
    beta_schedule: z.enum(['linear', 'scaled_linear', 'squaredcos_cap_v2']),
    trained_betas: z.array(z.number().gt(0).lt(1)).max(10_000).nullable(),
    prediction_type: z.enum(['epsilon', 'v_prediction', 'sample']),
    timestep_spacing: z.enum(['leading', 'trailing', 'linspace']),
    steps_offset: z.number().int().min(0).max(10_000),
    set_alpha_to_one: z.boolean(),
    clip_sample: z.boolean(),
    clip_sample_range: z.number().positive().max(1e6),
    original_inference_steps: z.number().int().positive().max(10_000),
    timestep_scaling: z.number().positive().max(1e4),
  })
  .partial();

export const SCHEDULER_CONFIG_KEYS: readonly string[] = Object.keys(configSchema.shape);

/**
 * The keys Easel reads from a scheduler_config.json; a malformed value throws naming it. A
 * file's other keys (`_class_name`, ...) are ignored; with `strict` (a request's overrides)
 * an unknown key is an error.
 */
export function parseSchedulerConfig(raw: unknown, strict = false): Partial<SchedulerConfig> {
  const picked: Record<string, unknown> = {};
  if (raw && typeof raw === 'object') {
    const unknown = strict ? Object.keys(raw).filter((k) => !SCHEDULER_CONFIG_KEYS.includes(k)) : [];
    if (unknown.length > 0) throw new Error(`unknown key ${unknown.join(', ')}; allowed: ${SCHEDULER_CONFIG_KEYS.join(', ')}`);
    for (const key of Object.keys(configSchema.shape)) {
      const value = (raw as Record<string, unknown>)[key];
      if (value !== undefined) picked[key] = value;
    }
  }
  const parsed = configSchema.safeParse(picked);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`scheduler config: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data as Partial<SchedulerConfig>;
}

/** A fresh scheduler for one request. */
export function createScheduler(
  name: SchedulerName,
  config: Partial<SchedulerConfig>,
  steps: number,
  overrides: Partial<SchedulerConfig> = {},
): Scheduler {
  const cls = SCHEDULERS.get(name);
  if (!cls) throw new Error(`unknown scheduler ${name}`);
  const merged: SchedulerConfig = { ...SCHEDULER_DEFAULTS, ...cls.defaults, ...config, ...overrides };
  return new cls(merged, steps);
}
