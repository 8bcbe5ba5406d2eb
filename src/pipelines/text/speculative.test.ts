// Speculative decoding (tiny-lm with tiny-lm-draft): greedy requests get exactly the tokens of
// plain decoding, alone and in a batch of 16 whose sequences accept different numbers of
// proposals per round, joining and leaving as they go; seeded sampled requests get exactly plain
// decoding's tokens (the draft proposes with the draw the target will use at that position), so
// they are distributed as the target's (also tested by chi-squared against its exact probabilities).
import path from 'node:path';
import { jStat } from 'jstat';
import { CPU, generate, GREEDY, PROMPTS as TEN_PROMPTS } from '../../../test/helpers/text-prompts.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processLogits, tokenProbabilities, type SamplingParams } from './sampling.js';
import { TextPipeline, type Sequence, type TextGenerationRequest } from './text-pipeline.js';

const MODELS = path.resolve(import.meta.dirname, '../../../models');
/** Twenty prompts: the shared ten and ten more. */
const PROMPTS = [
  ...TEN_PROMPTS,
  'Once upon a time',
  'The dog ran',
  '<|im_start|>user\nTell me a story about a frog.<|im_end|>\n<|im_start|>assistant\n',
  'Sam found a box.',
  'The sun was hot and',
  'Anna had a big',
  '<|im_start|>user\nWhat is a cow?<|im_end|>\n<|im_start|>assistant\n',
  'Max and his friend',
  'In the garden there was',
  'The old man',
];

/**
 * Its next token is certain (" her", 0.996), and the one after it is where the draft and the target
 * disagree most among the demo texts (total variation 0.81; the target's entropy 3.5 bits): a
 * wrong acceptance rule shows there.
 */
const CHI_PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play with';

describe('speculative decoding (tiny-lm, draft tiny-lm-draft)', () => {
  let plain: TextPipeline;
  /** By k; "2+": k adapts per sequence, from 2. */
  const speculative = new Map<string, TextPipeline>();
  beforeAll(async () => {
    plain = await TextPipeline.load(path.join(MODELS, 'tiny-lm'), CPU);
    for (const k of ['1', '4', '7', '2+']) speculative.set(k, await TextPipeline.load(path.join(MODELS, 'tiny-lm'), CPU, { draftDir: path.join(MODELS, 'tiny-lm-draft'), k: Number.parseInt(k, 10), adaptive: k.endsWith('+') }));
  });
  afterAll(async () => {
    await plain.release();
    for (const p of speculative.values()) await p.release();
  });

  const request = (prompt: string, maxNewTokens: number, sampling = GREEDY, seed = 0): TextGenerationRequest => ({
    promptTokens: plain.tokenizer.encode(prompt, true, true), maxNewTokens, sampling, seed, stopTokenIds: [], stop: [],
  });
  const maxTokens = (i: number): number => 6 + ((i * 13) % 48);

  it('greedy: the tokens of plain decoding on 20 prompts, alone and in a batch of 16, for k = 1, 4, 7 and adaptive', async () => {
    const expected = await generate(plain, PROMPTS.map((p, i) => request(p, maxTokens(i))));
    for (const [k, pipeline] of speculative) {
      for (const [i, p] of PROMPTS.entries()) expect((await generate(pipeline, [request(p, maxTokens(i))]))[0], `k=${k} alone: ${p}`).toEqual(expected[i]);
      const batch = Array.from({ length: 16 }, (_, i) => (i * 3) % PROMPTS.length);
      const together = await generate(pipeline, batch.map((j) => request(PROMPTS[j]!, maxTokens(j))));
      for (const [i, j] of batch.entries()) expect(together[i], `k=${k} in a batch: ${PROMPTS[j]}`).toEqual(expected[j]);
      const counts = pipeline.takeCounts();
      // Rows accepted different numbers per round: some proposals were rejected and some kept.
      expect(counts.accepted).toBeGreaterThan(0);
      expect(counts.accepted).toBeLessThan(counts.proposed);
      expect(counts.emitted / counts.verified).toBeGreaterThan(1);
    }
  }, 300_000);

  it('seeded sampling: exactly the tokens of plain decoding with the same seeds (temperature 1; top-k 20 at 0.7; top-p 0.9), alone and in a batch, for every k', async () => {
    for (const sampling of [{ ...GREEDY, temperature: 1 }, { ...GREEDY, temperature: 0.7, topK: 20 }, { ...GREEDY, topP: 0.9, temperature: 0.9 }]) {
      const asks = PROMPTS.slice(0, 12).map((p, i) => request(p, maxTokens(i), sampling, 500 + i));
      const expected = await generate(plain, asks);
      for (const [k, pipeline] of speculative) {
        for (const [i, ask] of asks.entries()) expect((await generate(pipeline, [ask]))[0], `k=${k} alone: ${PROMPTS[i]}`).toEqual(expected[i]);
        expect(await generate(pipeline, asks), `k=${k} in a batch`).toEqual(expected);
        // The draft's proposals were kept often enough to matter.
        const counts = pipeline.takeCounts();
        expect(counts.accepted / counts.proposed, `k=${k}`).toBeGreaterThan(0.2);
      }
    }
  }, 300_000);

  it('greedy: sequences that join and leave a running speculative batch get the tokens of plain decoding', async () => {
    const pipeline = speculative.get('4')!;
    const expected = await generate(plain, PROMPTS.map((p, i) => request(p, maxTokens(i))));
    const states: Sequence[] = [];
    const arrivals = new Map([[0, [0, 1, 2, 3]], [2, [4, 5, 6]], [5, [7, 8, 9, 10, 11]], [12, [12, 13, 14]], [20, [15, 16, 17, 18, 19]]]);
    for (let round = 0; round < 200 && (states.length < PROMPTS.length || states.some((s) => !pipeline.isFinished(s))); round++) {
      states.push(...(await pipeline.begin((arrivals.get(round) ?? []).map((j) => request(PROMPTS[j]!, maxTokens(j))))));
      await pipeline.step(states);
    }
    for (const [i, out] of (await pipeline.finish(states)).entries()) expect(out.tokens, PROMPTS[i]).toEqual(expected[i]);
  }, 120_000);

  it('greedy with maxBatch: steps decode plainly while the batch is larger, then the draft catches up and speculates; plain tokens throughout', async () => {
    const pipeline = await TextPipeline.load(path.join(MODELS, 'tiny-lm'), CPU, { draftDir: path.join(MODELS, 'tiny-lm-draft'), k: 3, maxBatch: 3 });
    try {
      // Eight at once, leaving one by one: at first no round speculates, at the end every round does.
      const lengths = [4, 8, 12, 16, 24, 32, 40, 56];
      const expected = await generate(plain, lengths.map((n, i) => request(PROMPTS[i]!, n)));
      const states = await pipeline.begin(lengths.map((n, i) => request(PROMPTS[i]!, n)));
      let rounds = 0;
      while (states.some((st) => !pipeline.isFinished(st))) {
        await pipeline.step(states);
        if (pipeline.takeCounts().verified === 0) continue;
        rounds++;
        // After a round the draft holds what precedes the last token (less the last proposal, when all were kept).
        for (const st of states.filter((x) => !pipeline.isFinished(x))) expect(st.tokens.length - 1 - st.draftRow!.pastLength).toBeLessThanOrEqual(1);
      }
      expect(rounds).toBeGreaterThan(0);
      expect((await pipeline.finish(states)).map((o) => o.tokens)).toEqual(expected);
    } finally {
      await pipeline.release();
    }
  }, 60_000);

  /**
   * Samples `n` continuations of one prompt and tests, by chi-squared, that the token at
   * `position` (one a speculative round chose) follows the target's own next-token distribution
   * given the tokens before it.
   */
  async function pValue(sampling: SamplingParams, position: number, n: number): Promise<{ p: number; cells: number }> {
    const pipeline = speculative.get('4')!;
    const prompt = request(CHI_PROMPT, position + 3, sampling);
    const samples: number[][] = [];
    for (let at = 0; at < n; at += 16) samples.push(...(await generate(pipeline, Array.from({ length: 16 }, (_, i) => ({ ...prompt, seed: 1000 + at + i })))));
    // Observed and expected counts per (tokens before, token) cell.
    const observed = new Map<string, number>();
    const expected = new Map<string, number>();
    const byPrefix = new Map<string, number[][]>();
    for (const s of samples.filter((s) => s.length > position)) {
      const key = s.slice(0, position).join(',');
      byPrefix.set(key, [...(byPrefix.get(key) ?? []), s]);
    }
    for (const [key, group] of byPrefix) {
      const before = [...prompt.promptTokens, ...group[0]!.slice(0, position)];
      const logits = await plain.logitsWithoutCache(before);
      processLogits(logits, sampling, new Map(), new Map());
      const probabilities = tokenProbabilities(logits, sampling, new Float64Array(logits.length));
      for (const [token, q] of probabilities.entries()) if (q > 0) expected.set(`${key}:${token}`, q * group.length);
      for (const s of group) observed.set(`${key}:${s[position]}`, (observed.get(`${key}:${s[position]}`) ?? 0) + 1);
    }
    // Cells expected fewer than 5 times are pooled into one. Degrees of freedom: cells - 1 (lenient:
  // each prefix group's total is fixed too).
    let statistic = 0;
    let cells = 0;
    let pooled = { observed: 0, expected: 0 };
    for (const [cell, e] of expected) {
      const o = observed.get(cell) ?? 0;
      if (e < 5) pooled = { observed: pooled.observed + o, expected: pooled.expected + e };
      else {
        statistic += (o - e) ** 2 / e;
        cells++;
      }
    }
    if (pooled.expected > 0) {
      statistic += (pooled.observed - pooled.expected) ** 2 / pooled.expected;
      cells++;
    }
    // Every sample falls in some cell the target gives a probability: nothing outside its support.
    expect([...observed.keys()].every((c) => expected.has(c))).toBe(true);
    return { p: 1 - jStat.chisquare.cdf(statistic, cells - 1), cells };
  }

  it('sampling at temperature 1: the first and second tokens of a round are distributed as the target\'s (chi-squared, p > 0.01)', async () => {
    const sampling: SamplingParams = { ...GREEDY, temperature: 1 };
    for (const position of [1, 2]) {
      const { p, cells } = await pValue(sampling, position, 3200);
      expect(cells).toBeGreaterThanOrEqual(5);
      expect(p, `position ${position}`).toBeGreaterThan(0.01);
    }
  }, 300_000);

  it('sampling with top-k 20 and temperature 0.7: distributed as the target\'s (chi-squared, p > 0.01)', async () => {
    const { p, cells } = await pValue({ ...GREEDY, temperature: 0.7, topK: 20 }, 1, 3200);
    expect(cells).toBeGreaterThanOrEqual(5);
    expect(p).toBeGreaterThan(0.01);
  }, 300_000);
});
