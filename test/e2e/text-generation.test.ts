// The text-generation handler through the real server with tiny-lm: TorchServe's GPT-Fast
// contract on /predictions (text back; streamed in chunks when asked), and jobs whose token
// events stream over SSE and whose text is stored as the output.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, serveModel, waitFor, type EaselProcess } from '../helpers/easel-process.js';

const run = promisify(execFile);

const TINY_LM = path.join(ROOT, 'models', 'tiny-lm');
const PROMPT = 'Once upon a time, there was a little girl named Lily.';

describe('text generation (tiny-lm)', () => {
  let easel: EaselProcess;
  beforeAll(async () => {
    easel = await serveModel('tiny-lm', TINY_LM);
  }, 90_000);
  afterAll(() => easel?.stop());

  const predict = (body: Record<string, unknown>, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> =>
    fetch(`${easel.inference}/predictions/tiny-lm`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal });

  it('answers TorchServe-style with the text; streamed, the same text in several chunks', async () => {
    const res = await predict({ data: PROMPT, max_new_tokens: 60, temperature: 0 });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text.length).toBeGreaterThan(20);
    const streamed = await predict({ data: PROMPT, max_new_tokens: 60, temperature: 0, stream: true });
    expect(streamed.status).toBe(200);
    const chunks: string[] = [];
    const decoder = new TextDecoder();
    for await (const chunk of streamed.body!) chunks.push(decoder.decode(chunk as Uint8Array, { stream: true }));
    expect(chunks.join('')).toBe(text);
    expect(chunks.length).toBeGreaterThan(1);
    // JSON when asked: the finish reason and the token counts.
    const json = (await (await predict({ data: PROMPT, max_new_tokens: 60, temperature: 0 }, { accept: 'application/json' })).json()) as { text: string; finish_reason: string; usage: { completion_tokens: number } };
    expect(json.text).toBe(text);
    expect(json.usage.completion_tokens).toBeGreaterThan(0);
    // Time to first token, time per token and token counts are exported.
    const metrics = await (await fetch(`${easel.metrics}/metrics`)).text();
    expect(metrics).toMatch(/easel_time_to_first_token_seconds_count\{model="tiny-lm"\} [1-9]/);
    expect(metrics).toMatch(/easel_inter_token_latency_seconds_count\{model="tiny-lm"\} [1-9]/);
    expect(Number(/easel_generation_tokens_total\{model="tiny-lm"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(json.usage.completion_tokens);
    expect(metrics).toMatch(/easel_active_sequences\{model="tiny-lm"\} \d+/);
    // tiny-lm: 4 layers × keys and values × 4 heads × 32 × float32 per cached position (0 once the
    // work has ended: test/e2e/llm-metrics.test.ts).
    expect(Number(/easel_kv_cache_bytes\{model="tiny-lm"\} (\d+)/.exec(metrics)?.[1]) % (4 * 2 * 4 * 32 * 4)).toBe(0);
  });

  it('refuses what it cannot do with a 400 naming the field', async () => {
    const long = await predict({ data: 'tom '.repeat(400) });
    expect(long.status).toBe(400);
    expect(await long.json()).toMatchObject({ code: 'EASEL_INVALID_PARAMETER', field: 'prompt', message: expect.stringMatching(/maximum context length is 256 tokens/) });
    const hot = await predict({ data: PROMPT, temperature: 9 });
    expect(await hot.json()).toMatchObject({ field: 'temperature' });
    const unknown = await predict({ data: PROMPT, num_inference_steps: 3 });
    expect(await unknown.json()).toMatchObject({ field: 'num_inference_steps' });
  });

  it('a job streams token events over SSE and stores the text as its output', async () => {
    const res = await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-lm', input: { prompt: PROMPT, max_new_tokens: 40, temperature: 0 } }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const events = await (await fetch(`${easel.inference}/v1/jobs/${id}/events`, { headers: { 'last-event-id': '0' } })).text();
    const tokens = [...events.matchAll(/event: token\ndata: (.*)\n/g)].map((m) => (JSON.parse(m[1]!) as { text: string }).text);
    expect(tokens.length).toBeGreaterThan(1);
    let job: { status: string; outputs: { url: string; content_type: string }[] } | undefined;
    await waitFor(async () => (job = (await (await fetch(`${easel.inference}/v1/jobs/${id}`)).json()) as typeof job)!.status === 'succeeded', 20_000, 'the job to finish');
    expect(job!.outputs[0]!.content_type).toMatch(/^text\/plain/);
    const stored = await (await fetch(`${easel.inference}${job!.outputs[0]!.url}`)).text();
    expect(tokens.join('')).toBe(stored);
    const direct = await (await predict({ data: PROMPT, max_new_tokens: 40, temperature: 0 })).text();
    expect(stored).toBe(direct);
  });

  it('a client that disconnects mid-stream frees its sequence at the next iteration', async () => {
    const stepped = async (): Promise<number> => Number(/easel_step_batch_size_sum\{model="tiny-lm"\} ([\d.e+]+)/.exec(await (await fetch(`${easel.metrics}/metrics`)).text())?.[1] ?? 0);
    const before = await stepped();
    const controller = new AbortController();
    // End-of-text banned: left alone, it would run all 200 steps.
    const res = await predict({ data: PROMPT, max_new_tokens: 200, temperature: 0.8, seed: 5, stream: true, logit_bias: { '0': -100, '2': -100 } }, {}, controller.signal);
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await reader.cancel().catch(() => undefined);
    const idle = async (): Promise<boolean> => ((await (await fetch(`${easel.management}/models/tiny-lm`)).json()) as { workers: { status: string }[] }[])[0]!.workers[0]!.status === 'READY';
    await waitFor(idle, 10_000, 'the worker to be idle again');
    // The sequence left after a few steps, far from its 200.
    expect((await stepped()) - before).toBeLessThan(100);
  });

  it('easel chat and easel generate print the tokens as they come', async () => {
    const api = (await (await fetch(`${easel.inference}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-lm', messages: [{ role: 'user', content: 'What color is the sky?' }], temperature: 0, max_tokens: 30 }),
    })).json()) as { choices: { message: { content: string } }[] };
    const chat = await run(process.execPath, [CLI, 'chat', 'What', 'color', 'is', 'the', 'sky?', '--url', easel.inference, '--temperature', '0', '--max-tokens', '30']);
    const [answer, usage] = chat.stdout.split('\n');
    expect(answer).toBe(api.choices[0]!.message.content);
    expect(usage).toMatch(/\(\d+ prompt tokens, \d+ generated\)/);
    const dir = mkdtempSync(path.join(tmpdir(), 'easel-cli-lm-'));
    try {
      const file = path.join(dir, 'story.txt');
      const gen = await run(process.execPath, [CLI, 'generate', PROMPT, '--model', 'tiny-lm', '--url', easel.inference, '--max-tokens', '30', '--temperature', '0', '-o', file]);
      const saved = readFileSync(file, 'utf8');
      expect(gen.stdout).toBe(`${saved}\nsaved ${file}\n`);
      expect(saved).toBe(await (await predict({ data: PROMPT, max_new_tokens: 30, temperature: 0 })).text());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
