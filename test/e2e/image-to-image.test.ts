// Image-to-image and inpainting through the real server with tiny-sd: the init image as base64
// in JSON or as a multipart file; a low strength gives the image back and a mask keeps what it
// does not cover; a job streams previews; image-to-image and text-to-image requests sent together
// (step batching) each get what they get alone; bad images, masks and strengths get 400s naming
// the field, and a URL is never fetched.
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel, waitFor, type EaselProcess } from '../helpers/easel-process.js';
import { meanDiff, rgbPixels as pixels } from '../helpers/pixels.js';

const TINY_SD = path.join(ROOT, 'models', 'tiny-sd');

describe('image-to-image and inpainting through the server (tiny-sd)', () => {
  let easel: EaselProcess;
  let source: Uint8Array;
  const predict = (body: Record<string, unknown>): Promise<Response> =>
    fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const png = async (body: Record<string, unknown>): Promise<Uint8Array> => {
    const res = await predict(body);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    return new Uint8Array(await res.arrayBuffer());
  };
  const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

  beforeAll(async () => {
    easel = await serveModel('tiny-sd', TINY_SD);
    source = await png({ prompt: 'a red circle on a blue background', seed: 4 });
  }, 90_000);
  afterAll(() => easel?.stop());

  it('a low strength gives the image back (within the VAE round trip), a high one follows the new prompt; JSON base64 and a multipart file are the same request', async () => {
    const low = await png({ prompt: 'a red circle on a blue background', image: b64(source), strength: 0.01, num_inference_steps: 100, seed: 1 });
    expect((await sharp(low).metadata()).width).toBe(64);
    expect(meanDiff(await pixels(low), await pixels(source), 64)).toBeLessThan(6);
    const high = await png({ prompt: 'a green square on a yellow background', image: `data:image/png;base64,${b64(source)}`, strength: 0.9, seed: 1 });
    expect(meanDiff(await pixels(high), await pixels(source), 64)).toBeGreaterThan(20);
    const form = new FormData();
    form.append('prompt', 'a green square on a yellow background');
    form.append('image', new Blob([source], { type: 'image/png' }), 'init.png');
    form.append('strength', '0.9');
    form.append('seed', '1');
    const res = await fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', body: form });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(high))).toBe(true);
  });

  it('inpainting repaints under the white of the mask and keeps the rest; the same seed gives the same bytes', async () => {
    // White (repaint) on the left half, black (keep) on the right.
    const mask = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#000' } })
      .composite([{ input: await sharp({ create: { width: 32, height: 64, channels: 3, background: '#fff' } }).png().toBuffer(), left: 0, top: 0 }])
      .png()
      .toBuffer();
    const body = { prompt: 'a green square on a yellow background', image: b64(source), mask_image: b64(mask), seed: 2 };
    const painted = await png(body);
    const [after, before] = [await pixels(painted), await pixels(source)];
    expect(meanDiff(after, before, 64, (x) => x >= 40)).toBeLessThan(6);
    expect(meanDiff(after, before, 64, (x) => x < 24)).toBeGreaterThan(20);
    expect(Buffer.from(await png(body)).equals(Buffer.from(painted))).toBe(true);
  });

  it('takes a finished job\'s output as the image ({"job": id, "output": 0}), in a prediction and in a job, as if its bytes were sent', async () => {
    const submitted = await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd', input: { prompt: 'a red circle on a blue background', seed: 4 } }) });
    const { id } = (await submitted.json()) as { id: string };
    await waitFor(async () => ((await (await fetch(`${easel.inference}/v1/jobs/${id}`)).json()) as { status: string }).status === 'succeeded', 30_000, `job ${id}`);
    const request = { prompt: 'a green square on a yellow background', strength: 0.6, seed: 5 };
    const byBytes = await png({ ...request, image: b64(source) });
    expect(Buffer.from(await png({ ...request, image: { job: id, output: 0 } })).equals(Buffer.from(byBytes))).toBe(true);
    const job = await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd', input: { ...request, image: { job: id } } }) });
    const { id: second } = (await job.json()) as { id: string };
    await waitFor(async () => ((await (await fetch(`${easel.inference}/v1/jobs/${second}`)).json()) as { status: string }).status === 'succeeded', 30_000, `job ${second}`);
    expect(Buffer.from(await (await fetch(`${easel.inference}/v1/jobs/${second}/outputs/0`)).arrayBuffer()).equals(Buffer.from(byBytes))).toBe(true);
    for (const [image, message] of [[{ job: id, output: 3 }, /has 1 output\(s\)/], [{ job: 'nope' }, /there is no job/], [{ job: id, extra: 1 }, /\{"job": "<job id>"/]] as const) {
      const res = await predict({ ...request, image });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ field: 'image', message: expect.stringMatching(message) });
    }
  });

  it('a job with an init image streams previews and progress counted over the steps it runs', async () => {
    const res = await fetch(`${easel.inference}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-sd', input: { prompt: 'a green square on a yellow background', image: b64(source), strength: 0.5, num_inference_steps: 20, preview_every: 2, seed: 3 } }),
    });
    expect(res.status, await res.clone().text()).toBe(202);
    const job = (await res.json()) as { id: string; input: Record<string, unknown> };
    // The stored input shows the image as its size, not its bytes.
    expect(job.input.image).toMatch(/^<\d+ bytes>$/);
    const events = await (await fetch(`${easel.inference}/v1/jobs/${job.id}/events`, { headers: { 'last-event-id': '0' } })).text();
    const progress = [...events.matchAll(/event: progress\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]!) as { step: number; total: number });
    expect(progress.at(-1)).toMatchObject({ step: 10, total: 10 });
    expect(events).toMatch(/event: preview\n/);
    let done: { status: string; outputs: { url: string }[] } | undefined;
    await waitFor(async () => (done = (await (await fetch(`${easel.inference}/v1/jobs/${job.id}`)).json()) as typeof done)!.status === 'succeeded', 30_000, 'the job');
    const output = new Uint8Array(await (await fetch(`${easel.inference}${done!.outputs[0]!.url}`)).arrayBuffer());
    expect(Buffer.from(output).equals(Buffer.from(await png({ prompt: 'a green square on a yellow background', image: b64(source), strength: 0.5, num_inference_steps: 20, seed: 3 })))).toBe(true);
  });

  it('image-to-image at two strengths, inpainting and text-to-image sent together each get what they get alone', async () => {
    const bodies = [
      { prompt: 'a blue triangle on a white background', seed: 5 },
      { prompt: 'a green square on a yellow background', image: b64(source), strength: 0.3, seed: 6 },
      { prompt: 'a green square on a yellow background', image: b64(source), strength: 0.8, seed: 7 },
      { prompt: 'a blue triangle on a white background', image: b64(source), mask_image: b64(await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } }).png().toBuffer()), seed: 8 },
    ];
    const together = await Promise.all(bodies.map(png));
    for (const [i, body] of bodies.entries()) expect(Buffer.from(together[i]!).equals(Buffer.from(await png(body))), `request ${i}`).toBe(true);
  });

  it('refuses bad images, masks and strengths with a 400 naming the field; a URL is not fetched', async () => {
    const refused = async (body: Record<string, unknown>, field: string, message: RegExp): Promise<void> => {
      const res = await predict({ prompt: 'x', ...body });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ field, message: expect.stringMatching(message) });
    };
    await refused({ image: b64(source), strength: 0 }, 'strength', /above 0 and at most 1/);
    await refused({ image: b64(source), strength: 1.5 }, 'strength', /above 0 and at most 1/);
    await refused({ image: b64(source), strength: 0.01, num_inference_steps: 20 }, 'strength', /at least 1/);
    await refused({ strength: 0.5 }, 'strength', /send image/);
    await refused({ mask_image: b64(source) }, 'mask_image', /send image too/);
    const small = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#fff' } }).png().toBuffer();
    await refused({ image: b64(source), mask_image: b64(small) }, 'mask_image', /64×64; got 32×32/);
    await refused({ image: 'http://127.0.0.1:1/x.png' }, 'image', /URLs are not fetched/);
    await refused({ image: b64(new TextEncoder().encode('not an image at all')) }, 'image', /PNG, JPEG or WebP/);
    // A header that claims more pixels than allowed is refused before any decoding.
    const huge = await sharp({ create: { width: 5000, height: 4000, channels: 3, background: '#000' } }).png({ compressionLevel: 9 }).toBuffer();
    await refused({ image: b64(huge) }, 'image', /at most 16777216 pixels, got 5000×4000/);
  });
});
