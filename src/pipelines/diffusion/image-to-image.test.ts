// Image-to-image and inpainting on tiny-sd (its VAE encoder, an ordinary 4-channel UNet): a low
// strength gives back the init image within the VAE's round trip; inpainting keeps the unmasked
// region; the run takes the last strength × steps calls of the schedule, for every scheduler.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionOptions } from '../../runtime/onnx-runtime.js';
import { DiffusionPipeline, isFinished, skippedSteps, stepsDone, totalSteps, type GenerationRequest, type InitImage, type RgbImage } from './diffusion-pipeline.js';
import { SCHEDULER_NAMES } from './schedulers/index.js';

const MODEL = path.resolve(import.meta.dirname, '../../../models/tiny-sd');
const CPU: SessionOptions = { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 1, interOpThreads: 1 };
const SIZE = 64;

function request(overrides: Partial<GenerationRequest> = {}): GenerationRequest {
  return { prompt: 'a red circle on a blue background', negativePrompt: '', steps: 20, guidanceScale: 7.5, width: SIZE, height: SIZE, seed: 3, scheduler: 'ddim', ...overrides };
}

async function generate(pipeline: DiffusionPipeline, requests: GenerationRequest[]): Promise<RgbImage[]> {
  const states = await pipeline.begin(requests);
  while (!states.every(isFinished)) await pipeline.denoise(states);
  return pipeline.finish(states);
}

/** Interleaved uint8 RGB → planar [-1, 1], as the handler gives the pipeline. */
function planar(image: RgbImage): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[c * plane + i] = (image.data[i * 3 + c]! / 255) * 2 - 1;
  return out;
}

/** Mean absolute difference per channel value (0–255) over the pixels `where` takes. */
function meanDiff(a: RgbImage, b: RgbImage, where: (x: number, y: number) => boolean = () => true): number {
  let sum = 0;
  let n = 0;
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      if (!where(x, y)) continue;
      for (let c = 0; c < 3; c++) sum += Math.abs(a.data[(y * a.width + x) * 3 + c]! - b.data[(y * a.width + x) * 3 + c]!);
      n += 3;
    }
  }
  return sum / n;
}

describe('image-to-image and inpainting (tiny-sd)', () => {
  let pipeline: DiffusionPipeline;
  let source: RgbImage;
  /** The source through the VAE and back: what a run that keeps the image can give at best. */
  let roundTrip: RgbImage;
  beforeAll(async () => {
    pipeline = await DiffusionPipeline.load(MODEL, CPU);
    source = (await generate(pipeline, [request()]))[0]!;
    // Strength 1/20 at 20 DDIM steps: one call at t = 1, where the image is all but noiseless.
    roundTrip = (await generate(pipeline, [request({ prompt: '', guidanceScale: 1, init: { pixels: planar(source), strength: 0.05 } })]))[0]!;
  });
  afterAll(() => pipeline.release());

  it('has a VAE encoder, so it takes images', () => {
    expect(pipeline.info.imageToImage).toBe(true);
  });

  it('runs the last strength × steps calls of the schedule (diffusers\' get_timesteps), counting progress from there', async () => {
    expect(skippedSteps(20, 0.3)).toBe(14);
    expect(skippedSteps(20, 1)).toBe(0);
    expect(skippedSteps(10, 0.25)).toBe(8);
    const [state] = await pipeline.begin([request({ init: { pixels: planar(source), strength: 0.3 } })]);
    expect({ step: stepsDone(state!), total: totalSteps(state!) }).toEqual({ step: 0, total: 6 });
    let calls = 0;
    while (!isFinished(state!)) {
      await pipeline.denoise([state!]);
      calls++;
    }
    expect(calls).toBe(6);
  });

  it.each(SCHEDULER_NAMES.filter((s) => s !== 'lcm'))('%s: a low strength gives back the image (within the VAE round trip); a high one changes it', async (scheduler) => {
    const init = (strength: number): InitImage => ({ pixels: planar(source), strength });
    // One call of 100: the last timestep's little noise, whatever the spacing (DPM-Solver's is t = 10).
    const [low] = await generate(pipeline, [request({ scheduler, steps: 100, init: init(0.01) })]);
    const [high] = await generate(pipeline, [request({ scheduler, prompt: 'a green square on a yellow background', init: init(0.9) })]);
    expect(low!.width).toBe(SIZE);
    expect(meanDiff(low!, roundTrip)).toBeLessThan(4);
    expect(meanDiff(high!, roundTrip)).toBeGreaterThan(20);
  });

  it('inpainting keeps the unmasked half as the image (within the round trip) and repaints the masked half', async () => {
    // Repaint the left half; keep the right.
    const mask = Float32Array.from({ length: SIZE * SIZE }, (_, i) => (i % SIZE < SIZE / 2 ? 1 : 0));
    const [painted] = await generate(pipeline, [request({ prompt: 'a green square on a yellow background', init: { pixels: planar(source), mask, strength: 1 } })]);
    // Away from the seam (the VAE decoder's reach), the kept half is the round trip's.
    expect(meanDiff(painted!, roundTrip, (x) => x >= SIZE / 2 + 8)).toBeLessThan(3);
    expect(meanDiff(painted!, roundTrip, (x) => x < SIZE / 2 - 8)).toBeGreaterThan(20);
  });

  it('an image-to-image request beside text-to-image ones in one batch gets what it gets alone', async () => {
    const i2i = request({ seed: 9, init: { pixels: planar(source), strength: 0.6 } });
    const t2i = request({ seed: 10, prompt: 'a blue triangle on a white background' });
    const together = await generate(pipeline, [t2i, i2i]);
    const [alone] = await generate(pipeline, [i2i]);
    expect(Buffer.from(together[1]!.data).equals(Buffer.from(alone!.data))).toBe(true);
  });
});
