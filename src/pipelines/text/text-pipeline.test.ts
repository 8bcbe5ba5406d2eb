// The decoder with its KV cache against the same model run without a cache, token by token:
// greedy decoding gives the same tokens alone and inside a batch of 16 sequences of mixed
// prompt lengths and max_tokens (one decoder call per step for the whole batch), on the demo LMs
// of both architectures (GPT-2: tiny-lm, tiny-lm-draft; Llama: tiny-llama, with RoPE and
// grouped-query attention); seeded sampling gives the same tokens alone and in a batch.
import path from 'node:path';
import { CPU, generate, GREEDY, PROMPTS } from '../../../test/helpers/text-prompts.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplingParams } from './sampling.js';
import { TextPipeline, type Sequence, type TextGenerationRequest } from './text-pipeline.js';

/** What each model card says: layers, KV heads × head size, vocabulary, EOS ids. */
const CARDS = new Map([
  ['tiny-lm', { layers: 4, kvHeads: 4, headDim: 32, vocabSize: 741, eosTokenIds: [0, 2], contextLength: 256 }],
  ['tiny-lm-draft', { layers: 1, kvHeads: 2, headDim: 32, vocabSize: 741, eosTokenIds: [0, 2], contextLength: 256 }],
  ['tiny-llama', { layers: 4, kvHeads: 2, headDim: 32, vocabSize: 1024, eosTokenIds: [2, 1023], contextLength: 1024 }],
]);

for (const [model, card] of CARDS) {
  describe(`TextPipeline (${model})`, () => {
    let pipeline: TextPipeline;
    beforeAll(async () => {
      pipeline = await TextPipeline.load(path.resolve(import.meta.dirname, '../../../models', model), CPU);
    });
    afterAll(() => pipeline.release());

    const request = (prompt: string, maxNewTokens: number, sampling = GREEDY, seed = 0): TextGenerationRequest => ({
      // The chat prompts carry their markup as special tokens, as a chat template makes them.
      promptTokens: pipeline.tokenizer.encode(prompt, true, true), maxNewTokens, sampling, seed, stopTokenIds: [], stop: [],
    });

    /** Greedy decoding with no cache: the whole sequence through the model at every step. */
    async function reference(prompt: string, maxNewTokens: number): Promise<number[]> {
      const tokens = pipeline.tokenizer.encode(prompt, true, true);
      const out: number[] = [];
      while (out.length < maxNewTokens) {
        const logits = await pipeline.logitsWithoutCache(tokens);
        let best = 0;
        for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
        if (pipeline.info.eosTokenIds.includes(best)) break;
        tokens.push(best);
        out.push(best);
      }
      return out;
    }

    it('reads layers, heads and sizes from the graph, EOS ids and context from the configs', () => {
      expect(pipeline.info).toMatchObject({ ...card, positionIds: true, useCacheBranch: false });
    });

    it('greedy: the same tokens as the model without a cache, alone and in a batch of 16 mixed requests', async () => {
      const maxTokens = (i: number): number => 8 + ((i * 7) % 17);
      const expected = await Promise.all(PROMPTS.map((p, i) => reference(p, maxTokens(i))));
      for (const [i, p] of PROMPTS.entries()) expect((await generate(pipeline, [request(p, maxTokens(i))]))[0], p).toEqual(expected[i]);
      const batch = Array.from({ length: 16 }, (_, i) => i % PROMPTS.length);
      const together = await generate(pipeline, batch.map((k) => request(PROMPTS[k]!, maxTokens(k))));
      for (const [i, k] of batch.entries()) expect(together[i], PROMPTS[k]).toEqual(expected[k]);
    }, 120_000);

    it('a sequence resumed from any point of its output (a dead worker\'s) goes on exactly as the uninterrupted run, greedy and seeded sampling, alone or in a batch', async () => {
      const sampled = { ...GREEDY, temperature: 0.9, topP: 0.95 };
      for (const [sampling, seed] of [[GREEDY, 0], [sampled, 42], [sampled, 7]] as const) {
        const whole = (prompt: string): TextGenerationRequest => ({ ...request(prompt, 24, sampling, seed), stop: [], stopTokenIds: [] });
        const [full] = await generate(pipeline, [whole(PROMPTS[0]!)]);
        expect(full!.length).toBeGreaterThan(8);
        for (const k of [1, 5, full!.length - 1]) {
          const resumed = { ...whole(PROMPTS[0]!), resumeTokens: full!.slice(0, k) };
          expect((await generate(pipeline, [resumed]))[0], `${sampling.temperature} seed ${seed} from ${k}`).toEqual(full);
          // Beside other sequences (other rows, other positions), the same.
          const batch = await generate(pipeline, [whole(PROMPTS[1]!), resumed, whole(PROMPTS[4]!)]);
          expect(batch[1], `${sampling.temperature} seed ${seed} from ${k}, in a batch`).toEqual(full);
        }
      }
    });

    it('greedy: sequences that join and leave a running batch (rows moved, appended, re-padded) get the reference tokens', async () => {
      const maxTokens = (i: number): number => 4 + ((i * 11) % 40);
      const expected = await Promise.all(PROMPTS.map((p, i) => reference(p, maxTokens(i))));
      const states: Sequence[] = [];
      // Arrivals at steps 0, 3, 9 and 30: the later ones join a batch whose earlier members have left or run long.
      const arrivals = new Map([[0, [0, 1, 2]], [3, [3, 4]], [9, [5, 6, 7]], [30, [8, 9]]]);
      for (let step = 0; step < 200 && (states.length < PROMPTS.length || states.some((st) => !pipeline.isFinished(st))); step++) {
        const come = arrivals.get(step) ?? [];
        states.push(...(await pipeline.begin(come.map((k) => request(PROMPTS[k]!, maxTokens(k))))));
        await pipeline.step(states);
      }
      const outputs = await pipeline.finish(states);
      for (const [i, out] of outputs.entries()) expect(out.tokens, PROMPTS[i]).toEqual(expected[i]);
    }, 120_000);

    it('the text reads on from the prompt: prompt + text is the decoded prompt and generated tokens together', async () => {
      const plain = PROMPTS.filter((p) => !p.includes('<|'));
      const states = await pipeline.begin(plain.map((p) => request(p, 24)));
      while (states.some((st) => !pipeline.isFinished(st))) await pipeline.step(states);
      const outputs = await pipeline.finish(states);
      // Most prompts get some text (a story may also end at once).
      expect(outputs.filter((o) => o.text.length > 0).length).toBeGreaterThan(plain.length / 2);
      for (const [i, out] of outputs.entries()) {
        expect(plain[i]! + out.text).toBe(pipeline.tokenizer.decode([...pipeline.tokenizer.encode(plain[i]!), ...out.tokens]));
      }
    }, 60_000);

    it('seeded sampling at temperature 0.8: the same tokens alone and in a batch', async () => {
      const sampled: SamplingParams = { ...GREEDY, temperature: 0.8, topP: 0.95 };
      const alone = await generate(pipeline, [request(PROMPTS[0]!, 20, sampled, 42)]);
      const batch = await generate(pipeline, [request(PROMPTS[3]!, 12, sampled, 1), request(PROMPTS[0]!, 20, sampled, 42), request(PROMPTS[4]!, 5, sampled, 7)]);
      expect(batch[1]).toEqual(alone[0]);
      // Another seed, another continuation (the seed is used).
      const other = await generate(pipeline, [request(PROMPTS[0]!, 20, sampled, 43)]);
      expect(other[0]).not.toEqual(alone[0]);
    }, 60_000);
  });
}
