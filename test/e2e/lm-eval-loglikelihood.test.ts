// lm-evaluation-harness's `local-completions` log-likelihood requests, made the way the harness
// makes them (its lm_eval/models/openai_completions.py: context and continuation tokenized apart,
// the joined token ids sent with temperature 0, max_tokens 1, logprobs 1, echo; the continuation's
// score is sum(token_logprobs[ctxlen:-1]), greedy when each equals its top_logprobs' best), on a
// small multiple-choice task. The scores equal the model's own, computed here with the decoder
// alone (no cache); max_tokens 0 scores the same without generating.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvDecoder } from '../../src/pipelines/text/kv-decoder.js';
import { CPU } from '../helpers/text-prompts.js';
import { ROOT, serveModel, type EaselProcess } from '../helpers/easel-process.js';

const TASK = readFileSync(path.join(ROOT, 'test', 'fixtures', 'lm-eval', 'tiny-choices.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { context: string; choices: string[]; gold: number });

interface Choice { index: number; logprobs: { token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[] } }

describe.each(['tiny-lm', 'tiny-llama'])('%s: log-likelihoods as lm-evaluation-harness asks for them', (model) => {
  const dir = path.join(ROOT, 'models', model);
  let easel: EaselProcess;
  let decoder: KvDecoder;
  beforeAll(async () => {
    easel = await serveModel(model, dir);
    decoder = await KvDecoder.load(dir, CPU);
  }, 60_000);
  afterAll(async () => {
    await easel?.stop();
    await decoder?.close();
  });

  const post = async (route: string, body: unknown): Promise<Record<string, unknown>> => {
    const res = await fetch(`${easel.inference}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const json = (await res.json()) as Record<string, unknown>;
    expect(res.status, JSON.stringify(json)).toBe(200);
    return json;
  };
  const tokenize = async (prompt: string, special: boolean): Promise<number[]> => (await post('/tokenize', { model, prompt, add_special_tokens: special })).tokens as number[];

  /** The continuation's log-likelihood from the decoder alone: each token scored after everything before it. */
  async function direct(context: number[], continuation: number[]): Promise<number> {
    let sum = 0;
    for (const [i, token] of continuation.entries()) {
      const logits = await decoder.logitsWithoutCache([...context, ...continuation.slice(0, i)]);
      let max = -Infinity;
      for (const x of logits) max = Math.max(max, x);
      let z = 0;
      for (const x of logits) z += Math.exp(x - max);
      sum += logits[token]! - max - Math.log(z);
    }
    return sum;
  }

  it('scores every choice as the model does, and the task is scored as the harness would score it', async () => {
    let correct = 0;
    for (const doc of TASK) {
      const context = await tokenize(doc.context, true);
      const continuations = await Promise.all(doc.choices.map((c) => tokenize(c, false)));
      const prompts = continuations.map((c) => [...context, ...c]);
      for (const maxTokens of [1, 0]) {
        const out = (await post('/v1/completions', { model, prompt: prompts, temperature: 0, max_tokens: maxTokens, logprobs: 1, seed: 1234, echo: true })) as { choices: Choice[] };
        const scores = [...out.choices].sort((a, b) => a.index - b.index).map((choice) => {
          const end = maxTokens === 1 ? -1 : undefined;
          const lps = choice.logprobs.token_logprobs.slice(context.length, end) as number[];
          const tops = choice.logprobs.top_logprobs.slice(context.length, end) as Record<string, number>[];
          expect(choice.logprobs.token_logprobs[0]).toBeNull();
          return { logprob: lps.reduce((a, b) => a + b, 0), greedy: lps.every((lp, i) => lp === Math.max(...Object.values(tops[i]!))) };
        });
        for (const [i, c] of continuations.entries()) expect(scores[i]!.logprob, `${doc.context} |${doc.choices[i]}`).toBeCloseTo(await direct(context, c), 4);
        if (maxTokens === 1) correct += scores.indexOf(scores.reduce((a, b) => (b.logprob > a.logprob ? b : a))) === doc.gold ? 1 : 0;
      }
    }
    console.log(`${model}: ${correct} of ${TASK.length} choices right by log-likelihood`);
    expect(correct).toBeGreaterThanOrEqual(2);
  }, 120_000);
});
