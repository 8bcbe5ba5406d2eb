// A decoder graph in ONNX Runtime's fused operators (GroupQueryAttention, RotaryEmbedding,
// SkipSimplifiedLayerNormalization: test/fixtures/models/tiny-llama-fused, tiny-llama's own weights
// written by tools/model-factory/fused_llama.py) decodes the tokens the plain export of the same
// weights decodes: in a batch, with rows joining later (left padding), with prompts after a cached
// prefix and with speculative verification — the two calls that give several rows several new
// tokens after a past, which ONNX Runtime's CPU GroupQueryAttention takes only one row at a time.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPU, generate, GREEDY, PROMPTS } from '../../../test/helpers/text-prompts.js';
import { TextPipeline, type TextGenerationRequest } from './text-pipeline.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const PLAIN = path.join(ROOT, 'models', 'tiny-llama');
const FUSED = path.join(ROOT, 'test', 'fixtures', 'models', 'tiny-llama-fused');
const SYSTEM = '<|im_start|>system\nYou are a helpful assistant who tells short stories about animals, colours and children in the park, the garden and the forest.<|im_end|>\n';
const ASKS = ['What color is the sky?', 'What does a cat say?', 'Tell me a story about a dog.', 'Where do fish live?'];
const chat = (ask: string): string => `${SYSTEM}<|im_start|>user\n${ask}<|im_end|>\n<|im_start|>assistant\n`;

describe('a fused decoder graph (GroupQueryAttention) in the text pipeline', () => {
  let plain: TextPipeline;
  let fused: TextPipeline;
  beforeAll(async () => {
    plain = await TextPipeline.load(PLAIN, CPU);
    fused = await TextPipeline.load(FUSED, CPU);
  });
  afterAll(async () => {
    for (const p of [plain, fused]) await p?.release();
  });

  const request = (pipeline: TextPipeline, prompt: string, maxNewTokens = 24): TextGenerationRequest => ({
    promptTokens: pipeline.tokenizer.encode(prompt, true, true), maxNewTokens, sampling: GREEDY, seed: 0, stopTokenIds: [], stop: [],
  });

  /** Half the prompts begin, decode 5 steps, then the rest join them (left-padded rows of other lengths). */
  async function staggered(pipeline: TextPipeline, prompts: readonly string[]): Promise<number[][]> {
    const first = await pipeline.begin(prompts.slice(0, 5).map((p) => request(pipeline, p)));
    for (let i = 0; i < 5; i++) await pipeline.step(first);
    const all = [...first, ...(await pipeline.begin(prompts.slice(5).map((p) => request(pipeline, p))))];
    while (all.some((s) => !pipeline.isFinished(s))) await pipeline.step(all);
    return (await pipeline.finish(all)).map((o) => [...o.tokens]);
  }

  it('is found at load to take several new tokens after a past one row at a time (the plain graph: all rows at once)', () => {
    expect(fused.info.batchedContinuation).toBe(false);
    expect(plain.info.batchedContinuation).toBe(true);
  });

  it('greedy: the plain graph\'s tokens, begun together and with rows joining later', async () => {
    expect(await generate(fused, PROMPTS.map((p) => request(fused, p)))).toEqual(await generate(plain, PROMPTS.map((p) => request(plain, p))));
    expect(await staggered(fused, PROMPTS)).toEqual(await staggered(plain, PROMPTS));
  }, 60_000);

  it('greedy with the prefix cache: a batch of prompts after their cached system turn decodes the plain graph\'s tokens', async () => {
    const cached = await TextPipeline.load(FUSED, CPU, undefined, 16 << 20);
    try {
      const expected = await generate(plain, ASKS.map((a) => request(plain, chat(a))));
      await generate(cached, [request(cached, chat('What do bees make?'))]);
      cached.takePrefixCounts();
      expect(await generate(cached, ASKS.map((a) => request(cached, chat(a))))).toEqual(expected);
      expect(cached.takePrefixCounts().prefix_hit, 'prompt tokens found cached').toBeGreaterThan(4 * 16);
    } finally {
      await cached.release();
    }
  }, 60_000);

  it('greedy with speculative decoding (the plain graph as the draft): verification of several rows\' proposals decodes the plain graph\'s tokens', async () => {
    const speculative = await TextPipeline.load(FUSED, CPU, { draftDir: PLAIN, k: 3 });
    try {
      const prompts = PROMPTS.slice(0, 6);
      expect(await generate(speculative, prompts.map((p) => request(speculative, p)))).toEqual(await generate(plain, prompts.map((p) => request(plain, p))));
      const counts = speculative.takeCounts();
      // The draft is the same model: nearly every proposal is kept, several tokens a verify call.
      expect(counts.verified).toBeGreaterThan(0);
      expect(counts.accepted / counts.proposed).toBeGreaterThan(0.9);
    } finally {
      await speculative.release();
    }
  }, 60_000);
});
