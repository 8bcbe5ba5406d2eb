// Smaller doors: wrong keys and management tokens are throttled per address (and counted), the
// bearer scheme is case-insensitive on every API, a path that climbs out of /ui/ is an unknown
// route, a model version that is not there is a 404 on KServe's routes, a cursor that is not ours
// is a 400.
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, startEasel, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const KEY = 'doors-key-0123456789';
const TOKEN = 'management-token-0123456789';
let easel: EaselProcess;

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-keys-'));
  writeFileSync(path.join(dir, 'keys.yaml'), `keys:\n  - {name: a, sha256: ${createHash('sha256').update(KEY).digest('hex')}}\n`);
  easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one', '--api-keys-file', path.join(dir, 'keys.yaml'), '--max-auth-failures-per-minute', '5'], { EASEL_MANAGEMENT_TOKEN: TOKEN });
  await waitModelLive(easel, 'add-one');
}, 60_000);
afterAll(() => easel?.stop());

/** A GET with the path exactly as written (fetch would resolve `..`). */
function rawGet(url: string, pathAsIs: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path: pathAsIs, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += String(c)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('authentication and routes', () => {
  it('takes the bearer scheme in any case, and answers the router and KServe truthfully', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) expect((await fetch(`${easel.inference}/v1/models`, { headers: { authorization: `${scheme} ${KEY}` } })).status, scheme).toBe(200);
    const auth = { authorization: `Bearer ${KEY}` };
    const climbed = await rawGet(easel.inference, '/ui/../v1/models', auth);
    expect(climbed.status).toBe(404);
    expect(JSON.parse(climbed.body)).toMatchObject({ code: 'EASEL_NOT_FOUND' });
    expect((await fetch(`${easel.inference}/v2/models/add-one/versions/1.0`, { headers: auth })).status).toBe(200);
    const missing = await fetch(`${easel.inference}/v2/models/add-one/versions/9.9`, { headers: auth });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'EASEL_MODEL_NOT_FOUND' });
    const cursor = await fetch(`${easel.inference}/v1/jobs?cursor=99999999999999999999`, { headers: auth });
    expect(cursor.status).toBe(400);
    expect(await cursor.json()).toMatchObject({ field: 'cursor' });
  });

  it('throttles wrong keys and tokens per address: 429 once past the limit, even for the right key, and counts them', async () => {
    for (let i = 0; i < 5; i++) expect((await fetch(`${easel.inference}/v1/jobs`, { headers: { authorization: `Bearer wrong-${i}` } })).status).toBe(401);
    const throttled = await fetch(`${easel.inference}/v1/jobs`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(throttled.status).toBe(429);
    expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await throttled.json()).toMatchObject({ code: 'EASEL_RATE_LIMITED' });
    for (let i = 0; i < 5; i++) expect((await fetch(`${easel.management}/models`, { headers: { authorization: `Bearer wrong-${i}` } })).status).toBe(401);
    expect((await fetch(`${easel.management}/models`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(429);
    const metrics = await (await fetch(`${easel.metrics}/metrics`)).text();
    expect(metrics).toContain('easel_auth_failures_total{api="inference"} 5');
    expect(metrics).toContain('easel_auth_failures_total{api="management"} 5');
  });
});
