// The pipeline against the input signatures of recent optimum exports (the sd-signatures
// fixture: int64 input_ids, a scalar timestep, LCM's timestep_cond, an fp16 UNet variant).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionOptions } from '../../runtime/onnx-runtime.js';
import { DiffusionPipeline, isFinished, type GenerationRequest, type RgbImage } from './diffusion-pipeline.js';

const FIXTURE = path.resolve(import.meta.dirname, '../../../test/fixtures/models/sd-signatures');
const CPU: SessionOptions = { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 1, interOpThreads: 1 };

function request(overrides: Partial<GenerationRequest> = {}): GenerationRequest {
  return { prompt: 'a red circle', negativePrompt: '', steps: 4, guidanceScale: 8, width: 32, height: 32, seed: 1, scheduler: 'lcm', ...overrides };
}

async function generate(pipeline: DiffusionPipeline, requests: GenerationRequest[]): Promise<RgbImage[]> {
  const states = await pipeline.begin(requests);
  while (!states.every(isFinished)) await pipeline.denoise(states);
  return pipeline.finish(states);
}

describe('DiffusionPipeline with a scalar-timestep, timestep_cond, int64-ids export', () => {
  let pipeline: DiffusionPipeline;
  beforeAll(async () => {
    pipeline = await DiffusionPipeline.load(FIXTURE, CPU);
  });
  afterAll(() => pipeline.release());

  it('reads the signature from the sessions and the configs', () => {
    expect(pipeline.info).toEqual({
      vaeScaleFactor: 8,
      latentChannels: 4,
      inpaintingUnet: false,
      textLength: 8,
      scalarTimestep: true,
      guidanceEmbeddingSize: 32,
      defaultScheduler: 'lcm',
      defaultSize: 32,
      imageToImage: false,
    });
    // Guidance is embedded (timestep_cond): no unconditional half.
    expect(pipeline.usesGuidance(request())).toBe(false);
  });

  it('runs requests at different timesteps together (grouped by timestep) as each alone', async () => {
    const a = request({ steps: 4, seed: 1 });
    const b = request({ steps: 6, seed: 2, prompt: 'a blue square', guidanceScale: 2 });
    const together = await generate(pipeline, [a, b]);
    const [aloneA] = await generate(pipeline, [a]);
    const [aloneB] = await generate(pipeline, [b]);
    expect(together[0]!.width).toBe(32);
    expect(Buffer.from(together[0]!.data).equals(Buffer.from(aloneA!.data))).toBe(true);
    expect(Buffer.from(together[1]!.data).equals(Buffer.from(aloneB!.data))).toBe(true);
  });

  it('feeds the guidance embedding: the guidance scale changes the image', async () => {
    const [low] = await generate(pipeline, [request({ guidanceScale: 1 })]);
    const [high] = await generate(pipeline, [request({ guidanceScale: 8 })]);
    expect(Buffer.from(low!.data).equals(Buffer.from(high!.data))).toBe(false);
  });

  it('selects the fp16 UNet by variant name and converts its float16 inputs and outputs', async () => {
    const half = await DiffusionPipeline.load(FIXTURE, { ...CPU, variant: 'fp16' });
    try {
      const [a] = await generate(half, [request()]);
      const [b] = await generate(pipeline, [request()]);
      const diff = a!.data.reduce((sum, v, i) => sum + Math.abs(v - (b!.data[i] ?? 0)), 0) / a!.data.length;
      expect(diff).toBeLessThan(2);
    } finally {
      await half.release();
    }
  });

  it('names a missing variant', async () => {
    await expect(DiffusionPipeline.load(FIXTURE, { ...CPU, variant: 'int8' })).rejects.toThrow(/variant "int8" of model.onnx not found/);
  });
});
