// Automatic prefix caching: prompts that begin with a cached prefix take its KV instead of
// computing it, and decode exactly the tokens they decode without the cache — alone, in a batch
// where some rows hit and some do not, after eviction under a small budget, and with speculative
// decoding (target and draft each with their cache); the block store itself: whole blocks only,
// one token always left to compute, chains found only behind the same prefix, leaves evicted
// before their roots.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPU, generate, GREEDY } from '../../../test/helpers/text-prompts.js';
import { PREFIX_BLOCK_TOKENS, PrefixCache, type KvArrays } from './prefix-cache.js';
import { TextPipeline, type TextGenerationRequest } from './text-pipeline.js';

const MODELS = path.resolve(import.meta.dirname, '../../../models');
const SHAPE = { layers: 2, kvHeads: 2, headDim: 4 };

/** A cache whose value at (layer, head, position, d) says where it came from: position's token × 1000 + layer × 100 + head × 10 + d. */
function kvOf(tokens: readonly number[]): KvArrays {
  const { layers, kvHeads: H, headDim: D } = SHAPE;
  const n = tokens.length;
  const make = (sign: number): Float32Array[] => Array.from({ length: layers }, (_, l) => {
    const a = new Float32Array(H * n * D);
    for (let h = 0; h < H; h++) for (let p = 0; p < n; p++) for (let d = 0; d < D; d++) a[(h * n + p) * D + d] = sign * (tokens[p]! * 1000 + l * 100 + h * 10 + d);
    return a;
  });
  return { keys: make(1), values: make(-1) };
}

describe('PrefixCache', () => {
  const B = PREFIX_BLOCK_TOKENS;
  const tokens = (n: number, from = 1): number[] => Array.from({ length: n }, (_, i) => from + i);

  it('finds whole blocks of a prompt that begins as a cached one, leaving at least one token, with the KV it was given', () => {
    const cache = new PrefixCache(1 << 20, SHAPE);
    const first = tokens(3 * B + 5);
    cache.insert(first, kvOf(first), first.length);
    // The same prompt: 3 blocks cached, but the last token is always computed: 3 blocks (3B < 3B+5).
    expect(cache.lookup(first)?.length).toBe(3 * B);
    // Exactly 3 blocks long: the third block is left to compute.
    expect(cache.lookup(first.slice(0, 3 * B))?.length).toBe(2 * B);
    // A prompt diverging inside the second block: one block.
    const other = [...first.slice(0, B + 3), 999, ...first.slice(B + 4)];
    const hit = cache.lookup(other)!;
    expect(hit.length).toBe(B);
    expect(hit.kv.keys[1]).toEqual(kvOf(first.slice(0, B)).keys[1]);
    expect(hit.kv.values[0]).toEqual(kvOf(first.slice(0, B)).values[0]);
    // The same second block behind another first block is not found.
    expect(cache.lookup([...tokens(B, 500), ...first.slice(B)])).toBeUndefined();
    expect(cache.takeCounts()).toEqual({ prefix_queried: first.length + 3 * B + other.length + first.length, prefix_hit: 3 * B + 2 * B + B });
    expect(cache.takeCounts()).toEqual({ prefix_queried: 0, prefix_hit: 0 });
  });

  it('a joined hit lays each head out as [positions, headDim] across its blocks', () => {
    const cache = new PrefixCache(1 << 20, SHAPE);
    const prompt = tokens(2 * B + 1, 7);
    cache.insert(prompt, kvOf(prompt), prompt.length);
    expect(cache.lookup(prompt)!.kv).toEqual(kvOf(prompt.slice(0, 2 * B)));
  });

  it('stays within its budget, evicting the least recently used blocks, a chain\'s later blocks before its first', () => {
    const blockBytes = 2 * SHAPE.layers * SHAPE.kvHeads * B * SHAPE.headDim * 4;
    const cache = new PrefixCache(4 * blockBytes, SHAPE);
    const a = tokens(3 * B + 1, 1);
    const b = tokens(2 * B + 1, 300);
    cache.insert(a, kvOf(a), a.length);
    cache.insert(b, kvOf(b), b.length);
    expect(cache.bytes).toBe(4 * blockBytes);
    // a's last block went first; its first two stay, behind b's chain in recency.
    expect(cache.lookup(a)?.length).toBe(2 * B);
    expect(cache.lookup(b)?.length).toBe(2 * B);
    cache.insert(tokens(B + 1, 600), kvOf(tokens(B + 1, 600)), B + 1);
    expect(cache.bytes).toBe(4 * blockBytes);
    // The oldest leaf (a's second block) left; a's root stays.
    expect(cache.lookup(a)?.length).toBe(B);
  });

  it('keeps nothing with a budget smaller than a block', () => {
    const cache = new PrefixCache(100, SHAPE);
    const a = tokens(2 * B + 1);
    cache.insert(a, kvOf(a), a.length);
    expect(cache.bytes).toBe(0);
    expect(cache.lookup(a)).toBeUndefined();
  });
});

/** A long shared beginning (a system turn), then different asks. */
const SYSTEM = '<|im_start|>system\nYou are a helpful assistant who tells short stories about animals, colours and children in the park, the garden and the forest.<|im_end|>\n';
const ASKS = ['What color is the sky?', 'What does a cat say?', 'Tell me a story about a dog.', 'What is two plus two?', 'Where do fish live?', 'What do bees make?'];
const chat = (ask: string): string => `${SYSTEM}<|im_start|>user\n${ask}<|im_end|>\n<|im_start|>assistant\n`;

for (const [model, draft] of [['tiny-llama', undefined], ['tiny-lm', 'tiny-lm-draft']] as const) {
  describe(`prefix caching in the text pipeline (${model}${draft ? `, speculative with ${draft}` : ''})`, () => {
    let plain: TextPipeline;
    let cached: TextPipeline;
    let small: TextPipeline;
    beforeAll(async () => {
      const speculative = draft ? { draftDir: path.join(MODELS, draft), k: 3 } : undefined;
      plain = await TextPipeline.load(path.join(MODELS, model), CPU, speculative);
      cached = await TextPipeline.load(path.join(MODELS, model), CPU, speculative, 16 << 20);
      // Room for 4 blocks of the target's cache: eviction all the time.
      const info = plain.info;
      small = await TextPipeline.load(path.join(MODELS, model), CPU, speculative, 4 * 2 * info.layers * info.kvHeads * PREFIX_BLOCK_TOKENS * info.headDim * 4);
    });
    afterAll(async () => {
      for (const p of [plain, cached, small]) await p?.release();
    });

    const request = (pipeline: TextPipeline, prompt: string, maxNewTokens = 24): TextGenerationRequest => ({
      promptTokens: pipeline.tokenizer.encode(prompt, true, true), maxNewTokens, sampling: GREEDY, seed: 0, stopTokenIds: [], stop: [],
    });

    it('greedy: the tokens of decoding without the cache, alone, in batches mixing hits and misses, and under eviction', async () => {
      const expected = await generate(plain, ASKS.map((a) => request(plain, chat(a))));
      for (const pipeline of [cached, small]) {
        // One at a time: the first computes the system turn, the others find it.
        for (const [i, ask] of ASKS.entries()) expect((await generate(pipeline, [request(pipeline, chat(ask))]))[0], `${ask} alone`).toEqual(expected[i]);
        const counts = pipeline.takePrefixCounts();
        expect(counts.prefix_hit, 'prompt tokens found cached').toBeGreaterThan(0);
        // A batch: every ask again (hits), and stories that share nothing (misses).
        const batch = [...ASKS.map((a) => chat(a)), 'Once upon a time, there was a little girl named Lily.', 'Tom had a red ball.'];
        const alone = await generate(plain, batch.map((p) => request(plain, p)));
        expect(await generate(pipeline, batch.map((p) => request(pipeline, p)))).toEqual(alone);
      }
    }, 180_000);

    it('n sequences of one prompt begun together compute it once each the first time, then share it', async () => {
      const prompt = chat('Tell me a story about a cat.');
      const expected = (await generate(plain, [request(plain, prompt)]))[0];
      cached.takePrefixCounts();
      const first = await generate(cached, [request(cached, prompt), request(cached, prompt)]);
      expect(first).toEqual([expected, expected]);
      const again = await generate(cached, [request(cached, prompt), request(cached, prompt)]);
      expect(again).toEqual([expected, expected]);
      const { prefix_queried: queried, prefix_hit: hit } = cached.takePrefixCounts();
      const tokens = cached.tokenizer.encode(prompt, true, true).length;
      expect(queried).toBe(4 * tokens);
      // The second pair finds every whole block but the one holding the last token.
      expect(hit).toBeGreaterThanOrEqual(2 * (Math.floor((tokens - 1) / PREFIX_BLOCK_TOKENS) * PREFIX_BLOCK_TOKENS));
    }, 120_000);
  });
}
