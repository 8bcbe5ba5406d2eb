// Every scheduler against values computed by diffusers' own scheduler code
// (test/fixtures/schedulers/diffusers.json, made by tools/reference/diffusers_scheduler_fixtures.py).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createScheduler, parseSchedulerConfig, schedulerName, type NoiseSource, type SchedulerName } from './index.js';

interface Case {
  config_name: string;
  config: Record<string, unknown>;
  scheduler: SchedulerName;
  num_inference_steps: number;
  timesteps: number[];
  sigmas?: number[];
  init_noise_sigma: number;
  initial_sample: number[];
  steps: { timestep: number; model_input: number[]; prev_sample: number[]; noise_used: number }[];
}
interface Fixture {
  source: string;
  model_outputs: number[][];
  noise: number[][];
  cases: Case[];
}

const fixture = JSON.parse(
  readFileSync(new URL('../../../../test/fixtures/schedulers/diffusers.json', import.meta.url), 'utf8'),
) as Fixture;

/** 1e-5, relative once values exceed 1 (float32 latents reach 2e4 at a cosine schedule's sigma_max). */
function expectClose(actual: ArrayLike<number>, expected: readonly number[], what: string): void {
  expect(actual.length, what).toBe(expected.length);
  expected.forEach((want, i) => {
    const got = actual[i] ?? NaN;
    const tolerance = 1e-5 * Math.max(1, Math.abs(want));
    if (!(Math.abs(got - want) <= tolerance)) {
      expect.fail(`${what}[${i}]: got ${got}, diffusers ${want}`);
    }
  });
}

function fixtureNoise(): NoiseSource & { used: number } {
  const source = {
    used: 0,
    standardNormal(count: number): Float32Array {
      const values = fixture.noise[source.used] ?? [];
      source.used += 1;
      expect(values.length).toBe(count);
      return Float32Array.from(values);
    },
  };
  return source;
}

describe(`schedulers match diffusers (${fixture.source})`, () => {
  it('covers every scheduler and spacing for SD 1.5 and an LCM config', () => {
    const seen = new Set(fixture.cases.map((c) => `${c.config_name}/${c.scheduler}/${String(c.config.timestep_spacing)}`));
    for (const name of ['ddim', 'euler', 'euler_a', 'dpmpp_2m', 'lcm', 'pndm']) {
      for (const spacing of ['leading', 'trailing', 'linspace']) expect(seen).toContain(`sd15/${name}/${spacing}`);
    }
    expect(seen).toContain('lcm/lcm/leading');
  });

  for (const c of fixture.cases) {
    const label = `${c.config_name} ${c.scheduler} ${String(c.config.timestep_spacing)} ${c.num_inference_steps} steps`;
    it(label, () => {
      const scheduler = createScheduler(c.scheduler, parseSchedulerConfig(c.config), c.num_inference_steps);
      expectClose(scheduler.timesteps, c.timesteps, 'timesteps');
      if (c.sigmas) expectClose(scheduler.sigmas ?? [], c.sigmas, 'sigmas');
      expectClose([scheduler.initNoiseSigma], [c.init_noise_sigma], 'init_noise_sigma');
      const noise = fixtureNoise();
      let sample = Float32Array.from(c.initial_sample);
      c.steps.forEach((expected, i) => {
        expectClose(scheduler.scaleModelInput(sample), expected.model_input, `step ${i} model input`);
        const before = noise.used;
        const out = scheduler.step(Float32Array.from(fixture.model_outputs[i] ?? []), sample, noise);
        expectClose(out.prevSample, expected.prev_sample, `step ${i} output`);
        expect(noise.used - before, `step ${i} noise draws`).toBe(expected.noise_used);
        // Feed diffusers' own output forward so that each step is checked on identical inputs.
        sample = Float32Array.from(expected.prev_sample);
      });
      expect(scheduler.stepIndex).toBe(c.steps.length);
    });
  }
});

describe('scheduler names', () => {
  it("accepts diffusers' class names", () => {
    expect(schedulerName('EulerAncestralDiscreteScheduler')).toBe('euler_a');
    expect(schedulerName('PNDMScheduler')).toBe('pndm');
    expect(schedulerName('heun')).toBeUndefined();
  });

  it('names the bad key of a scheduler config', () => {
    expect(() => parseSchedulerConfig({ beta_schedule: 'sigmoid' })).toThrow(/beta_schedule/);
  });
});
