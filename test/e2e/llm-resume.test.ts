// Resume, don't repeat: a worker killed (-9) under a generation is replaced, and the retried
// attempt goes on from what the client already has — the text equals the uninterrupted run's
// exactly (greedy and seeded sampling), with no repeated or missing token, and the usage matches
// the text: a streamed chat (one kill, two kills), a non-streamed completion, a text job followed
// over SSE (its events join to its stored output, its attempts are counted, a status event
// announces each retry; past the crash budget it fails saying so), a speculative model (tiny-lm
// with its draft) and 8 concurrent streams sharing the killed worker. A worker is stopped
// (SIGSTOP) as soon as its run is seen making text, so that the kill lands mid-generation, then killed.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createParser } from 'eventsource-parser';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, textModelVariant, waitFor, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const LLAMA = 'tiny-llama';
const SPECULATIVE = 'tiny-lm-fast';
/** Every end token of a model blocked (</s>, <|im_end|>, <|endoftext|>): its generation runs its full length. Read once per model. */
const NO_END = new Map(
  ['tiny-llama', 'tiny-lm'].map((model) => {
    const { added_tokens: added } = JSON.parse(readFileSync(path.join(ROOT, 'models', model, 'tokenizer.json'), 'utf8')) as { added_tokens: { id: number; content: string }[] };
    return [model, Object.fromEntries(added.filter((t) => ['</s>', '<|im_end|>', '<|endoftext|>'].includes(t.content)).map((t) => [t.id, -100]))];
  }),
);
const noEnd = (model: string): Record<string, number> => NO_END.get(model)!;

const store = mkdtempSync(path.join(tmpdir(), 'easel-resume-store-'));
let easel: EaselProcess;
let client: OpenAI;
beforeAll(async () => {
  for (const m of ['tiny-llama', 'tiny-lm', 'tiny-lm-draft']) cpSync(path.join(ROOT, 'models', m), path.join(store, m), { recursive: true });
  textModelVariant('tiny-lm', path.join(store, SPECULATIVE), SPECULATIVE, 'speculative:\n  draft: tiny-lm-draft\n  k: 4\n');
  easel = await startEasel(['--model-store', store, '--models', `${LLAMA}=${LLAMA}`, `${SPECULATIVE}=${SPECULATIVE}`]);
  await waitModelLive(easel, LLAMA);
  await waitModelLive(easel, SPECULATIVE);
  client = new OpenAI({ baseURL: `${easel.inference}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 90_000);
afterAll(async () => {
  await easel?.stop();
  rmSync(store, { recursive: true, force: true });
});

interface Worker { pid: number | null; restarts: number; status: string }
const worker = async (model: string): Promise<Worker> => ((await (await fetch(`${easel.management}/models/${model}`)).json()) as { workers: Worker[] }[])[0]!.workers[0]!;

/** Kills a model's worker under its run (stopped first, so that it makes nothing more), and counts the kills. */
class Killer {
  readonly killed: number[] = [];
  #pending: Promise<void> | undefined;
  constructor(readonly model: string, readonly times: number) {}

  /** Kills the worker now if kills are left and the one running is not one already killed. */
  maybe(): void {
    if (this.killed.length >= this.times || this.#pending) return;
    this.#pending = (async () => {
      const w = await worker(this.model);
      if (w.pid !== null && (w.status === 'READY' || w.status === 'BUSY') && !this.killed.includes(w.pid)) {
        process.kill(w.pid, 'SIGSTOP');
        process.kill(w.pid, 'SIGKILL');
        this.killed.push(w.pid);
      }
    })().finally(() => (this.#pending = undefined));
  }

  /** Every kill landed, and a new worker took over after each. */
  async landed(before: Worker): Promise<void> {
    await this.#pending;
    expect(this.killed).toHaveLength(this.times);
    await waitFor(async () => { const w = await worker(this.model); return (w.status === 'READY' || w.status === 'BUSY') && !this.killed.includes(w.pid!); }, 30_000, 'a new worker');
    expect((await worker(this.model)).restarts).toBe(before.restarts + this.times);
  }
}

/** A streamed chat's text and usage; with kills, the worker is killed at the first chunk each worker sends. */
async function streamChat(model: string, sampling: { temperature: number; seed?: number }, kills: number, content = 'Tell me a story about a cat.'): Promise<{ text: string; chunks: number; completionTokens: number }> {
  const before = await worker(model);
  const killer = new Killer(model, kills);
  let text = '';
  let chunks = 0;
  let completionTokens = -1;
  const request = { model, messages: [{ role: 'user' as const, content }], max_tokens: 160, ...sampling, logit_bias: noEnd(model === LLAMA ? LLAMA : 'tiny-lm'), stream: true as const, stream_options: { include_usage: true } };
  for await (const chunk of await client.chat.completions.create(request)) {
    const delta = chunk.choices[0]?.delta?.content ?? '';
    if (delta) {
      if (kills > 0) killer.maybe();
      chunks += 1;
      text += delta;
    }
    if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
  }
  if (kills > 0) await killer.landed(before);
  return { text, chunks, completionTokens };
}

const SAMPLINGS = [
  ['greedy', { temperature: 0 }],
  ['seeded sampling', { temperature: 0.9, seed: 1234 }],
] as const;

describe('resume, don\'t repeat', () => {
  it.each(SAMPLINGS)('%s: a streamed chat whose worker is killed once, then twice, equals the uninterrupted one', async (_name, sampling) => {
    const whole = await streamChat(LLAMA, sampling, 0);
    expect(whole.completionTokens).toBe(160);
    for (const kills of [1, 2]) {
      const interrupted = await streamChat(LLAMA, sampling, kills);
      expect(interrupted.text, `${kills} kill(s)`).toBe(whole.text);
      expect(interrupted.completionTokens).toBe(160);
      // Each kill landed mid-way: text came from each worker in turn.
      expect(interrupted.chunks).toBeGreaterThan(kills);
    }
  }, 120_000);

  it.each(SAMPLINGS)('%s: a non-streamed completion whose worker is killed mid-way, once and twice, equals the uninterrupted one', async (_name, sampling) => {
    const request = { model: LLAMA, prompt: 'Once upon a time', max_tokens: 200, ...sampling, logit_bias: noEnd(LLAMA) };
    const whole = await client.completions.create(request);
    // The decoder steps the worker reports (a metric of the API process): a run at work.
    const steps = async (): Promise<number> => Number(new RegExp(`easel_step_batch_size_count\\{model="${LLAMA}"\\} (\\d+)`).exec(await (await fetch(`${easel.metrics}/metrics`)).text())?.[1] ?? 0);
    for (const kills of [1, 2]) {
      const before = await worker(LLAMA);
      const killer = new Killer(LLAMA, kills);
      let seen = await steps();
      const answer = client.completions.create(request);
      for (let k = 0; k < kills; k++) {
        // Each attempt, once its worker has made a few steps, is killed.
        await waitFor(async () => (await steps()) > seen + 3, 10_000, `attempt ${k + 1} to make tokens`);
        killer.maybe();
        await waitFor(() => killer.killed.length === k + 1, 5_000, `kill ${k + 1}`);
        seen = await steps();
      }
      const interrupted = await answer;
      await killer.landed(before);
      expect(interrupted.choices[0]!.text, `${kills} kill(s)`).toBe(whole.choices[0]!.text);
      expect(interrupted.usage).toEqual(whole.usage);
      expect(interrupted.usage!.completion_tokens).toBe(200);
    }
  }, 90_000);

  interface Followed { status: string; attempts: number; tokens: { text: string; offset: number; step: number }[]; statuses: { status: string; attempts: number }[]; stored: string; error: { code: string; message: string } | null }

  /** A text job followed over SSE; its worker killed at the first token event of each attempt, `kills` times. */
  async function followJob(kills: number): Promise<Followed> {
    const before = await worker(LLAMA);
    const killer = new Killer(LLAMA, kills);
    const res = await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: LLAMA, input: { prompt: 'Once upon a time', max_new_tokens: 150, temperature: 0.9, seed: 31, logit_bias: noEnd(LLAMA) } }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const tokens: Followed['tokens'] = [];
    const statuses: Followed['statuses'] = [];
    const parser = createParser({
      onEvent: (e) => {
        const data = JSON.parse(e.data) as Record<string, unknown>;
        if (e.event === 'token') {
          tokens.push(data as unknown as Followed['tokens'][number]);
          killer.maybe();
        } else if (e.event === 'status') statuses.push({ status: data.status as string, attempts: data.attempts as number });
      },
    });
    const events = await fetch(`${easel.inference}/v1/jobs/${id}/events`, { headers: { 'last-event-id': '0' } });
    const decoder = new TextDecoder();
    for await (const part of events.body!) parser.feed(decoder.decode(part as Uint8Array, { stream: true }));
    await killer.landed(before);
    const job = (await (await fetch(`${easel.inference}/v1/jobs/${id}`)).json()) as { status: string; attempts: number; outputs: { url: string }[]; error: Followed['error'] };
    const stored = job.outputs[0] ? await (await fetch(`${easel.inference}${job.outputs[0].url}`)).text() : '';
    // A replay from the start joins to the same text.
    const replay = await (await fetch(`${easel.inference}/v1/jobs/${id}/events`, { headers: { 'last-event-id': '0' } })).text();
    const replayed = [...replay.matchAll(/event: token\ndata: (.*)\n/g)].map((m) => (JSON.parse(m[1]!) as { text: string }).text).join('');
    expect(replayed).toBe(tokens.map((t) => t.text).join(''));
    return { status: job.status, attempts: job.attempts, tokens, statuses, stored, error: job.error };
  }

  it('a text job followed over SSE: its events join to its stored output, one kill and two kills, with its attempts counted', async () => {
    const whole = await followJob(0);
    expect(whole).toMatchObject({ status: 'succeeded', attempts: 1 });
    for (const kills of [1, 2]) {
      const job = await followJob(kills);
      expect(job.status).toBe('succeeded');
      expect(job.attempts).toBe(1 + kills);
      expect(job.stored).toBe(whole.stored);
      expect(job.tokens.map((t) => t.text).join('')).toBe(job.stored);
      // Each chunk starts where the one before ended; the steps go on across the retries.
      let at = 0;
      for (const t of job.tokens) {
        expect(t.offset).toBe(at);
        at += t.text.length;
      }
      expect(job.tokens.map((t) => t.step)).toEqual([...job.tokens.map((t) => t.step)].sort((a, b) => a - b));
      // Each retry is announced: running, attempt 2 (and 3), before the text goes on.
      expect(job.statuses.filter((s) => s.status === 'running').map((s) => s.attempts)).toEqual(Array.from({ length: kills + 1 }, (_, i) => i + 1));
    }
  }, 120_000);

  it('a job whose worker dies on every run fails after --max-attempts runs, saying so', async () => {
    const job = await followJob(3);
    expect(job.status).toBe('failed');
    expect(job.attempts).toBe(3);
    expect(job.error?.code).toBe('EASEL_WORKER_DIED');
    expect(job.error?.message).toMatch(/ran 3 times, each ended by its worker dying, the most allowed \(--max-attempts 3\)/);
  }, 120_000);

  it('speculative decoding (tiny-lm with its draft): a stream killed mid-way equals the uninterrupted one', async () => {
    for (const [, sampling] of SAMPLINGS) {
      const whole = await streamChat(SPECULATIVE, sampling, 0, 'Once upon a time');
      const interrupted = await streamChat(SPECULATIVE, sampling, 1, 'Once upon a time');
      expect(interrupted.text).toBe(whole.text);
      expect(interrupted.completionTokens).toBe(whole.completionTokens);
    }
  }, 120_000);

  it('8 concurrent streams sharing the killed worker each equal their uninterrupted run', async () => {
    const asks = Array.from({ length: 8 }, (_, i) => ({ content: `Tell me a story about a ${['cat', 'dog', 'bird', 'fish', 'frog', 'fox', 'bee', 'cow'][i]}.`, sampling: i % 2 === 0 ? { temperature: 0 } : { temperature: 0.9, seed: 100 + i } }));
    const whole = await Promise.all(asks.map((a) => streamChat(LLAMA, a.sampling, 0, a.content)));
    const before = await worker(LLAMA);
    const killer = new Killer(LLAMA, 1);
    const interrupted = await Promise.all(
      asks.map(async (a) => {
        let text = '';
        let completionTokens = -1;
        const request = { model: LLAMA, messages: [{ role: 'user' as const, content: a.content }], max_tokens: 160, ...a.sampling, logit_bias: noEnd(LLAMA), stream: true as const, stream_options: { include_usage: true } };
        for await (const chunk of await client.chat.completions.create(request)) {
          const delta = chunk.choices[0]?.delta?.content ?? '';
          text += delta;
          if (delta) killer.maybe();
          if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
        }
        return { text, completionTokens };
      }),
    );
    await killer.landed(before);
    for (const [i, w] of whole.entries()) {
      expect(interrupted[i]!.text, asks[i]!.content).toBe(w.text);
      expect(interrupted[i]!.completionTokens).toBe(160);
    }
  }, 120_000);
});
