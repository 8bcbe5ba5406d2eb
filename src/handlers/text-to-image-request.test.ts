import { describe, expect, it } from 'vitest';
import { BUILT_IN_LIMITS, parseTextToImage, resolveLimits } from './text-to-image-request.js';

const rules = { defaults: { num_inference_steps: 20, guidance_scale: 7.5, width: 64, height: 64, scheduler: 'ddim' }, limits: BUILT_IN_LIMITS, vaeScaleFactor: 8 };

describe('text-to-image request fields', () => {
  it('fills defaults, takes TorchServe\'s data as the prompt, and draws a seed when none is given', () => {
    const p = parseTextToImage({ data: 'a red circle' }, rules);
    expect(p).toMatchObject({ prompt: 'a red circle', negative_prompt: '', num_inference_steps: 20, guidance_scale: 7.5, width: 64, height: 64, scheduler: 'ddim', num_images: 1, output_format: 'png', preview_every: 0 });
    expect(Number.isInteger(p.seed)).toBe(true);
  });

  it('decodes an uploaded text file as the prompt', () => {
    expect(parseTextToImage({ data: new TextEncoder().encode('a blue square') }, rules).prompt).toBe('a blue square');
  });

  it('accepts diffusers class names and jpg', () => {
    const p = parseTextToImage({ prompt: 'x', scheduler: 'EulerAncestralDiscreteScheduler', output_format: 'jpg', scheduler_config: { timestep_spacing: 'trailing' } }, rules);
    expect(p.scheduler).toBe('euler_a');
    expect(p.output_format).toBe('jpeg');
    expect(p.scheduler_config).toEqual({ timestep_spacing: 'trailing' });
  });

  it('refuses easel.yaml limits it does not know or that are not positive numbers', () => {
    expect(resolveLimits({ max_width: 512 }).max_width).toBe(512);
    expect(() => resolveLimits({ max_steps: 10 })).toThrow(/limits.max_steps is not a text-to-image limit/);
    expect(() => resolveLimits({ max_width: 'big' })).toThrow(/must be a positive number/);
  });
});
