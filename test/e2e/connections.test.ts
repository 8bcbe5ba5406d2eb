// What a client can hold open: idle connections are reaped and make room for new ones (1,100 of
// them against a server with the common 1024 open-file limit leave /ping answering), a request
// whose body never comes gets 408, OPTIONS reads no body and needs a key unless it is a CORS
// preflight, one client's event streams are bounded, WebSocket messages are small.
import { connect, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES, startEasel, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const started: EaselProcess[] = [];
afterAll(async () => {
  for (const e of started) await e.stop();
});
async function serve(args: string[], env: Record<string, string> = {}, openFileLimit?: number): Promise<EaselProcess> {
  const e = await startEasel(['--model-store', FIXTURES, '--models', 'slow', ...args], env, { openFileLimit });
  started.push(e);
  await waitModelLive(e, 'slow');
  return e;
}

const portOf = (url: string): number => Number(new URL(url).port);

/** Raw bytes to a port; resolves with what came back when the server closes or `ms` pass. */
function raw(port: number, text: string, ms: number): Promise<{ answer: string; elapsedMs: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    let answer = '';
    const s = connect(port, '127.0.0.1', () => s.write(text));
    s.on('data', (d) => (answer += String(d)));
    const done = (): void => resolve({ answer, elapsedMs: Date.now() - t0 });
    s.on('close', done);
    s.on('error', () => undefined);
    setTimeout(() => {
      s.destroy();
    }, ms);
  });
}

describe('connections', () => {
  it('1,100 idle connections under a 1024 open-file limit leave /ping answering at once', async () => {
    const e = await serve([], {}, 1024);
    const port = portOf(e.inference);
    const sockets: Socket[] = [];
    await Promise.all(
      Array.from({ length: 1100 }, () => new Promise<void>((resolve) => {
        const s = connect(port, '127.0.0.1', () => resolve());
        s.on('error', () => resolve());
        sockets.push(s);
      })),
    );
    try {
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        const res = await fetch(`${e.inference}/ping`, { signal: AbortSignal.timeout(5000) });
        expect(res.status).toBe(200);
        expect(Date.now() - t0).toBeLessThan(2000);
      }
      // Most idle ones were closed to make room (the server holds at most 60 % of 1024).
      expect(sockets.filter((s) => !s.destroyed && s.readyState === 'open').length).toBeLessThan(700);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 60_000);

  it('answers 408 to a request whose declared body never comes, within the request timeout', async () => {
    const e = await serve(['--request-timeout-ms', '2000']);
    const { answer, elapsedMs } = await raw(portOf(e.inference), 'POST /predictions/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"da', 10_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(answer).toContain('EASEL_REQUEST_TIMEOUT');
    expect(elapsedMs).toBeLessThan(8000);
  }, 20_000);

  it('closes a connection that sends nothing after its idle time', async () => {
    const e = await serve([]);
    const { answer, elapsedMs } = await raw(portOf(e.inference), '', 30_000);
    expect(answer).toBe('');
    expect(elapsedMs).toBeLessThan(20_000);
  }, 40_000);

  it('OPTIONS reads no body, and needs a key unless it is a CORS preflight', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'easel-keys-'));
    const key = 'options-key-0123456789';
    writeFileSync(path.join(dir, 'keys.yaml'), `keys:\n  - {name: a, sha256: ${createHash('sha256').update(key).digest('hex')}}\n`);
    const e = await serve(['--api-keys-file', path.join(dir, 'keys.yaml'), '--cors-origins', 'https://studio.example']);
    const port = portOf(e.inference);
    // 10 MB declared, nothing sent: the answer comes from the headers alone.
    const big = await raw(port, `OPTIONS /predictions/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Length: 10000000\r\n\r\n`, 5000);
    expect(big.answer).toMatch(/^HTTP\/1\.1 400/);
    expect(big.answer).toContain('OPTIONS takes no body');
    expect((await fetch(`${e.inference}/v1/models`, { method: 'OPTIONS' })).status).toBe(401);
    const preflight = await fetch(`${e.inference}/v1/jobs`, { method: 'OPTIONS', headers: { origin: 'https://studio.example', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://studio.example');
  });

  it("bounds one client's open event streams, and a WebSocket message is small", async () => {
    const e = await serve(['--max-streams-per-client', '3']);
    const job = (await (await fetch(`${e.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'slow', input: { inputs: { x: [1], iterations: 3_000_000 } } }) })).json()) as { id: string };
    const controllers = Array.from({ length: 3 }, () => new AbortController());
    const open = await Promise.all(controllers.map((c) => fetch(`${e.inference}/v1/jobs/${job.id}/events`, { signal: c.signal })));
    expect(open.map((r) => r.status)).toEqual([200, 200, 200]);
    const fourth = await fetch(`${e.inference}/v1/jobs/${job.id}/events`);
    expect(fourth.status).toBe(429);
    expect(await fourth.json()).toMatchObject({ code: 'EASEL_TOO_MANY_STREAMS' });
    controllers[0]!.abort();
    let again: Response | undefined;
    for (let i = 0; i < 50 && again?.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      again = await fetch(`${e.inference}/v1/jobs/${job.id}/events`, { signal: controllers[1]!.signal });
    }
    expect(again?.status).toBe(200);
    for (const c of controllers) c.abort();

    // A 100 KB message to the WebSocket closes it (1009: too big), unread.
    const ws = new WebSocket(`${e.inference.replace('http', 'ws')}/ws/jobs/${job.id}`);
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send(Buffer.alloc(100_000));
    expect(await closed).toBe(1009);
    await fetch(`${e.inference}/v1/jobs/${job.id}`, { method: 'DELETE' });
  }, 30_000);
});
