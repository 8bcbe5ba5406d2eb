// Jobs belong to the API key that submitted them: every job route answers another key's job as
// if it did not exist (404, never 403: ids are not confirmed), the list shows only the asker's
// jobs (and a key scoped to models only those models'), Idempotency-Keys are per key. Then the
// property, fuzzed: whatever three keys submit and read, no read returns another key's job,
// output or event.
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, startEasel, waitFor, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const KEYS = { alice: 'alice-key-0123456789', bob: 'bob-key-0123456789', carol: 'carol-key-0123456789' } as const;
type Who = keyof typeof KEYS;
const WHO = Object.keys(KEYS) as Who[];

interface JobView {
  id: string;
  model: string;
  status: string;
}

let easel: EaselProcess;

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-owners-'));
  const sha = (k: string): string => createHash('sha256').update(k).digest('hex');
  const file = path.join(dir, 'keys.yaml');
  // carol may use add-one only.
  writeFileSync(file, `keys:\n  - {name: alice, sha256: ${sha(KEYS.alice)}}\n  - {name: bob, sha256: ${sha(KEYS.bob)}}\n  - {name: carol, sha256: ${sha(KEYS.carol)}, models: [add-one]}\n`);
  easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one,slow', '--api-keys-file', file]);
  await waitModelLive(easel, 'add-one');
  await waitModelLive(easel, 'slow');
}, 60_000);
afterAll(() => easel?.stop());

const as = (who: Who, init: RequestInit = {}): RequestInit => ({ ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${KEYS[who]}` } });

async function submit(who: Who, model = 'add-one', idempotencyKey?: string, data = [1, 2]): Promise<Response> {
  const input = model === 'slow' ? { inputs: { x: data.slice(0, 1), iterations: 10 } } : { data };
  return fetch(`${easel.inference}/v1/jobs`, as(who, { method: 'POST', headers: { 'content-type': 'application/json', ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) }, body: JSON.stringify({ model, input }) }));
}

async function finished(who: Who, id: string): Promise<JobView> {
  let job: JobView | undefined;
  await waitFor(async () => ['succeeded', 'failed', 'cancelled'].includes((job = (await (await fetch(`${easel.inference}/v1/jobs/${id}`, as(who))).json()) as JobView).status), 20_000, `job ${id}`);
  return job!;
}

/** A WebSocket's first message (or its close code when it sends none). */
function firstMessage(who: Who, id: string): Promise<{ data?: Record<string, unknown>; closed?: number }> {
  const ws = new WebSocket(`${easel.inference.replace('http', 'ws')}/ws/jobs/${id}`, { headers: { authorization: `Bearer ${KEYS[who]}` } });
  return new Promise((resolve, reject) => {
    ws.once('message', (m) => {
      resolve({ data: JSON.parse(String(m)) as Record<string, unknown> });
      ws.close();
    });
    ws.once('close', (code) => resolve({ closed: code }));
    ws.once('error', reject);
  });
}

describe('jobs belong to the key that submitted them', () => {
  it("answers another key's job 404 on every route, as an id never issued", async () => {
    const res = await submit('alice');
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobView;
    await finished('alice', id);
    expect((await fetch(`${easel.inference}/v1/jobs/${id}/outputs/0`, as('alice'))).status).toBe(200);

    const never = '00000000-0000-4000-8000-000000000000';
    for (const [method, route] of [['GET', `/v1/jobs/${id}`], ['GET', `/v1/jobs/${id}/outputs/0`], ['GET', `/v1/jobs/${id}/events`], ['DELETE', `/v1/jobs/${id}`]] as const) {
      const other = await fetch(`${easel.inference}${route}`, as('bob', { method, headers: { 'last-event-id': '0' } }));
      const unknown = await fetch(`${easel.inference}${route.replace(id, never)}`, as('bob', { method }));
      expect(other.status, `${method} ${route}`).toBe(404);
      const body = (await other.json()) as { code: string; message: string };
      expect(body.code).toBe('EASEL_JOB_NOT_FOUND');
      expect(body.message.replace(id, never)).toBe(((await unknown.json()) as { message: string }).message);
    }
    // Nor may bob use its output as an init image: refused as a job that does not exist.
    const reference = async (job: string): Promise<Response> =>
      fetch(`${easel.inference}/predictions/add-one`, as('bob', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: [1], image: { job, output: 0 } }) }));
    const [theirs, none] = await Promise.all([reference(id), reference(never)]);
    expect(theirs.status).toBe(400);
    const refused = (await theirs.json()) as { field: string; message: string };
    expect(refused.field).toBe('image');
    expect(refused.message.replace(id, never)).toBe(((await none.json()) as { message: string }).message);
    expect(await firstMessage('bob', id)).toMatchObject({ data: { event: 'error', data: { code: 'EASEL_JOB_NOT_FOUND' } } });
    expect(await firstMessage('alice', id)).toMatchObject({ data: { event: 'status' } });
    // Still alice's, untouched by bob's DELETE.
    expect(((await (await fetch(`${easel.inference}/v1/jobs/${id}`, as('alice'))).json()) as JobView).status).toBe('succeeded');
  });

  it("lists only the asker's jobs; a key scoped to models cannot ask for another model's", async () => {
    const ids = { alice: [] as string[], carol: [] as string[] };
    for (const who of ['alice', 'carol'] as const) ids[who].push(((await (await submit(who)).json()) as JobView).id);
    ids.alice.push(((await (await submit('alice', 'slow')).json()) as JobView).id);
    const list = async (who: Who, query = ''): Promise<Response> => fetch(`${easel.inference}/v1/jobs?limit=200${query}`, as(who));
    const seen = async (who: Who, query = ''): Promise<string[]> => ((await (await list(who, query)).json()) as { jobs: JobView[] }).jobs.map((j) => j.id);
    expect(await seen('carol')).toEqual(ids.carol);
    expect(await seen('alice')).toEqual(expect.arrayContaining(ids.alice));
    expect(await seen('alice')).not.toContain(ids.carol[0]);
    expect(await seen('bob')).toEqual(expect.not.arrayContaining([...ids.alice, ...ids.carol]));
    const scoped = await list('carol', '&model=slow');
    expect(scoped.status).toBe(403);
    expect(await scoped.json()).toMatchObject({ code: 'EASEL_FORBIDDEN', field: 'model' });
  });

  it('keeps Idempotency-Keys per key: the same key value is two jobs for two keys, the same job for one', async () => {
    const first = await submit('alice', 'add-one', 'order-42', [1, 2]);
    expect(first.status).toBe(202);
    const aliceJob = ((await first.json()) as JobView).id;
    const bobs = await submit('bob', 'add-one', 'order-42', [3, 4]);
    expect(bobs.status).toBe(202);
    expect(JSON.stringify(await bobs.json())).not.toContain(aliceJob);
    const again = await submit('alice', 'add-one', 'order-42', [1, 2]);
    expect(again.status).toBe(200);
    expect(((await again.json()) as JobView).id).toBe(aliceJob);
    const changed = await submit('alice', 'add-one', 'order-42', [9, 9]);
    expect(changed.status).toBe(422);
  });
});

describe('fuzz: no read by one key returns another key\'s job, output or event', () => {
  it('holds for random submissions and reads by three keys', async () => {
    const owner = new Map<string, Who>();
    const action = fc.record({
      who: fc.constantFrom(...WHO),
      kind: fc.constantFrom('submit', 'get', 'events', 'output', 'cancel', 'list', 'ws'),
      model: fc.constantFrom('add-one', 'slow'),
      target: fc.nat(),
      idempotencyKey: fc.option(fc.constantFrom('a', 'b', 'c'), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 10 }), async (actions) => {
        for (const a of actions) {
          if (a.kind === 'submit') {
            const res = await submit(a.who, a.model, a.idempotencyKey, [a.target % 7, 1]);
            if (res.status === 202) owner.set(((await res.json()) as JobView).id, a.who);
            else if (res.status === 200) expect(owner.get(((await res.json()) as JobView).id), 'a repeated key answers its own job').toBe(a.who);
            else expect([403, 422], `submit ${res.status}`).toContain(res.status);
            continue;
          }
          if (a.kind === 'list') {
            const res = await fetch(`${easel.inference}/v1/jobs?limit=200`, as(a.who));
            for (const j of ((await res.json()) as { jobs: JobView[] }).jobs) expect(owner.get(j.id) ?? a.who, `list by ${a.who}`).toBe(a.who);
            continue;
          }
          const ids = [...owner.keys()];
          if (ids.length === 0) continue;
          const id = ids[a.target % ids.length]!;
          const mine = owner.get(id) === a.who;
          if (a.kind === 'ws') {
            const first = await firstMessage(a.who, id);
            if (mine) expect(first.data?.event, `ws by ${a.who} of its own job`).toBe('status');
            else expect(first.data, `ws by ${a.who} of another's job`).toMatchObject({ event: 'error', data: { code: 'EASEL_JOB_NOT_FOUND' } });
            continue;
          }
          const route = { get: `/v1/jobs/${id}`, events: `/v1/jobs/${id}/events`, output: `/v1/jobs/${id}/outputs/0`, cancel: `/v1/jobs/${id}` }[a.kind];
          const res = await fetch(`${easel.inference}${route}`, as(a.who, { method: a.kind === 'cancel' ? 'DELETE' : 'GET', headers: { 'last-event-id': '0' } }));
          const text = await res.text();
          if (!mine) {
            expect(res.status, `${a.kind} by ${a.who} of another's job: ${text}`).toBe(404);
            expect(text).toContain('EASEL_JOB_NOT_FOUND');
          } else if (a.kind === 'get' || a.kind === 'events') {
            expect(res.status, `${a.kind} by ${a.who} of its own job`).toBe(200);
            expect(text).toContain(id);
          }
        }
      }),
      { numRuns: 12 },
    );
  }, 120_000);
});
