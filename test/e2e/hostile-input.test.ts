// Hostile input against the real server: a property-based fuzz over every route of every port,
// and webhooks aimed at what the server can reach. Connections go to loopback only: internal and
// public addresses are refused before any connection is attempted.
import { createHmac } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, serveModel, startEasel, waitFor, type EaselProcess } from '../helpers/easel-process.js';

const SECRET = 'a-hostile-input-test-secret';
let easel: EaselProcess;
let receiver: Server;
let receiverPort = 0;
const received: { url: string; headers: IncomingHttpHeaders; body: string }[] = [];

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ url: req.url ?? '', headers: req.headers, body });
      // A receiver that redirects to the management API, as an attacker's would.
      if (req.url?.startsWith('/redirect')) res.writeHead(302, { location: `${easel.management}/models?url=tiny-sd&model_name=via-redirect&synchronous=true` }).end();
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverPort = (receiver.address() as AddressInfo).port;
  easel = await serveModel('tiny-sd', path.join(ROOT, 'models', 'tiny-sd'), ['--webhook-secret', SECRET, '--webhook-allowed-hosts', `127\\.0\\.0\\.1:${receiverPort}`]);
}, 90_000);

afterAll(async () => {
  await easel?.stop();
  await new Promise((r) => receiver?.close(r));
});

const json = { 'content-type': 'application/json' };

async function submitJob(input: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: json, body: JSON.stringify({ model: 'tiny-sd', input, ...extra }) });
}

async function registeredModels(): Promise<string[]> {
  const body = (await (await fetch(`${easel.management}/models`)).json()) as { models: { modelName: string }[] };
  return body.models.map((m) => m.modelName);
}

describe('webhooks cannot reach what the server can', () => {
  it('refuses internal targets in every spelling at submission (400, field webhook), registering nothing', async () => {
    const mgmtPort = new URL(easel.management).port;
    const targets = [
      `http://127.0.0.1:${mgmtPort}/models?url=tiny-sd&model_name=pwned&synchronous=true`,
      `http://[::1]:${mgmtPort}/models?url=tiny-sd`,
      `http://[::ffff:127.0.0.1]:${mgmtPort}/models?url=tiny-sd`,
      `http://2130706433:${mgmtPort}/models?url=tiny-sd`,
      `http://0x7f000001:${mgmtPort}/models?url=tiny-sd`,
      `http://localhost:${mgmtPort}/models?url=tiny-sd`,
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/hook',
      `http://127.0.0.1:${receiverPort + 1}/`,
      'file:///etc/passwd',
    ];
    for (const webhook of targets) {
      // The input is invalid too: had the guard let a target through, the job would still be refused
      // (naming num_inference_steps) and never queued, so no delivery could leave for any address.
      const res = await submitJob({ prompt: 'x', num_inference_steps: 0 }, { webhook });
      expect(res.status, webhook).toBe(400);
      expect(await res.json(), webhook).toMatchObject({ code: 'EASEL_URL_REFUSED', field: 'webhook' });
    }
    expect(await registeredModels()).toEqual(['tiny-sd']);
  });

  it('delivers to an allow-listed receiver, signed, and does not follow its redirect to the management API', async () => {
    const hook = `http://127.0.0.1:${receiverPort}/ok`;
    const redirect = `http://127.0.0.1:${receiverPort}/redirect`;
    const ok = (await (await submitJob({ prompt: 'x', num_inference_steps: 2 }, { webhook: hook, webhook_events_filter: ['completed'] })).json()) as { id: string };
    const bounced = (await (await submitJob({ prompt: 'y', num_inference_steps: 2 }, { webhook: redirect, webhook_events_filter: ['completed'] })).json()) as { id: string };
    await waitFor(() => received.some((r) => r.body.includes(ok.id)) && received.some((r) => r.body.includes(bounced.id)), 30_000, 'both deliveries');
    const delivery = received.find((r) => r.body.includes(ok.id))!;
    const signed = `v1,${createHmac('sha256', SECRET).update(`${String(delivery.headers['webhook-id'])}.${String(delivery.headers['webhook-timestamp'])}.${delivery.body}`).digest('base64')}`;
    expect(delivery.headers['webhook-signature']).toBe(signed);
    // The 302 is answered, not followed (and not retried): the management API registered nothing.
    await waitFor(() => easel.logs.some((l) => l.includes('redirects are not followed') && l.includes(bounced.id)), 10_000, 'the redirect to be logged');
    expect(received.filter((r) => r.body.includes(bounced.id))).toHaveLength(1);
    expect(await registeredModels()).toEqual(['tiny-sd']);
  }, 60_000);
});

// ---- Fuzz ------------------------------------------------------------------------------------

type Port = 'inference' | 'management' | 'metrics';
interface Route {
  port: Port;
  method: string;
  path: (name: string, query: string) => string;
}

// Every route of every port. Mutating management routes get random names only, so the fuzz
// cannot unregister or rescale tiny-sd.
const ROUTES: Route[] = [
  { port: 'inference', method: 'POST', path: () => '/predictions/tiny-sd' },
  { port: 'inference', method: 'POST', path: () => '/predictions/tiny-sd/1.0' },
  { port: 'inference', method: 'POST', path: (n) => `/predictions/${n}` },
  { port: 'inference', method: 'POST', path: (_n, q) => `/v1/jobs${q}` },
  { port: 'inference', method: 'GET', path: (_n, q) => `/v1/jobs${q}` },
  { port: 'inference', method: 'GET', path: (n) => `/v1/jobs/${n}` },
  { port: 'inference', method: 'DELETE', path: (n) => `/v1/jobs/${n}` },
  { port: 'inference', method: 'GET', path: (n, q) => `/v1/jobs/${n}/outputs/${q.slice(1) || '0'}` },
  { port: 'inference', method: 'GET', path: (n) => `/v1/jobs/${n}/events` },
  { port: 'inference', method: 'GET', path: (n) => `/ws/jobs/${n}` },
  { port: 'inference', method: 'GET', path: () => '/api-description' },
  { port: 'inference', method: 'GET', path: (_n, q) => `/ping${q}` },
  { port: 'inference', method: 'OPTIONS', path: () => '/' },
  { port: 'inference', method: 'GET', path: () => '/openapi.json' },
  { port: 'inference', method: 'PATCH', path: (n) => `/${n}` },
  { port: 'inference', method: 'GET', path: (_n, q) => `/v1/models${q}` },
  { port: 'inference', method: 'POST', path: () => '/v1/completions' },
  { port: 'inference', method: 'POST', path: () => '/v1/chat/completions' },
  { port: 'inference', method: 'POST', path: () => '/v1/images/generations' },
  { port: 'inference', method: 'POST', path: () => '/v1/images/edits' },
  { port: 'inference', method: 'POST', path: () => '/tokenize' },
  { port: 'inference', method: 'POST', path: () => '/detokenize' },
  { port: 'inference', method: 'GET', path: (n) => `/v1/models/${n}` },
  { port: 'inference', method: 'GET', path: (_n, q) => `/${q}` },
  { port: 'inference', method: 'GET', path: (n) => `/ui/${n}` },
  { port: 'inference', method: 'POST', path: () => '/v2/models/tiny-sd/infer' },
  { port: 'inference', method: 'POST', path: (n) => `/v2/models/${n}/versions/1.0/infer` },
  { port: 'inference', method: 'GET', path: (n) => `/v2/models/${n}` },
  { port: 'inference', method: 'GET', path: (n) => `/v2/models/${n}/ready` },
  { port: 'inference', method: 'GET', path: (_n, q) => `/v2/health/ready${q}` },
  { port: 'management', method: 'POST', path: (_n, q) => `/models${q}` },
  { port: 'management', method: 'GET', path: (_n, q) => `/models${q}` },
  { port: 'management', method: 'GET', path: (n) => `/models/${n}` },
  { port: 'management', method: 'GET', path: () => '/models/tiny-sd/all' },
  { port: 'management', method: 'PUT', path: (n, q) => `/models/${n}${q}` },
  { port: 'management', method: 'DELETE', path: (n) => `/models/${n}/9.9` },
  { port: 'management', method: 'PUT', path: (n) => `/models/${n}/1.0/set-default` },
  { port: 'metrics', method: 'GET', path: () => '/metrics' },
  { port: 'metrics', method: 'POST', path: (n) => `/metrics/${n}` },
];

const protoKeys = fc.constantFrom('__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__');
const hostileString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 50 }),
  protoKeys,
  fc.constantFrom('', ' ', '\u0000', '\u202e', '🎨'.repeat(300), 'a'.repeat(5000), '../../etc/passwd', '%00', '{"__proto__":{}}', 'NaN', '-1', '1e999'),
);
const hostileValue = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  hostileString,
  fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, -0, 0.5, 2 ** 53, 1e-320),
  fc.array(fc.double(), { maxLength: 50 }),
);
/** Text-to-image fields with hostile values, and hostile keys. */
const fields = fc.dictionary(
  fc.oneof(fc.constantFrom('prompt', 'data', 'negative_prompt', 'num_inference_steps', 'guidance_scale', 'width', 'height', 'seed', 'scheduler', 'num_images', 'output_format', 'preview_every', 'scheduler_config', 'image', 'mask_image', 'strength', 'model', 'input', 'priority', 'webhook', 'webhook_events_filter',
    // The OpenAI surface's own, refused or taken.
    'messages', 'tokens', 'stop_token_ids', 'response_format', 'tools', 'tool_choice', 'suffix', 'best_of', 'top_logprobs', 'add_special_tokens'), protoKeys, fc.string()),
  hostileValue,
  { maxKeys: 8 },
);
const deep = fc.integer({ min: 20, max: 6000 }).map((n) => `{"data":${'['.repeat(n)}${']'.repeat(n)}}`);
const deepJob = fc.integer({ min: 20, max: 3000 }).map((n) => `{"model":"tiny-sd","input":{"prompt":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}}`);
const manyKeys = fc.integer({ min: 900, max: 5000 }).map((n) => JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]))));
const body = fc.oneof(
  fields.map((f) => JSON.stringify(f)),
  fields.map((f) => JSON.stringify({ model: 'tiny-sd', input: f })),
  protoKeys.map((k) => `{"prompt":"x","${k}":{"polluted":true},"scheduler":"${k}"}`),
  protoKeys.map((k) => `{"model":"tiny-sd","input":{"prompt":"x","scheduler":"${k}"}}`),
  protoKeys.map((k) => `{"model":"tiny-sd","input":{"prompt":"x","scheduler_config":{"${k}":1,"trained_betas":[0.5]}}}`),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  deep,
  deepJob,
  manyKeys,
  fc.constantFrom('{"num_inference_steps": 1e999}', '{"seed": 123456789012345678901234567890}', '{', '{"a":1}}', 'null', '[]', '"x"', '\u0000', '--xyz\r\nContent-Disposition: form-data; name="data"\r\n\r\nx', '--x--'),
  hostileString,
);
const contentType = fc.constantFrom(
  'application/json', 'application/json; charset=utf-8', 'text/plain', 'multipart/form-data', 'multipart/form-data; boundary=xyz', 'application/x-www-form-urlencoded',
  'application/octet-stream', 'image/gif', 'text/html', 'application/xml', 'application/json; charset=utf-16', '*/*', 'nonsense',
);
const query = fc.oneof(
  fc.constant(''),
  fc.dictionary(fc.oneof(fc.constantFrom('url', 'limit', 'next_page_token', 'min_worker', 'max_worker', 'synchronous', 'batch_size', 'status', 'model', 'cursor', 'initial_workers', 'model_name'), protoKeys, fc.string()), hostileString, { maxKeys: 4 })
    .map((q) => `?${new URLSearchParams(Object.entries(q)).toString()}`),
);
const name = fc.oneof(fc.constantFrom('nope', 'constructor', '__proto__', 'toString', '..%2F..%2Fetc', '%00', 'a'.repeat(300)), fc.stringMatching(/^[A-Za-z0-9._%-]{1,40}$/));
/**
 * Whether a body could carry an http(s) webhook past admission: the fuzz never sends one, so the
 * server never resolves or connects to a generated host (webhooks have their own tests above,
 * which prove refusals without the network).
 */
function namesWebhook(body: string | undefined): boolean {
  if (body === undefined) return false;
  try {
    const parsed = JSON.parse(body) as unknown;
    const hook = parsed && typeof parsed === 'object' && Object.hasOwn(parsed, 'webhook') ? (parsed as Record<string, unknown>).webhook : undefined;
    return typeof hook === 'string' && /^\s*https?:/i.test(hook);
  } catch {
    return false;
  }
}
const request = fc
  .record({ route: fc.constantFrom(...ROUTES), name, query, body: fc.option(body, { nil: undefined }), contentType: fc.option(contentType, { nil: undefined }) })
  .filter((r) => !namesWebhook(r.body));

/** An error body: Easel's shape, no stack, no path of this machine. */
function expectErrorShape(status: number, type: string | null, text: string, what: string): void {
  expect(type, what).toMatch(/^application\/json/);
  const parsed = JSON.parse(text) as Record<string, unknown>;
  // OpenAI's routes answer in OpenAI's shape: {"error": {message, type, param, code}}; the
  // router's own refusals (a path parameter too long: 414) come before any route, in Easel's.
  const openAi = status !== 414 && /(\/v1\/(completions|chat\/completions|images\/(generations|edits)|models)|^\/(tokenize|detokenize))\b/.test(new URL(what.split(' ')[1] ?? '', 'http://x').pathname);
  const body = (openAi ? parsed.error : parsed) as Record<string, unknown>;
  expect(body && typeof body === 'object', `${what}: ${text}`).toBe(true);
  if (openAi) expect(typeof body.type, `${what}: ${text}`).toBe('string');
  expect(typeof body.code === 'string' && body.code.startsWith('EASEL_'), `${what}: ${text}`).toBe(true);
  expect(typeof body.message, what).toBe('string');
  expect(text, what).not.toContain(ROOT);
  expect(text, what).not.toMatch(/\bat .*\.(js|ts):\d+/);
  expect(status, what).toBeGreaterThanOrEqual(400);
}

describe('fuzz: every route of every port', () => {
  it('answers hostile requests with a 4xx in the one error shape, never a 5xx or a hang, and still serves', async () => {
    let cases = 0;
    let byStatus = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        cases++;
        const base = r.route.port === 'inference' ? easel.inference : r.route.port === 'management' ? easel.management : easel.metrics;
        const url = `${base}${r.route.path(encodeURIComponent(r.name), r.query)}`;
        const headers: Record<string, string> = {};
        if (r.contentType !== undefined) headers['content-type'] = r.contentType;
        const sendsBody = r.body !== undefined && r.route.method !== 'GET' && r.route.method !== 'OPTIONS';
        const what = `${r.route.method} ${url.slice(0, 200)} [${r.contentType ?? '-'}] ${sendsBody ? r.body!.slice(0, 200) : ''}`;
        const res = await fetch(url, { method: r.route.method, headers, body: sendsBody ? r.body : undefined, signal: AbortSignal.timeout(20_000) });
        const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? '' : await res.text();
        byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
        expect([500, 502, 504], `${res.status} for ${what}: ${text.slice(0, 300)}`).not.toContain(res.status);
        if (res.status >= 400) expectErrorShape(res.status, res.headers.get('content-type'), text, what);
      }),
      { numRuns: Number(process.env.EASEL_FUZZ_RUNS ?? 2000), seed: process.env.EASEL_FUZZ_SEED ? Number(process.env.EASEL_FUZZ_SEED) : undefined },
    );
    byStatus = new Map([...byStatus].sort(([a], [b]) => a - b));
    console.log(`fuzz: ${cases} requests; statuses ${JSON.stringify(Object.fromEntries(byStatus))}`);
    // Still serving: a normal request gives a 64×64 PNG, and every model still has its worker.
    const res = await fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: json, body: JSON.stringify({ prompt: 'a red circle', num_inference_steps: 2, seed: 1 }) });
    expect(res.status).toBe(200);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
    expect((await fetch(`${easel.inference}/ping`)).status).toBe(200);
    expect(await registeredModels()).toEqual(['tiny-sd']);
  }, 600_000);

  it('answers oversized URLs and headers in the one error shape', async () => {
    for (const init of [{ url: `${easel.inference}/${'a'.repeat(20_000)}` }, { url: `${easel.inference}/ping`, headers: { 'x-big': 'b'.repeat(20_000) } }]) {
      const res = await fetch(init.url, { headers: init.headers });
      expect(res.status).toBe(431);
      expectErrorShape(res.status, res.headers.get('content-type'), await res.text(), init.url.slice(0, 80));
    }
  });
});

describe('fuzz with API keys: no key and a wrong key never reach a worker', () => {
  const KEY = 'fuzz-secret-key';
  /** Open without a key: health, the playground's files, the API description (and what no route matches). */
  const OPEN = /^\/(ping|openapi\.json|api-description|ui\/.*|v2\/health\/(live|ready))?(\?.*)?$/;

  it('answers every inference route without a valid key 401 (open routes aside), queues nothing and runs nothing', async () => {
    // Failed keys are throttled per address (20 a minute by default): this fuzz sends hundreds on purpose.
    const e = await serveModel('tiny-sd', path.join(ROOT, 'models', 'tiny-sd'), ['--max-auth-failures-per-minute', '100000'], { EASEL_API_KEYS: `fuzz=${KEY}` });
    try {
      const auth = fc.oneof(fc.constant(undefined), fc.string(), hostileString, fc.constantFrom(`${KEY}x`, KEY.slice(1), KEY.toUpperCase(), `Bearer${KEY}`, `Basic ${KEY}`), fc.string().map((k) => `Bearer ${k}`), fc.constant('Bearer '));
      const keyless = fc.record({ request, auth, header: fc.constantFrom('authorization', 'x-api-key') }).filter((r) => r.request.route.port === 'inference');
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(keyless, async ({ request: r, auth: presented, header }) => {
          const pathAndQuery = r.route.path(encodeURIComponent(r.name), r.query);
          const headers: Record<string, string> = {};
          if (r.contentType !== undefined) headers['content-type'] = r.contentType;
          // A header value fetch can send (no control characters).
          if (presented !== undefined && /^[\x20-\x7e]*$/.test(presented)) headers[header] = presented;
          const sendsBody = r.body !== undefined && r.route.method !== 'GET' && r.route.method !== 'OPTIONS';
          const res = await fetch(`${e.inference}${pathAndQuery}`, { method: r.route.method, headers, body: sendsBody ? r.body : undefined, signal: AbortSignal.timeout(20_000) });
          const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? '' : await res.text();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const what = `${r.route.method} ${pathAndQuery.slice(0, 120)} ${header}: ${String(headers[header]).slice(0, 40)}`;
          // A name of "." or ".." is resolved away by the URL fetch sends (/predictions/.. is /): the path as sent decides.
          const sent = new URL(`${e.inference}${pathAndQuery}`);
          if (r.route.method === 'OPTIONS' || OPEN.test(sent.pathname + sent.search)) return;
          // PATCH /{name} matches no route: any 4xx (its body may be refused before the 404).
          if (r.route.method === 'PATCH') return void expect(res.status, what).toBeGreaterThanOrEqual(400);
          // A route that exists refuses before its body is read: 401; or the router refuses the path (404, 405, 414).
          expect([401, 404, 405, 414], `${res.status} for ${what}: ${text.slice(0, 200)}`).toContain(res.status);
          if (res.status === 401) expectErrorShape(res.status, res.headers.get('content-type'), text, `${r.route.method} ${pathAndQuery}`);
        }),
        { numRuns: Number(process.env.EASEL_FUZZ_RUNS ?? 600), seed: process.env.EASEL_FUZZ_SEED ? Number(process.env.EASEL_FUZZ_SEED) : undefined },
      );
      console.log(`fuzz with keys: statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`);
      // Nothing was queued or run: the worker saw no request, the queue holds no job.
      const metrics = await (await fetch(`${e.metrics}/metrics`)).text();
      expect(metrics).not.toMatch(/^easel_handler_stage_seconds_count\{model="tiny-sd",stage="inference"\} [1-9]/m);
      expect(metrics).not.toMatch(/^easel_requests_total\{[^}]*model="tiny-sd"[^}]*\} [1-9]/m);
      const jobs = (await (await fetch(`${e.inference}/v1/jobs`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { jobs: unknown[] };
      expect(jobs.jobs).toEqual([]);
      // The right key still works.
      const ok = await fetch(`${e.inference}/predictions/tiny-sd`, { method: 'POST', headers: { ...json, authorization: `Bearer ${KEY}` }, body: JSON.stringify({ prompt: 'a red circle', num_inference_steps: 2, seed: 1 }) });
      expect(ok.status).toBe(200);
    } finally {
      await e.stop();
    }
  }, 600_000);
});

describe('lifecycle tells the truth', () => {
  it('refuses a model whose easel.yaml cannot make a valid request, with one log line, and serves the others', async () => {
    const store = mkdtempSync(path.join(tmpdir(), 'easel-bad-yaml-'));
    cpSync(path.join(FIXTURES, 'add-one'), path.join(store, 'add-one'), { recursive: true });
    cpSync(path.join(ROOT, 'models', 'tiny-sd'), path.join(store, 'bad-sd'), { recursive: true });
    const yaml = readFileSync(path.join(store, 'bad-sd', 'easel.yaml'), 'utf8').replace('name: tiny-sd', 'name: bad-sd').replace('scheduler: ddim', 'scheduler: constructor');
    writeFileSync(path.join(store, 'bad-sd', 'easel.yaml'), yaml);
    const e = await startEasel(['--model-store', store]);
    try {
      await waitFor(async () => (await fetch(`${e.inference}/ping`)).status === 200, 30_000, 'add-one to be live and /ping Healthy');
      expect(await (await fetch(`${e.management}/models`)).json()).toEqual({ models: [{ modelName: 'add-one', modelUrl: 'add-one' }] });
      const refused = e.logs.filter((l) => l.includes('bad-sd'));
      expect(refused, e.logs.join('\n')).toHaveLength(1);
      expect(refused[0]).toMatch(/defaults\.scheduler/);
      expect(refused[0]).toContain(path.join(store, 'bad-sd'));
    } finally {
      await e.stop();
      rmSync(store, { recursive: true, force: true });
    }
  }, 60_000);

  it('exits within --shutdown-grace-ms of SIGTERM though a request still runs, and at once on a second signal, taking its busy worker with it', async () => {
    for (const second of [false, true]) {
      const e = await serveModel('slow', path.join(FIXTURES, 'slow'), ['--shutdown-grace-ms', '1000']);
      const pending = fetch(`${e.inference}/predictions/slow`, { method: 'POST', headers: json, body: JSON.stringify({ inputs: { x: [5], iterations: 50_000_000 } }) }).catch(() => undefined);
      let worker = 0;
      await waitFor(async () => {
        const busy = ((await (await fetch(`${e.management}/models/slow`)).json()) as { workers: { status: string; pid: number }[] }[])[0]!.workers.find((w) => w.status === 'BUSY');
        worker = busy?.pid ?? 0;
        return worker > 0;
      }, 10_000, 'the request to run');
      const exited = new Promise<number | null>((r) => e.child.once('exit', (code) => r(code)));
      const t0 = Date.now();
      e.child.kill('SIGTERM');
      if (second) e.child.kill('SIGINT');
      const code = await exited;
      const seconds = (Date.now() - t0) / 1000;
      expect(seconds, `second signal ${second}`).toBeLessThan(second ? 1.5 : 1 + 2 + 1.5);
      if (second) expect(code).toBe(130);
      // The worker is inside a call that would run for minutes: it must not outlive the server.
      await waitFor(() => Promise.resolve(!alive(worker)), 3_000, `worker ${worker} to be gone`);
      await pending;
      await e.stop();
    }
  }, 60_000);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
