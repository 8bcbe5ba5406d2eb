// Text-to-image through the real server and worker processes with the bundled tiny-sd:
// the picture matches the prompt, knobs change it, the same seed gives the same bytes
// across restarts, bad fields get 400s, and a bare optimum export is served as it is.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel, type EaselProcess } from '../helpers/easel-process.js';

const TINY_SD = path.join(ROOT, 'models', 'tiny-sd');
const COLOURS = { red: [220, 30, 30], green: [30, 170, 40], blue: [30, 60, 220], yellow: [240, 220, 30] } as const;

interface Decoded {
  width: number;
  height: number;
  pixels: Buffer;
}

async function decode(bytes: Uint8Array): Promise<Decoded> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, pixels: data };
}

/** Fractions of the central square and of the 4-pixel border that are near the given colours. */
function colourShares(image: Decoded, centre: readonly number[], border: readonly number[]): { centre: number; border: number } {
  const near = (x: number, y: number, c: readonly number[]): boolean => {
    const o = (y * image.width + x) * 3;
    return Math.hypot((image.pixels[o] ?? 0) - c[0]!, (image.pixels[o + 1] ?? 0) - c[1]!, (image.pixels[o + 2] ?? 0) - c[2]!) < 100;
  };
  let inCentre = 0;
  let centreTotal = 0;
  let onBorder = 0;
  let borderTotal = 0;
  const mid = (image.width - 1) / 2;
  for (let y = 0; y < image.height; y += 1) {
    for (let x = 0; x < image.width; x += 1) {
      if (Math.abs(x - mid) < image.width / 8 && Math.abs(y - mid) < image.height / 8) {
        centreTotal += 1;
        if (near(x, y, centre)) inCentre += 1;
      }
      if (x < 4 || y < 4 || x >= image.width - 4 || y >= image.height - 4) {
        borderTotal += 1;
        if (near(x, y, border)) onBorder += 1;
      }
    }
  }
  return { centre: inCentre / centreTotal, border: onBorder / borderTotal };
}

async function generate(e: EaselProcess, body: Record<string, unknown>, headers: Record<string, string> = {}, model = 'tiny-sd'): Promise<Response> {
  return fetch(`${e.inference}/predictions/${model}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

async function png(e: EaselProcess, body: Record<string, unknown>, model = 'tiny-sd'): Promise<Uint8Array> {
  const res = await generate(e, body, {}, model);
  expect(res.status, await res.clone().text()).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/png');
  return new Uint8Array(await res.arrayBuffer());
}

function startWithTinySd(): Promise<EaselProcess> {
  return serveModel('tiny-sd', TINY_SD);
}

describe('text-to-image through the real server', () => {
  let easel: EaselProcess;
  beforeAll(async () => {
    easel = await startWithTinySd();
  }, 90_000);
  afterAll(() => easel?.stop());

  it('TorchServe\'s seed request: "a red circle on a blue background" is a red centre on a blue border', async () => {
    const image = await decode(await png(easel, { data: 'a red circle on a blue background', seed: 1 }));
    expect([image.width, image.height]).toEqual([64, 64]);
    const shares = colourShares(image, COLOURS.red, COLOURS.blue);
    expect(shares.centre).toBeGreaterThan(0.5);
    expect(shares.border).toBeGreaterThan(0.5);
  });

  it('a second prompt: a green square on a yellow background', async () => {
    const image = await decode(await png(easel, { prompt: 'a green square on a yellow background', seed: 1 }));
    const shares = colourShares(image, COLOURS.green, COLOURS.yellow);
    expect(shares.centre).toBeGreaterThan(0.5);
    expect(shares.border).toBeGreaterThan(0.5);
  });

  it('guidance 1 and 7.5, and DDIM and Euler, give different valid images', async () => {
    const base = { prompt: 'a red circle on a blue background', seed: 1 };
    const [g1, g75, euler] = await Promise.all([
      png(easel, { ...base, guidance_scale: 1 }),
      png(easel, { ...base, guidance_scale: 7.5 }),
      png(easel, { ...base, scheduler: 'euler' }),
    ]);
    expect(Buffer.from(g1).equals(Buffer.from(g75))).toBe(false);
    expect(Buffer.from(euler).equals(Buffer.from(g75))).toBe(false);
    for (const bytes of [g1, g75, euler]) {
      const image = await decode(bytes);
      expect([image.width, image.height]).toEqual([64, 64]);
      expect(colourShares(image, COLOURS.red, COLOURS.blue).border).toBeGreaterThan(0.5);
    }
  });

  it('shares denoising steps between concurrent requests (step-level batching), and says so in /metrics', async () => {
    const metrics = async (): Promise<{ count: number; sum: number }> => {
      const text = await (await fetch(`${easel.metrics}/metrics`)).text();
      return {
        count: Number(/easel_step_batch_size_count\{model="tiny-sd"\} (\d+)/.exec(text)?.[1] ?? 0),
        sum: Number(/easel_step_batch_size_sum\{model="tiny-sd"\} (\d+)/.exec(text)?.[1] ?? 0),
      };
    };
    const before = await metrics();
    await Promise.all([1, 2, 3, 4].map((seed) => png(easel, { prompt: 'a red circle on a blue background', seed, num_inference_steps: 30 })));
    const after = await metrics();
    const turns = after.count - before.count;
    const images = after.sum - before.sum;
    expect(images).toBe(4 * 30);
    // Fewer UNet turns than images stepped: requests shared them.
    expect(turns).toBeLessThan(images);
    // Every stage of the path is timed, and a denoise turn once per turn.
    const text = await (await fetch(`${easel.metrics}/metrics`)).text();
    const count = (stage: string): number => Number(new RegExp(`easel_stage_seconds_count\\{model="tiny-sd",stage="${stage}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    for (const stage of ['admission', 'queue_wait', 'text_encode', 'denoise', 'vae_decode', 'encode_image', 'ipc', 'http_write']) expect(count(stage), stage).toBeGreaterThan(0);
    expect(count('denoise')).toBe(after.count);
  });

  it('answers JSON with base64 images, the seeds and the parameters when asked, or for several images', async () => {
    const res = await generate(easel, { prompt: 'a green square on a yellow background', seed: 7, num_images: 2, width: 64, height: 64 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { images: string[]; seed: number; seeds: number[]; content_type: string; parameters: Record<string, unknown> };
    expect(body.images).toHaveLength(2);
    expect(body.seeds).toEqual([7, 8]);
    expect(body.parameters).toMatchObject({ num_inference_steps: 20, guidance_scale: 7.5, scheduler: 'ddim', width: 64, height: 64 });
    const [a, b] = body.images.map((s) => Buffer.from(s, 'base64'));
    expect(a!.equals(b!)).toBe(false);
    expect((await decode(a!)).width).toBe(64);
    // Image k of a request is the image of seed + k alone.
    const alone = await png(easel, { prompt: 'a green square on a yellow background', seed: 8 });
    expect(Buffer.from(alone).equals(b!)).toBe(true);

    const asked = await generate(easel, { prompt: 'a red circle on a blue background', seed: 1 }, { accept: 'application/json' });
    expect(asked.headers.get('content-type')).toMatch(/application\/json/);
    expect(((await asked.json()) as { images: string[] }).images).toHaveLength(1);
  });

  it('encodes JPEG and WebP, and gives the raw pixels only when asked for a tensor', async () => {
    for (const [format, type] of [['jpeg', 'image/jpeg'], ['webp', 'image/webp']] as const) {
      const res = await generate(easel, { prompt: 'a red circle on a blue background', seed: 1, output_format: format });
      expect(res.headers.get('content-type')).toBe(type);
      const image = await decode(new Uint8Array(await res.arrayBuffer()));
      expect([image.width, image.height]).toEqual([64, 64]);
    }
    const res = await generate(easel, { prompt: 'a red circle on a blue background', seed: 1, output_format: 'tensor' });
    const tensor = (await res.json()) as { shape: number[]; dtype: string; data: number[] };
    expect(tensor.shape).toEqual([1, 64, 64, 3]);
    expect(tensor.dtype).toBe('uint8');
    expect(tensor.data).toHaveLength(64 * 64 * 3);
  });

  it.each([
    [{ prompt: 'x', width: 60 }, 'width', /multiple of 16/],
    // tiny-sd's UNet halves the latent once: 8 (VAE) × 2; a multiple of 8 alone fails in the UNet.
    [{ prompt: 'x', width: 72 }, 'width', /multiple of 16 \(this model's latent factor\) from 16 to 256: 16, 32, …, 256; got 72/],
    [{ prompt: 'x', height: 1024 }, 'height', /from 16 to 256/],
    [{ prompt: 'x', num_inference_steps: 500 }, 'num_inference_steps', /from 1 to 100, got 500/],
    [{ prompt: 'x', guidance_scale: -1 }, 'guidance_scale', /from 0 to 30/],
    [{ prompt: 'x', scheduler: 'heun' }, 'scheduler', /ddim, euler, euler_a, dpmpp_2m, lcm, pndm/],
    [{ prompt: 'x', num_images: 9 }, 'num_images', /from 1 to 4/],
    [{ prompt: 'x', output_format: 'gif' }, 'output_format', /png, jpeg, webp/],
    [{ prompt: 'x', seed: -3 }, 'seed', /integer/],
    [{ prompt: 'x', steps: 10 }, 'steps', /unknown field steps/],
    [{ prompt: 42 }, 'prompt', /must be a string/],
    [{ negative_prompt: 'blurry' }, 'prompt', /prompt is required/],
    [{ prompt: 'x', scheduler_config: { timestep_spacing: 'sideways' } }, 'scheduler_config', /timestep_spacing/],
  ])('400 for %j names %s', async (body, field, message) => {
    const res = await generate(easel, body);
    expect(res.status).toBe(400);
    const error = (await res.json()) as { code: string; message: string; field: string };
    expect(error.field).toBe(field);
    expect(error.message).toMatch(message);
  });

  it('keeps serving after the bad requests', async () => {
    expect((await fetch(`${easel.inference}/ping`)).status).toBe(200);
    await png(easel, { prompt: 'a red circle on a blue background', num_inference_steps: 4 });
  });
});

describe('determinism', () => {
  it('the same request and seed give byte-identical PNGs across two server restarts', async () => {
    const request = { prompt: 'a green square on a yellow background', seed: 1234, scheduler: 'euler_a', num_inference_steps: 12 };
    const runs: Uint8Array[] = [];
    for (let i = 0; i < 2; i += 1) {
      const e = await startWithTinySd();
      try {
        runs.push(await png(e, request));
        if (i === 0) runs.push(await png(e, { ...request, seed: 1235 }));
      } finally {
        await e.stop();
      }
    }
    const [first, otherSeed, second] = runs.map((r) => Buffer.from(r));
    expect(first!.equals(second!)).toBe(true);
    expect(first!.equals(otherSeed!)).toBe(false);
  }, 120_000);
});

describe("a user's optimum export, without easel.yaml", () => {
  let dir: string;
  let easel: EaselProcess | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'easel-optimum-'));
    // The exact tree `optimum-cli export onnx --model runwayml/stable-diffusion-v1-5` writes.
    const tree = [
      'model_index.json',
      'scheduler/scheduler_config.json',
      'text_encoder/config.json',
      'text_encoder/model.onnx',
      'tokenizer/merges.txt',
      'tokenizer/special_tokens_map.json',
      'tokenizer/tokenizer_config.json',
      'tokenizer/vocab.json',
      'unet/config.json',
      'unet/model.onnx',
      'vae_decoder/config.json',
      'vae_decoder/model.onnx',
      'vae_encoder/config.json',
      'vae_encoder/model.onnx',
    ];
    for (const file of tree) {
      mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      copyFileSync(path.join(TINY_SD, file), path.join(dir, file));
    }
  });
  afterAll(async () => {
    await easel?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is served by pointing --models at the directory, with the defaults its configs imply', async () => {
    const files = readdirSync(dir, { recursive: true }).map(String);
    expect(files).not.toContain('easel.yaml');
    expect(files.filter((f) => statSync(path.join(dir, f)).isFile())).toHaveLength(14);
    easel = await serveModel('sd15', dir);
    // No easel.yaml: 50 steps, guidance 7.5, PNDM from scheduler_config.json, 64x64 from the UNet's sample size.
    const res = await generate(easel, { prompt: 'a red circle on a blue background', seed: 1 }, { accept: 'application/json' }, 'sd15');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { images: string[]; parameters: Record<string, unknown> };
    expect(body.parameters).toMatchObject({ num_inference_steps: 50, guidance_scale: 7.5, scheduler: 'pndm', width: 64, height: 64 });
    const image = await decode(Buffer.from(body.images[0]!, 'base64'));
    const shares = colourShares(image, COLOURS.red, COLOURS.blue);
    expect(shares.centre).toBeGreaterThan(0.5);
    expect(shares.border).toBeGreaterThan(0.5);
  }, 90_000);
});

describe('an export whose UNet takes a scalar timestep', () => {
  it('is served, and its description says that step-level batching is limited for it', async () => {
    const easel = await serveModel('sig', path.join(ROOT, 'test', 'fixtures', 'models', 'sd-signatures'));
    try {
      const image = await decode(await png(easel, { prompt: 'a red circle', num_inference_steps: 4, seed: 1 }, 'sig'));
      expect([image.width, image.height]).toEqual([32, 32]);
      const [desc] = (await (await fetch(`${easel.management}/models/sig`)).json()) as { batchingMode: string; batchSize: number; notes: string[] }[];
      expect(desc!.batchingMode).toBe('step');
      expect(desc!.batchSize).toBe(8);
      expect(desc!.notes.join(' ')).toMatch(/scalar timestep: step-level batching can only put requests at the same timestep/);
    } finally {
      await easel.stop();
    }
  }, 90_000);
});
