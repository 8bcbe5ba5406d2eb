// Sampling as a user sees it: temperature draws follow the softmax, top-k / top-p / min-p keep
// exactly the tokens they promise, logprobs and their alternatives are the best tokens, and a
// seed gives the same draws again.
import { describe, expect, it } from 'vitest';
import { chooseToken, SequenceRandom, tokenProbabilities, type SamplingParams } from './sampling.js';

const BASE: SamplingParams = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: new Map(), topLogprobs: 0, logprobs: false };
// Probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (tokens 3, 0, 4, 1, 2).
const LOGITS = Float32Array.from([Math.log(0.25), Math.log(0.0625), Math.log(0.0625), Math.log(0.5), Math.log(0.125)]);

function frequencies(p: SamplingParams, n = 20_000, logits = LOGITS): number[] {
  const random = new SequenceRandom(7);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[chooseToken(Float32Array.from(logits), p, random).token]! += 1;
  return counts.map((c) => c / n);
}

describe('chooseToken', () => {
  it('temperature 1 draws each token with its softmax probability', () => {
    const f = frequencies(BASE);
    [0.25, 0.0625, 0.0625, 0.5, 0.125].forEach((p, t) => expect(f[t]).toBeCloseTo(p, 1));
  });

  it('top-k keeps the k best, renormalised; top-p the smallest set reaching p; min-p those within a factor of the best', () => {
    const k2 = frequencies({ ...BASE, topK: 2 });
    expect(k2[3]).toBeCloseTo(2 / 3, 1);
    expect(k2[0]).toBeCloseTo(1 / 3, 1);
    expect(k2[1]! + k2[2]! + k2[4]!).toBe(0);
    // 0.5 + 0.25 = 0.75 reaches 0.7: tokens 3 and 0.
    const p7 = frequencies({ ...BASE, topP: 0.7 });
    expect(p7[1]! + p7[2]! + p7[4]!).toBe(0);
    expect(p7[3]).toBeCloseTo(2 / 3, 1);
    // min-p 0.2: at least 0.1 of probability; 0.125 stays, 0.0625 goes.
    const m = frequencies({ ...BASE, minP: 0.2 });
    expect(m[1]! + m[2]!).toBe(0);
    expect(m[4]).toBeGreaterThan(0.1);
  });

  it('top-k with ties and a large vocabulary keeps exactly the best k (lower ids first among equals)', () => {
    const random = new SequenceRandom(1);
    const logits = Float32Array.from({ length: 5000 }, (_, i) => Math.round(Math.sin(i * 12.9898) * 20));
    const sorted = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
    const choice = chooseToken(Float32Array.from(logits), { ...BASE, temperature: 0, topLogprobs: 20, logprobs: true }, random);
    expect(choice.token).toBe(sorted[0]);
    expect(choice.top.map((t) => t.token)).toEqual(sorted.slice(0, 20));
    const allowed = new Set(sorted.slice(0, 50));
    for (let i = 0; i < 300; i++) expect(allowed.has(chooseToken(Float32Array.from(logits), { ...BASE, topK: 50 }, random).token)).toBe(true);
  });

  it('greedy takes the best token, and logprobs are log-softmax', () => {
    const c = chooseToken(Float32Array.from(LOGITS), { ...BASE, temperature: 0, logprobs: true, topLogprobs: 2 }, new SequenceRandom(0));
    expect(c.token).toBe(3);
    expect(c.logprob).toBeCloseTo(Math.log(0.5), 5);
    expect(c.top).toEqual([{ token: 3, logprob: expect.closeTo(Math.log(0.5), 5) }, { token: 0, logprob: expect.closeTo(Math.log(0.25), 5) }]);
  });

  it('the same seed gives the same draws; another seed others', () => {
    const draws = (seed: number): number[] => {
      const random = new SequenceRandom(seed);
      return Array.from({ length: 40 }, () => chooseToken(Float32Array.from(LOGITS), { ...BASE, topP: 0.9 }, random).token);
    };
    expect(draws(5)).toEqual(draws(5));
    expect(draws(6)).not.toEqual(draws(5));
  });

  it("draws by where they are drawn, not by how many came before: a token position's draws are the same after any history", () => {
    const fresh = new SequenceRandom(11).at(7).uniform();
    const busy = new SequenceRandom(11);
    for (let i = 0; i < 100; i++) busy.at(i % 9).uniform();
    expect(busy.at(7).uniform()).toBe(fresh);
    expect(new SequenceRandom(11).at(8).uniform()).not.toBe(fresh);
    expect(new SequenceRandom(11).at(7).uniform()).toBe(fresh);
    const second = new SequenceRandom(11).at(7);
    second.uniform();
    expect(second.uniform()).not.toBe(fresh);
    expect(new SequenceRandom(12).at(7).uniform()).not.toBe(fresh);
    // Uniform in [0, 1): mean 1/2, variance 1/12 over many positions.
    const u = Array.from({ length: 20_000 }, (_, i) => new SequenceRandom(3).at(i).uniform());
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    const mean = u.reduce((a, b) => a + b, 0) / u.length;
    expect(mean).toBeCloseTo(0.5, 2);
    expect(u.reduce((a, b) => a + (b - mean) ** 2, 0) / u.length).toBeCloseTo(1 / 12, 2);
  });
});

describe('tokenProbabilities', () => {
  it('is the distribution chooseToken draws from, with and without cuts, at temperatures 0, 0.5 and 1', () => {
    for (const p of [BASE, { ...BASE, temperature: 0.5 }, { ...BASE, topK: 3 }, { ...BASE, topP: 0.8 }, { ...BASE, minP: 0.2, temperature: 0.7 }, { ...BASE, temperature: 0 }]) {
      const probabilities = tokenProbabilities(LOGITS, p, new Float64Array(LOGITS.length));
      expect(probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      const f = frequencies(p, 40_000);
      probabilities.forEach((q, t) => (q === 0 ? expect(f[t], `${JSON.stringify(p)} token ${t}`).toBe(0) : expect(Math.abs(f[t]! - q), `${JSON.stringify(p)} token ${t}`).toBeLessThan(0.01)));
    }
  });

});

