// The API process's work per request is bounded before it is spent: while clients send the worst
// requests the text routes admit (and the oversized ones that used to be tokenized in full, each
// of n copies), /ping keeps answering at once, and the server's own event-loop lag metric says so.
import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel, type EaselProcess } from '../helpers/easel-process.js';

let easel: EaselProcess;
beforeAll(async () => {
  easel = await serveModel('tiny-lm', path.join(ROOT, 'models', 'tiny-lm'));
}, 60_000);
afterAll(() => easel?.stop());

const post = (route: string, body: unknown): Promise<Response> =>
  fetch(`${easel.inference}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });

/** What the server answers to a JSON POST that declares `bytes` and sends none of them (a client would have to send them all first to read the answer). */
function declared(route: string, bytes: number): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect(Number(new URL(easel.inference).port), '127.0.0.1', () => socket.write(`POST ${route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${bytes}\r\n\r\n`));
    socket.on('data', (d) => (answer += String(d)));
    socket.on('close', () => resolve(answer));
  });
}

describe('bounded work before the event loop', () => {
  it('refuses text that cannot fit the context before tokenizing it, naming the bound', async () => {
    const started = performance.now();
    // 256 messages of 39 KB: refused from its Content-Length, before a byte of the body is read.
    expect(await declared('/v1/chat/completions', 256 * 39_000 + 10_000)).toMatch(/^HTTP\/1\.1 413/);
    const chat = await post('/v1/chat/completions', { model: 'tiny-lm', messages: Array.from({ length: 5 }, () => ({ role: 'user', content: 'x'.repeat(39_000) })) });
    expect(chat.status).toBe(400);
    expect(((await chat.json()) as { error: { message: string; param: string } }).error).toMatchObject({ param: 'messages[0].content', message: expect.stringMatching(/cannot fit this model's 256-token context/) });
    // The issue's 16 prompts of 99k characters are past the text routes' 256 KiB body limit; 2 of them are read, and refused by their length.
    expect(await declared('/v1/completions', 16 * 99_000 + 1000)).toMatch(/^HTTP\/1\.1 413/);
    const completions = await post('/v1/completions', { model: 'tiny-lm', prompt: Array.from({ length: 2 }, () => 'y '.repeat(49_500)), n: 16 });
    expect(completions.status).toBe(400);
    expect(((await completions.json()) as { error: { message: string } }).error.message).toMatch(/characters; more than \d+ cannot fit/);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('keeps /ping answering within 50 ms (p99) while the worst requests arrive', async () => {
    const rules = (await (await fetch(`${easel.inference}/v1/models/tiny-lm`)).json()) as { easel: { parameters: { context_length: number } } };
    expect(rules.easel.parameters.context_length).toBe(256);
    // At the character bound, so each is tokenized (then refused by its token count), n copies tokenized once.
    const longest = 'Tom had a red ball. '.repeat(166);
    const worst: [string, unknown][] = [
      ['/v1/completions', { model: 'tiny-lm', prompt: Array.from({ length: 16 }, () => longest), n: 16, max_tokens: 1 }],
      ['/v1/chat/completions', { model: 'tiny-lm', messages: Array.from({ length: 256 }, () => ({ role: 'user', content: 'Tom had a ball. ' })), n: 16, max_tokens: 1 }],
      // The largest body the route reads (256 KiB of messages), refused by their characters before any tokenizing.
      ['/v1/chat/completions', { model: 'tiny-lm', messages: Array.from({ length: 6 }, () => ({ role: 'user', content: 'x'.repeat(43_000) })) }],
      ['/predictions/tiny-lm', { prompt: longest, max_new_tokens: 1 }],
      ['/v1/jobs', { model: 'tiny-lm', input: { prompt: longest, max_new_tokens: 1 } }],
    ];
    // Serialized once: the load generator shares this process with the pinger.
    const bodies = worst.map(([route, body]) => [route, JSON.stringify(body)] as const);
    const latencies: number[] = [];
    let sending = true;
    const pings = (async () => {
      while (sending) {
        const t0 = performance.now();
        const res = await fetch(`${easel.inference}/ping`);
        await res.text();
        latencies.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const deadline = Date.now() + 4000;
    let sent = 0;
    while (Date.now() < deadline) {
      const answers = await Promise.all(bodies.map(async ([route, body]) => (await post(route, body)).status));
      for (const status of answers) expect(status).toBeLessThan(500);
      sent += answers.length;
    }
    sending = false;
    await pings;
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
    console.log(`${sent} worst requests in 4 s; /ping ${latencies.length} times, p50 ${latencies[Math.floor(latencies.length / 2)]!.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
    expect(latencies.length).toBeGreaterThan(50);
    expect(p99).toBeLessThan(50);
    // The lag histogram counts each second's worst stall.
    const metrics = await (await fetch(`${easel.metrics}/metrics`)).text();
    expect(metrics).toMatch(/^easel_event_loop_lag_seconds_count [1-9]/m);
  }, 30_000);
});
