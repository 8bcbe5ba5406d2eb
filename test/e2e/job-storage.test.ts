// Storage is bounded by bytes, not only counts: a job's input has a size limit, an API key a
// bound on its queued jobs, and the job list carries no inputs (GET /v1/jobs/{id} does) in pages
// of at most 200.
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, startEasel, type EaselProcess } from '../helpers/easel-process.js';

const KEY = 'storage-key-0123456789';
let easel: EaselProcess;

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-keys-'));
  writeFileSync(path.join(dir, 'keys.yaml'), `keys:\n  - {name: k, sha256: ${createHash('sha256').update(KEY).digest('hex')}}\n`);
  easel = await startEasel(['--model-store', FIXTURES, '--models', '', '--api-keys-file', path.join(dir, 'keys.yaml'), '--max-job-input-bytes', '4096', '--max-queued-jobs-per-key', '3']);
  // A model with no worker: its jobs stay queued.
  const reg = await fetch(`${easel.management}/models?url=add-one&model_name=idle&initial_workers=0&synchronous=true`, { method: 'POST' });
  expect(reg.status, await reg.text()).toBe(200);
}, 60_000);
afterAll(() => easel?.stop());

const submit = (data: number[]): Promise<Response> =>
  fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: 'idle', input: { data } }) });

describe('job storage is bounded by bytes', () => {
  it("refuses a job whose input passes --max-job-input-bytes (413, field input), and bounds a key's queued jobs (429)", async () => {
    const big = await submit(Array.from({ length: 2000 }, (_, i) => i + 0.5));
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ code: 'EASEL_INPUT_TOO_LARGE', field: 'input' });
    for (let i = 0; i < 3; i++) expect((await submit([i, 1, 2, 3])).status).toBe(202);
    const fourth = await submit([9, 9, 9, 9]);
    expect(fourth.status).toBe(429);
    expect(fourth.headers.get('retry-after')).toBe('5');
    expect(await fourth.json()).toMatchObject({ code: 'EASEL_TOO_MANY_JOBS' });
  });

  it('lists jobs without their inputs, 200 at most a page; the job itself has its input', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    const page = (await (await fetch(`${easel.inference}/v1/jobs?limit=200`, { headers: auth })).json()) as { jobs: Record<string, unknown>[] };
    expect(page.jobs.length).toBeGreaterThanOrEqual(3);
    for (const j of page.jobs) expect(j).not.toHaveProperty('input');
    const one = (await (await fetch(`${easel.inference}/v1/jobs/${page.jobs[0]!.id as string}`, { headers: auth })).json()) as { input: { data: number[] } };
    expect(one.input.data).toHaveLength(4);
    const tooMany = await fetch(`${easel.inference}/v1/jobs?limit=1000`, { headers: auth });
    expect(tooMany.status).toBe(400);
    expect(await tooMany.json()).toMatchObject({ field: 'limit' });
  });
});
