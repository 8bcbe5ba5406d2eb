// The text-to-image handler on the bundled tiny-sd, in-process: progress after every step,
// previews every N steps, cancellation at the next step without disturbing the batch.
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EaselError } from '../errors/easel-error.js';
import { readModelSpec } from '../models/model-spec.js';
import type { HandlerOutcome, HandlerResult, ProgressUpdate, RequestContext } from './handler.js';
import { StepLoop } from '../scheduling/step-loop.js';
import { TextToImageHandler } from './text-to-image-handler.js';

const TINY_SD = path.resolve(import.meta.dirname, '../../models/tiny-sd');
const silent = { info() {}, warn() {}, error() {}, debug() {} };
const timers = { time: <T>(_stage: string, fn: () => T): T => fn(), timeAsync: <T>(_stage: string, fn: () => Promise<T>): Promise<T> => fn() };

async function run(handler: TextToImageHandler, inputs: Record<string, unknown>[], onProgress: (i: number, u: ProgressUpdate, abort: () => void) => void = () => {}): Promise<HandlerOutcome[]> {
  const controllers = inputs.map(() => new AbortController());
  const ctx: RequestContext = {
    logger: silent,
    timers,
    requests: inputs.map((_, i) => ({ id: String(i), signal: controllers[i]!.signal, progress: (u) => onProgress(i, u, () => controllers[i]!.abort()) })),
  };
  const batch = handler.preprocess(inputs.map((input, i) => ({ id: String(i), input })));
  return handler.postprocess(await handler.inference(batch, ctx), ctx);
}

function bytes(outcome: HandlerOutcome | undefined): Buffer {
  if (!outcome || outcome instanceof EaselError) throw new Error(`expected an image, got ${String(outcome)}`);
  return Buffer.from(outcome.data);
}

describe('TextToImageHandler', () => {
  const handler = new TextToImageHandler();
  beforeAll(async () => {
    const spec = readModelSpec(TINY_SD);
    await handler.initialize({ modelDir: TINY_SD, spec: { ...spec, runtime: { ...spec.runtime, warmup: false } }, logger: silent, stepLoop: (model) => new StepLoop(model) });
  });
  afterAll(() => handler.dispose());

  it('reports every step, sends previews every N steps, and cancels one request at its next step', async () => {
    const cancelAt = 3;
    const progress: ProgressUpdate[][] = [[], []];
    const outcomes = await run(
      handler,
      [
        { prompt: 'a red circle on a blue background', seed: 1, num_inference_steps: 20 },
        { prompt: 'a green square on a yellow background', seed: 2, num_inference_steps: 8, preview_every: 4 },
      ],
      (i, update, abort) => {
        progress[i]!.push(update);
        if (i === 0 && update.step === cancelAt) abort();
      },
    );

    const cancelled = outcomes[0];
    expect(cancelled).toBeInstanceOf(EaselError);
    expect((cancelled as EaselError).code).toBe('EASEL_CANCELLED');
    expect((cancelled as EaselError).message).toContain(`after ${cancelAt} of 20 steps`);
    expect(progress[0]!.map((u) => u.step)).toEqual([1, 2, 3]);

    expect(progress[1]!.map((u) => `${u.step}/${u.total}`)).toEqual(['1/8', '2/8', '3/8', '4/8', '5/8', '6/8', '7/8', '8/8']);
    const previews = progress[1]!.filter((u) => u.preview).map((u) => [u.step, u.preview!] as const);
    expect(previews.map(([step]) => step)).toEqual([4]);
    const preview = previews[0]![1] as HandlerResult;
    expect(preview.contentType).toBe('image/jpeg');
    const meta = await sharp(preview.data).metadata();
    expect([meta.width, meta.height]).toEqual([64, 64]);

    // The survivor's image is the one it gets alone.
    const [alone] = await run(handler, [{ prompt: 'a green square on a yellow background', seed: 2, num_inference_steps: 8 }]);
    expect(bytes(outcomes[1]).equals(bytes(alone))).toBe(true);
  });

  it('runs requests with different step counts and schedulers in one batch', async () => {
    const inputs = [
      { prompt: 'a red circle on a blue background', seed: 3, num_inference_steps: 4, scheduler: 'euler_a' },
      { prompt: 'a red circle on a blue background', seed: 3, num_inference_steps: 10, scheduler: 'dpmpp_2m', guidance_scale: 1 },
    ];
    const together = await run(handler, inputs);
    for (const [i, input] of inputs.entries()) {
      const [alone] = await run(handler, [input]);
      const a = await sharp(bytes(together[i])).raw().toBuffer();
      const b = await sharp(bytes(alone)).raw().toBuffer();
      // ONNX Runtime's batched kernels may differ in the last bits: every pixel within 1/255.
      expect(a.every((v, k) => Math.abs(v - (b[k] ?? 0)) <= 1)).toBe(true);
    }
  });

  it('admits a request that arrives while another runs at the next step (order of events, not the clock)', async () => {
    const log: string[] = [];
    let second: Promise<HandlerOutcome[]> | undefined;
    const first = run(handler, [{ prompt: 'a red circle on a blue background', seed: 5, num_inference_steps: 50 }], (_i, u) => {
      log.push(`A${u.step}`);
      if (u.step === 3 && !second) {
        second = run(handler, [{ prompt: 'a green square on a yellow background', seed: 6, num_inference_steps: 4 }], (_j, v) => log.push(`B${v.step}`));
      }
    });
    const [a] = await first;
    const [b] = await second!;
    // B's first step is taken in the turn right after it arrived: before A's 5th.
    expect(log.indexOf('B1')).toBeGreaterThan(log.indexOf('A3'));
    expect(log.indexOf('B1')).toBeLessThan(log.indexOf('A5'));
    // B (4 steps) leaves long before A (50) finishes, and both images are what they are alone.
    expect(log.indexOf('B4')).toBeLessThan(log.indexOf('A10'));
    const [aloneB] = await run(handler, [{ prompt: 'a green square on a yellow background', seed: 6, num_inference_steps: 4 }]);
    const [aloneA] = await run(handler, [{ prompt: 'a red circle on a blue background', seed: 5, num_inference_steps: 50 }]);
    expect(bytes(b).equals(bytes(aloneB))).toBe(true);
    expect(bytes(a).equals(bytes(aloneA))).toBe(true);
  });

  it('gives 8 different requests run together the images each gets alone', async () => {
    const inputs = [
      { prompt: 'a red circle on a blue background', seed: 1, num_inference_steps: 4, scheduler: 'ddim' },
      { prompt: 'a green square on a yellow background', seed: 2, num_inference_steps: 8, scheduler: 'euler' },
      { prompt: 'a blue circle on a green background', seed: 3, num_inference_steps: 12, scheduler: 'euler_a' },
      { prompt: 'a yellow triangle on a blue background', seed: 4, num_inference_steps: 6, scheduler: 'dpmpp_2m', guidance_scale: 1 },
      { prompt: 'a red square on a white background', seed: 5, num_inference_steps: 10, scheduler: 'pndm', guidance_scale: 3 },
      { prompt: 'a white cross on a black background', seed: 6, num_inference_steps: 5, scheduler: 'lcm', guidance_scale: 1.5 },
      { prompt: 'a purple circle on a gray background', seed: 7, num_inference_steps: 7, negative_prompt: 'red', guidance_scale: 9 },
      { prompt: 'an orange square on a blue background', seed: 8, num_inference_steps: 9, scheduler: 'euler', width: 64, height: 64 },
    ];
    const together = await run(handler, inputs);
    let identical = 0;
    for (const [i, input] of inputs.entries()) {
      const [alone] = await run(handler, [input]);
      const a = await sharp(bytes(together[i])).raw().toBuffer();
      const b = await sharp(bytes(alone)).raw().toBuffer();
      expect(a.every((v, k) => Math.abs(v - (b[k] ?? 0)) <= 1), `request ${i}`).toBe(true);
      if (bytes(together[i]).equals(bytes(alone))) identical += 1;
    }
    console.log(`batch invariance: ${identical} of ${inputs.length} byte-identical, all within 1/255`);
  });
});
