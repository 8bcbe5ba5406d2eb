import { describe, expect, it } from 'vitest';
import { BUILT_IN_LIMITS, parseTextToImage, resolveLimits } from './text-to-image-request.js';

const rules = { defaults: { num_inference_steps: 20, guidance_scale: 7.5, width: 64, height: 64, scheduler: 'ddim' }, limits: BUILT_IN_LIMITS, sizeMultiple: 16, schedulerConfig: { beta_schedule: 'scaled_linear' as const }, imageToImage: true, dualTextEncoder: false };
const sdxl = { ...rules, dualTextEncoder: true };

describe('text-to-image request fields', () => {
  it('takes SDXL\'s second prompts and micro-conditioning on a two-encoder layout only, as [height, width] pairs', () => {
    const p = parseTextToImage({ prompt: 'a', prompt_2: 'b', negative_prompt_2: 'c', original_size: [96, 72], crops_coords_top_left: [16, 8], target_size: [64, 64], guidance_rescale: 0.7 }, sdxl);
    expect(p).toMatchObject({ prompt_2: 'b', negative_prompt_2: 'c', original_size: [96, 72], crops_coords_top_left: [16, 8], target_size: [64, 64], guidance_rescale: 0.7 });
    expect(parseTextToImage({ prompt: 'a' }, sdxl)).not.toHaveProperty('original_size');
    expect(() => parseTextToImage({ prompt: 'a', prompt_2: 'b' }, rules)).toThrow(expect.objectContaining({ field: 'prompt_2', message: expect.stringMatching(/second text encoder/) }));
    expect(() => parseTextToImage({ prompt: 'a', negative_target_size: [64, 64] }, rules)).toThrow(expect.objectContaining({ field: 'negative_target_size' }));
    for (const bad of [[64], [64, 64, 64], [64.5, 64], [-1, 64], '64x64', [64, 1e9]]) {
      expect(() => parseTextToImage({ prompt: 'a', original_size: bad }, sdxl)).toThrow(expect.objectContaining({ field: 'original_size', message: expect.stringMatching(/\[height, width\]: two integers/) }));
    }
    expect(() => parseTextToImage({ prompt: 'a', crops_coords_top_left: [0] }, sdxl)).toThrow(expect.objectContaining({ message: expect.stringMatching(/\[top, left\]/) }));
    for (const bad of [-0.1, 1.5, 'x']) expect(() => parseTextToImage({ prompt: 'a', guidance_rescale: bad }, rules)).toThrow(expect.objectContaining({ field: 'guidance_rescale' }));
    expect(parseTextToImage({ prompt: 'a' }, rules).guidance_rescale).toBe(0);
  });

  it('an inpainting UNet (9 input channels) takes only requests with an image and a mask', () => {
    const png = new Uint8Array(Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAYAAACqaXHeAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAJ0lEQVR4nO3BAQ0AAADCoPdPbQ43oAAAAAAAAAAAAAAAAAAAAIDODUBAAAENBzWNAAAAAElFTkSuQmCC', 'base64'));
    const inpainting = { ...rules, inpaintingUnet: true };
    expect(() => parseTextToImage({ prompt: 'a' }, inpainting)).toThrow(expect.objectContaining({ field: 'image', message: expect.stringMatching(/inpainting UNet/) }));
    expect(() => parseTextToImage({ prompt: 'a', image: png }, inpainting)).toThrow(expect.objectContaining({ field: 'mask_image' }));
    expect(parseTextToImage({ prompt: 'a', image: png, mask_image: png }, inpainting).strength).toBe(1);
  });

  it('reads mask_alpha (OpenAI\'s transparent-repaints mask) only beside a mask, from JSON or multipart text', () => {
    const png = new Uint8Array(Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAYAAACqaXHeAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAJ0lEQVR4nO3BAQ0AAADCoPdPbQ43oAAAAAAAAAAAAAAAAAAAAIDODUBAAAENBzWNAAAAAElFTkSuQmCC', 'base64'));
    expect(parseTextToImage({ prompt: 'a', image: png, mask_image: png, mask_alpha: 'true' }, rules).mask_alpha).toBe(true);
    expect(parseTextToImage({ prompt: 'a', image: png, mask_image: png, mask_alpha: false }, rules)).not.toHaveProperty('mask_alpha');
    expect(() => parseTextToImage({ prompt: 'a', image: png, mask_alpha: true }, rules)).toThrow(expect.objectContaining({ field: 'mask_alpha', message: expect.stringMatching(/send mask_image too/) }));
    expect(() => parseTextToImage({ prompt: 'a', image: png, mask_image: png, mask_alpha: 'yes' }, rules)).toThrow(expect.objectContaining({ field: 'mask_alpha' }));
  });

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

  it('treats prototype names as unknown names, never as lookups on Object', () => {
    for (const name of ['constructor', '__proto__', 'hasOwnProperty', 'toString', 'valueOf']) {
      expect(() => parseTextToImage({ prompt: 'x', scheduler: name }, rules)).toThrow(/scheduler must be one of ddim/);
    }
    const proto = JSON.parse('{"prompt": "x", "__proto__": {"polluted": 1}}') as Record<string, unknown>;
    expect(() => parseTextToImage(proto, rules)).toThrow(/unknown field __proto__/);
    expect(() => parseTextToImage({ prompt: 'x', scheduler_config: JSON.parse('{"__proto__": 1}') as unknown }, rules)).toThrow(/unknown key __proto__/);
  });

  it('checks sizes against the latent factor, naming the allowed values, and trained_betas against num_train_timesteps', () => {
    expect(() => parseTextToImage({ prompt: 'x', width: 72 }, rules)).toThrow(/width must be a multiple of 16 .*16, 32, …, 1024; got 72/);
    expect(parseTextToImage({ prompt: 'x', width: 80 }, rules).width).toBe(80);
    const betas = (n: number): number[] => new Array(n).fill(0.01) as number[];
    expect(() => parseTextToImage({ prompt: 'x', scheduler_config: { trained_betas: betas(5000) } }, rules)).toThrow(/trained_betas must have num_train_timesteps \(1000\) values, got 5000/);
    expect(() => parseTextToImage({ prompt: 'x', scheduler_config: { trained_betas: betas(100_000) } }, rules)).toThrow(/trained_betas/);
    expect(parseTextToImage({ prompt: 'x', scheduler_config: { trained_betas: betas(1000) } }, rules).scheduler_config?.trained_betas).toHaveLength(1000);
  });

  it('refuses scheduler overrides that cannot make a schedule (they gave black images)', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ beta_start: 5, beta_end: 9 }, /beta_start/],
      [{ beta_start: 0.5, beta_end: 0.0001 }, /beta_start must be below beta_end/],
      [{ num_train_timesteps: 2 }, /num_train_timesteps \(2\) must be at least num_inference_steps \(20\)/],
      [{ num_train_timesteps: 100_000 }, /num_train_timesteps/],
      [{ steps_offset: 1_000_000_000 }, /steps_offset/],
      [{ steps_offset: 1000 }, /steps_offset must be below num_train_timesteps/],
    ];
    for (const [config, message] of bad) {
      expect(() => parseTextToImage({ prompt: 'x', scheduler_config: config }, rules), JSON.stringify(config)).toThrow(message);
    }
  });

  it('refuses easel.yaml limits it does not know or that are not positive numbers', () => {
    expect(resolveLimits({ max_width: 512 }).max_width).toBe(512);
    expect(() => resolveLimits({ max_steps: 10 })).toThrow(/limits.max_steps is not a text-to-image limit/);
    expect(() => resolveLimits({ max_width: 'big' })).toThrow(/must be a positive number/);
  });
});
