// tiny-sdxl through the real server against diffusers' own StableDiffusionXL{,Img2Img,Inpaint}Pipeline
// on the same weights (fixtures from tools/reference/diffusers_sdxl_fixtures.py): 3 schedulers ×
// 2 seeds × (text-to-image, image-to-image at strength 0.3 and 0.7, inpainting), one seed's
// requests setting every SDXL field (prompt_2, a negative prompt, micro-conditioning both ways,
// guidance_rescale) and the other none (force_zeros_for_empty_prompt); and inpainting through an
// inpainting UNet (9 input channels; a small random one, test/fixtures/models/tiny-sdxl-inpaint-unet,
// in tiny-sdxl's layout). All sent at once, so they share step batches; every pixel must be within
// 1/255 of diffusers'. Two more follow SDXL-Turbo's recipe (EulerAncestral, trailing, guidance 0).
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES as MODEL_FIXTURES, ROOT, startEasel, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';
import { rgbPixels } from '../helpers/pixels.js';

const TINY_SDXL = path.join(ROOT, 'models', 'tiny-sdxl');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'sdxl');

interface Case {
  readonly name: string;
  /** "inpaint": the inpainting-UNet layout. */
  readonly unet?: 'inpaint';
  readonly request: Record<string, unknown>;
}

const { cases } = JSON.parse(readFileSync(path.join(FIXTURES, 'cases.json'), 'utf8')) as { cases: Case[] };

function maxDiff(a: Buffer, b: Buffer): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe('tiny-sdxl against diffusers\' SDXL pipelines', () => {
  let easel: EaselProcess;
  let inpaintLayout: string;
  beforeAll(async () => {
    // tiny-sdxl with its UNet swapped for the inpainting one.
    inpaintLayout = mkdtempSync(path.join(tmpdir(), 'easel-sdxl-inpaint-'));
    cpSync(TINY_SDXL, inpaintLayout, { recursive: true, filter: (f) => !f.endsWith('easel.yaml') && !f.includes(`${path.sep}unet`) });
    cpSync(path.join(MODEL_FIXTURES, 'tiny-sdxl-inpaint-unet', 'unet'), path.join(inpaintLayout, 'unet'), { recursive: true });
    easel = await startEasel(['--models', `tiny-sdxl=${TINY_SDXL},tiny-sdxl-inpaint=${inpaintLayout}`]);
    await waitModelLive(easel, 'tiny-sdxl');
    await waitModelLive(easel, 'tiny-sdxl-inpaint');
  }, 90_000);
  afterAll(async () => {
    await easel?.stop();
    rmSync(inpaintLayout, { recursive: true, force: true });
  });

  it('covers what the issue names: 3 schedulers × 2 seeds × 4 modes, and the inpainting UNet at two strengths', () => {
    expect(cases.filter((c) => c.unet === 'inpaint')).toHaveLength(6);
    expect(cases.filter((c) => !c.unet && !c.name.startsWith('turbo'))).toHaveLength(24);
    // SDXL-Turbo's recipe too: EulerAncestral, trailing timesteps, guidance 0, 1 and 4 steps.
    expect(cases.filter((c) => c.name.startsWith('turbo')).map((c) => c.request.num_inference_steps)).toEqual([1, 4]);
    expect(new Set(cases.map((c) => c.request.scheduler)).size).toBe(3);
    expect(cases.filter((c) => !c.unet && c.request.mask_image).length).toBe(6);
    expect(cases.some((c) => Array.isArray(c.request.crops_coords_top_left))).toBe(true);
  });

  it('gives diffusers\' images, each pixel within 1/255, with all 32 requests in flight together', async () => {
    const file = (name: unknown): string => readFileSync(path.join(FIXTURES, String(name))).toString('base64');
    const results = await Promise.all(cases.map(async ({ name, unet, request }) => {
      const body = { ...request, ...(request.image ? { image: file(request.image) } : {}), ...(request.mask_image ? { mask_image: file(request.mask_image) } : {}) };
      const res = await fetch(`${easel.inference}/predictions/${unet ? 'tiny-sdxl-inpaint' : 'tiny-sdxl'}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status, await res.clone().text()).toBe(200);
      const ours = await rgbPixels(new Uint8Array(await res.arrayBuffer()));
      const theirs = await rgbPixels(readFileSync(path.join(FIXTURES, `${name}.png`)));
      expect(ours.length).toBe(theirs.length);
      return [name, maxDiff(ours, theirs)] as const;
    }));
    const worst = Object.fromEntries(results);
    expect(Object.values(worst).every((d) => d <= 1), JSON.stringify(worst)).toBe(true);
  }, 120_000);

  it('the same seed gives the same bytes alone, in a batch, and after a restart', async () => {
    const png = async (e: EaselProcess, body: Record<string, unknown>): Promise<Buffer> => {
      const res = await fetch(`${e.inference}/predictions/tiny-sdxl`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      return Buffer.from(await res.arrayBuffer());
    };
    const request = { prompt: 'a blue cross on a white background', seed: 77, scheduler: 'euler_a', num_inference_steps: 12, original_size: [80, 80] };
    const alone = await png(easel, request);
    const batched = await Promise.all([request, { ...request, seed: 78 }, { ...request, prompt: 'a red square' }, { ...request, num_inference_steps: 5 }].map((r) => png(easel, r)));
    expect(batched[0]!.equals(alone)).toBe(true);
    expect(batched[1]!.equals(alone)).toBe(false);
    const again = await startEasel(['--models', `tiny-sdxl=${TINY_SDXL}`]);
    try {
      await waitModelLive(again, 'tiny-sdxl');
      expect((await png(again, request)).equals(alone)).toBe(true);
    } finally {
      await again.stop();
    }
  }, 120_000);
});
