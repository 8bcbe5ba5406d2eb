// API keys, rate limits and CORS on the inference API, in-process through inject(): who gets
// in, who is refused (401, 403, 429 in Easel's error shape) and what stays open.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { inProcessServers, type InProcess } from '../../test/helpers/in-process-servers.js';
import { ApiKeys } from './api-keys.js';

const dir = mkdtempSync(path.join(tmpdir(), 'easel-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keysFile(keys: Record<string, unknown>[]): string {
  const file = path.join(dir, `keys-${keys.length}-${Math.random()}.yaml`);
  writeFileSync(file, JSON.stringify({ keys }));
  return file;
}
const sha = (key: string): string => createHash('sha256').update(key).digest('hex');

/** The servers a test built, closed after it. */
let app: InProcess | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

describe('API keys', () => {
  it('is off without keys: the inference API is open', async () => {
    expect(ApiKeys.load(undefined, undefined)).toBeNull();
    expect(ApiKeys.load(undefined, ' ')).toBeNull();
  });

  it('answers 401 without a key or with a wrong one, lets a valid key in, and keeps health and the page open', async () => {
    const keys = ApiKeys.load(keysFile([{ name: 'alice', sha256: sha('alice-secret') }]), 'bob=bob-secret')!;
    app = await inProcessServers({ apiKeys: keys });
    const get = (url: string, headers: Record<string, string> = {}) => app!.servers.inference.inject({ method: 'GET', url, headers });
    const none = await get('/v1/jobs');
    expect(none.statusCode).toBe(401);
    expect(none.json()).toEqual({ code: 'EASEL_UNAUTHORIZED', message: expect.stringContaining('requires an API key') });
    expect((await get('/v1/jobs', { authorization: 'Bearer nope' })).json()).toMatchObject({ code: 'EASEL_UNAUTHORIZED', message: 'the API key is not valid' });
    // OpenAI's routes answer in OpenAI's error shape, with the same code.
    expect((await get('/v1/models')).json()).toMatchObject({ error: { code: 'EASEL_UNAUTHORIZED' } });
    expect((await get('/v1/jobs', { authorization: 'Bearer alice-secret' })).statusCode).toBe(200);
    expect((await get('/v1/models', { authorization: 'Bearer alice-secret' })).statusCode).toBe(200);
    expect((await get('/v1/models', { 'x-api-key': 'bob-secret' })).statusCode).toBe(200);
    for (const open of ['/ping', '/openapi.json']) expect((await get(open)).statusCode, open).toBe(200);
    // A refused request is refused before its body is read: nothing is queued.
    const post = await app.servers.inference.inject({ method: 'POST', url: '/v1/jobs', payload: { model: 'm', input: {} } });
    expect(post.statusCode).toBe(401);
    expect((await app.queue.list({ limit: 10 })).jobs).toEqual([]);
  });

  it('holds a scoped key to its models: 403 naming the model and the ones it may use', async () => {
    app = await inProcessServers({ apiKeys: ApiKeys.load(keysFile([{ name: 'sd-only', sha256: sha('k'), models: ['tiny-sd'] }]), undefined)! });
    const auth = { authorization: 'Bearer k' };
    const other = await app.servers.inference.inject({ method: 'POST', url: '/predictions/tiny-lm', headers: auth, payload: { data: 'x' } });
    expect(other.statusCode).toBe(403);
    expect(other.json()).toEqual({ code: 'EASEL_FORBIDDEN', message: 'the API key "sd-only" may not use model tiny-lm; it may use tiny-sd', field: 'model' });
    const job = await app.servers.inference.inject({ method: 'POST', url: '/v1/jobs', headers: auth, payload: { model: 'tiny-lm', input: {} } });
    expect(job.statusCode).toBe(403);
    // In scope: past the key (this node has no such model: 404).
    expect((await app.servers.inference.inject({ method: 'POST', url: '/predictions/tiny-sd', headers: auth, payload: { data: 'x' } })).statusCode).toBe(404);
  });

  it('refuses a keys file that is not hashes, naming what is wrong', () => {
    expect(() => ApiKeys.load(keysFile([{ name: 'x', sha256: 'plaintext' }]), undefined)).toThrow(/keys\.0\.sha256: sha256 must be the key's SHA-256/);
    expect(() => ApiKeys.load(undefined, 'no-equals-sign')).toThrow(/name=key pairs/);
  });
});

describe('rate limits', () => {
  it("answers 429 in Easel's error shape with Retry-After past a key's requests per minute; other keys go on", async () => {
    const keys = ApiKeys.load(keysFile([{ name: 'slow', sha256: sha('slow'), rateLimitPerMinute: 2 }, { name: 'fast', sha256: sha('fast') }]), undefined)!;
    app = await inProcessServers({ apiKeys: keys, rateLimit: { perMinute: 100 } });
    const as = (key: string) => app!.servers.inference.inject({ method: 'GET', url: '/v1/jobs', headers: { authorization: `Bearer ${key}` } });
    expect((await as('slow')).statusCode).toBe(200);
    expect((await as('slow')).statusCode).toBe(200);
    const limited = await as('slow');
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.json()).toEqual({ code: 'EASEL_RATE_LIMITED', message: expect.stringMatching(/^the API key "slow" may send 2 requests per minute; retry after \d+ s$/) });
    expect((await as('fast')).statusCode).toBe(200);
    // Health stays out of the count.
    for (let i = 0; i < 3; i++) expect((await app.servers.inference.inject({ method: 'GET', url: '/ping' })).statusCode).toBe(200);
  });
});

describe('CORS', () => {
  it('answers a preflight from an allowed origin without a key, and not from others', async () => {
    app = await inProcessServers({ corsOrigins: ['https://studio.example'], apiKeys: ApiKeys.load(undefined, 'a=b')! });
    const preflight = (origin: string) => app!.servers.inference.inject({ method: 'OPTIONS', url: '/v1/jobs', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    const ok = await preflight('https://studio.example');
    expect(ok.statusCode).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe('https://studio.example');
    expect((await preflight('https://evil.example')).headers['access-control-allow-origin']).toBeUndefined();
  });
});
