// Resume, don't repeat: a worker killed (-9) under a streamed generation is replaced, and the
// retried attempt goes on from what the client already has — the streamed text equals the
// uninterrupted run's exactly (greedy and seeded sampling), with no repeated or missing token,
// and the usage matches the text. The worker is stopped (SIGSTOP) as soon as the first chunk
// arrives, so the kill lands mid-generation, then killed.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel, waitFor, type EaselProcess } from '../helpers/easel-process.js';

const MODEL = 'tiny-llama';
const DIR = path.join(ROOT, 'models', MODEL);
// Every end token blocked (</s>, and <|im_end|>, which ends a chat turn): the generation runs its full length.
const ENDS = (JSON.parse(readFileSync(path.join(DIR, 'tokenizer.json'), 'utf8')) as { added_tokens: { id: number; content: string }[] }).added_tokens.filter((t) => t.content === '</s>' || t.content === '<|im_end|>').map((t) => t.id);

let easel: EaselProcess;
let client: OpenAI;
beforeAll(async () => {
  easel = await serveModel(MODEL, DIR);
  client = new OpenAI({ baseURL: `${easel.inference}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 60_000);
afterAll(() => easel?.stop());

interface Worker { pid: number | null; restarts: number; status: string }
const worker = async (): Promise<Worker> => ((await (await fetch(`${easel.management}/models/${MODEL}`)).json()) as { workers: Worker[] }[])[0]!.workers[0]!;

/** A streamed chat's text and usage; with `kill`, the worker is stopped at the first chunk and killed. */
async function stream(sampling: { temperature: number; seed?: number }, kill: boolean): Promise<{ text: string; chunks: number; completionTokens: number; afterKillMs: number }> {
  const before = await worker();
  let text = '';
  let chunks = 0;
  let killedAt = 0;
  let lastAt = 0;
  let completionTokens = -1;
  const request = { model: MODEL, messages: [{ role: 'user' as const, content: 'Tell me a story about a cat.' }], max_tokens: 160, ...sampling, logit_bias: Object.fromEntries(ENDS.map((id) => [id, -100])), stream: true as const, stream_options: { include_usage: true } };
  for await (const chunk of await client.chat.completions.create(request)) {
    const delta = chunk.choices[0]?.delta?.content ?? '';
    if (delta) {
      if (kill && chunks === 0) {
        process.kill(before.pid!, 'SIGSTOP');
        process.kill(before.pid!, 'SIGKILL');
        killedAt = performance.now();
      }
      chunks += 1;
      lastAt = performance.now();
      text += delta;
    }
    if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
  }
  if (kill) {
    // It did die under the stream, and a new worker took over.
    await waitFor(async () => (await worker()).pid !== before.pid && (await worker()).status !== 'STARTING', 30_000, 'a new worker');
    expect((await worker()).restarts).toBe(before.restarts + 1);
  }
  return { text, chunks, completionTokens, afterKillMs: lastAt - killedAt };
}

describe('resume, don\'t repeat', () => {
  it.each([
    ['greedy', { temperature: 0 }],
    ['seeded sampling', { temperature: 0.9, seed: 1234 }],
  ])('%s: a stream whose worker is killed mid-way equals the uninterrupted one', async (_name, sampling) => {
    const whole = await stream(sampling, false);
    expect(whole.completionTokens).toBe(160);
    const interrupted = await stream(sampling, true);
    expect(interrupted.text).toBe(whole.text);
    expect(interrupted.completionTokens).toBe(160);
    // The kill landed mid-way: text kept coming long after it, from the new worker (a restart
    // takes hundreds of ms; the whole uninterrupted stream, tens), and it went on, it did not start over.
    expect(interrupted.chunks).toBeGreaterThan(1);
    expect(interrupted.afterKillMs).toBeGreaterThan(200);
  }, 90_000);
});
