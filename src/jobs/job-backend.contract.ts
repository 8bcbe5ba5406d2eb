// The contract suite every job backend passes (embedded SQLite now; Redis runs the same).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { JobBackend } from './job.js';
import { compareEventIds, eventStatus, type WorkEvent } from './work-event.js';

export function describeJobBackend(name: string, open: () => Promise<JobBackend>, ttlMs: number): void {
  describe(`job backend contract: ${name}`, () => {
    let backend: JobBackend;
    beforeEach(async () => {
      backend = await open();
    });
    afterEach(() => backend.close());

    it('stores a submitted job as queued and returns it by id, input bytes included', async () => {
      const bytes = new Uint8Array([1, 2, 255]);
      const { job, created } = await backend.submit({ model: 'm', input: { prompt: 'x', file: bytes }, priority: 2 });
      expect(created).toBe(true);
      expect(job).toMatchObject({ model: 'm', version: null, status: 'queued', priority: 2, attempts: 0, progress: null, error: null, outputs: [] });
      const again = await backend.get(job.id);
      expect(again?.input.prompt).toBe('x');
      expect(again?.input.file).toEqual(bytes);
      expect(await backend.get('no-such-job')).toBeUndefined();
    });

    it('returns the same job for a repeated idempotency key', async () => {
      const first = await backend.submit({ model: 'm', input: {}, idempotencyKey: 'k-1' });
      const second = await backend.submit({ model: 'm', input: { other: true }, idempotencyKey: 'k-1' });
      expect(second.created).toBe(false);
      expect(second.job.id).toBe(first.job.id);
      expect((await backend.byIdempotencyKey('k-1'))?.id).toBe(first.job.id);
      expect(await backend.byIdempotencyKey('k-2')).toBeUndefined();
      expect(await backend.queuedCount('m')).toBe(1);
    });

    it('hands out jobs by priority, then in order, only for the asked models, with queue positions', async () => {
      const low1 = (await backend.submit({ model: 'm', input: { n: 1 } })).job;
      const low2 = (await backend.submit({ model: 'm', input: { n: 2 } })).job;
      const high = (await backend.submit({ model: 'm', input: { n: 3 }, priority: 5 })).job;
      const other = (await backend.submit({ model: 'other', input: {} })).job;
      expect(await backend.position(high.id)).toBe(0);
      expect(await backend.position(low1.id)).toBe(1);
      expect(await backend.position(low2.id)).toBe(2);
      expect(await backend.position(other.id)).toBe(0);
      const order = [];
      for (let i = 0; i < 3; i += 1) order.push((await backend.claim(['m']))?.id);
      expect(order).toEqual([high.id, low1.id, low2.id]);
      expect(await backend.claim(['m'])).toBeUndefined();
      const running = await backend.get(high.id);
      expect(running).toMatchObject({ status: 'running', attempts: 1 });
      expect(running?.startedAt).not.toBeNull();
      expect(await backend.position(high.id)).toBeNull();
    });

    it('reports status changes and progress to subscribers, and completes with outputs and an expiry', async () => {
      const { job } = await backend.submit({ model: 'm', input: {} });
      const events: WorkEvent[] = [];
      const off = backend.subscribe(job.id, (e) => events.push(e));
      const finished: string[] = [];
      const offFinished = backend.onFinished((j) => finished.push(`${j.id}:${j.status}`));
      await backend.claim(['m']);
      await backend.progress(job.id, { step: 1, total: 4 }, { contentType: 'image/jpeg', data: new Uint8Array([9]) });
      await backend.complete(job.id, [{ key: `${job.id}/0.png`, contentType: 'image/png', bytes: 10 }]);
      await vi.waitFor(() => expect(finished).toHaveLength(1));
      off();
      offFinished();
      // Over Redis pub/sub the submission's own event may still be on its way: it comes first if at all.
      expect(events.map((e) => eventStatus(e) ?? e.type).filter((s) => s !== 'queued')).toEqual(['running', 'progress', 'preview', 'succeeded']);
      expect(finished).toEqual([`${job.id}:succeeded`]);
      const done = await backend.get(job.id);
      expect(done?.outputs).toEqual([{ key: `${job.id}/0.png`, contentType: 'image/png', bytes: 10 }]);
      expect(done?.expiresAt).toBe((done?.completedAt ?? 0) + ttlMs);
      expect(done?.timings).toBeNull();
      // Finished jobs stay finished.
      await backend.fail(job.id, { code: 'EASEL_HANDLER_FAILED', message: 'late' });
      expect((await backend.get(job.id))?.status).toBe('succeeded');
    });

    it('keeps the timings a run finished with', async () => {
      const { job } = await backend.submit({ model: 'm', input: {} });
      await backend.claim(['m']);
      await backend.complete(job.id, [], undefined, { queue_wait: 0.25, inference: 1.5, encode_image: 0.01 });
      expect((await backend.get(job.id))?.timings).toEqual({ queue_wait: 0.25, inference: 1.5, encode_image: 0.01 });
    });

    it('cancels a queued job at once and asks a running one to stop', async () => {
      const queued = (await backend.submit({ model: 'm', input: {} })).job;
      const running = (await backend.submit({ model: 'm', input: {} })).job;
      const cancelled = await backend.cancel(queued.id);
      expect(cancelled).toMatchObject({ status: 'cancelled', error: { code: 'EASEL_CANCELLED' } });
      expect((await backend.claim(['m']))?.id).toBe(running.id);
      const asked: string[] = [];
      const off = backend.onCancelRequested((id) => asked.push(id));
      const requested = await backend.cancel(running.id);
      await vi.waitFor(() => expect(asked).toHaveLength(1));
      off();
      expect(requested).toMatchObject({ status: 'running', cancelRequested: true });
      expect(asked).toEqual([running.id]);
      await backend.fail(running.id, { code: 'EASEL_CANCELLED', message: 'cancelled at step 2' }, 'cancelled');
      expect((await backend.get(running.id))?.status).toBe('cancelled');
    });

    it('gives a released job back to the queue', async () => {
      const { job } = await backend.submit({ model: 'm', input: {} });
      await backend.claim(['m']);
      await backend.release(job.id);
      expect((await backend.get(job.id))?.status).toBe('queued');
      expect((await backend.claim(['m']))?.attempts).toBe(2);
    });

    it('lists newest first, filtered, a page at a time', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i += 1) ids.push((await backend.submit({ model: i % 2 ? 'odd' : 'even', input: { i } })).job.id);
      const first = await backend.list({ limit: 2 });
      expect(first.jobs.map((j) => j.id)).toEqual([ids[4], ids[3]]);
      const second = await backend.list({ limit: 2, cursor: first.nextCursor ?? undefined });
      expect(second.jobs.map((j) => j.id)).toEqual([ids[2], ids[1]]);
      const last = await backend.list({ limit: 2, cursor: second.nextCursor ?? undefined });
      expect(last.jobs.map((j) => j.id)).toEqual([ids[0]]);
      expect(last.nextCursor).toBeNull();
      expect((await backend.list({ limit: 10, model: 'odd' })).jobs).toHaveLength(2);
      await backend.cancel(ids[0]!);
      expect((await backend.list({ limit: 10, status: 'cancelled' })).jobs.map((j) => j.id)).toEqual([ids[0]]);
    });

    it("keeps each job's owner and lists one owner's jobs, within a key's models", async () => {
      const a = (await backend.submit({ model: 'm', input: {}, owner: 'alice' })).job;
      const b = (await backend.submit({ model: 'm', input: {}, owner: 'bob' })).job;
      const a2 = (await backend.submit({ model: 'other', input: {}, owner: 'alice' })).job;
      const open = (await backend.submit({ model: 'm', input: {} })).job;
      expect([a.owner, (await backend.get(b.id))?.owner, open.owner]).toEqual(['alice', 'bob', null]);
      expect((await backend.list({ limit: 10, owner: 'alice' })).jobs.map((j) => j.id)).toEqual([a2.id, a.id]);
      expect((await backend.list({ limit: 10, owner: 'alice', models: ['m'] })).jobs.map((j) => j.id)).toEqual([a.id]);
      expect((await backend.list({ limit: 10, owner: 'alice', models: [] })).jobs).toEqual([]);
      expect((await backend.list({ limit: 10, owner: null })).jobs.map((j) => j.id)).toEqual([open.id]);
      expect((await backend.list({ limit: 10 })).jobs).toHaveLength(4);
    });

    it("counts one owner's queued jobs, every model, until they start", async () => {
      const a = (await backend.submit({ model: 'm', input: {}, owner: 'alice' })).job;
      await backend.submit({ model: 'other', input: {}, owner: 'alice' });
      await backend.submit({ model: 'm', input: {}, owner: 'bob' });
      await backend.submit({ model: 'm', input: {} });
      expect([await backend.queuedByOwner('alice'), await backend.queuedByOwner('bob'), await backend.queuedByOwner('carol')]).toEqual([2, 1, 0]);
      await backend.cancel(a.id);
      expect(await backend.queuedByOwner('alice')).toBe(1);
      const claimed = await backend.claim(['other']);
      expect(claimed?.owner).toBe('alice');
      expect(await backend.queuedByOwner('alice')).toBe(0);
    });

    it('counts a retry on the same node as an attempt, says so in a status event, and logs text chunks by offset', async () => {
      const { job } = await backend.submit({ model: 'm', input: {} });
      await backend.claim(['m']);
      const events: WorkEvent[] = [];
      const off = backend.follow(job.id, (e) => events.push(e), '0');
      await backend.progress(job.id, { step: 1, total: 9 }, undefined, { text: 'Once', offset: 0 });
      expect(await backend.retrying(job.id)).toMatchObject({ status: 'running', attempts: 2, progress: null });
      await backend.progress(job.id, { step: 2, total: 9 }, undefined, { text: ' upon', offset: 4 });
      expect(await backend.loggedTextLength(job.id)).toBe(9);
      await vi.waitFor(() => expect(events.filter((e) => e.type !== 'status' || e.data.status === 'running')).toHaveLength(4));
      off();
      expect(events.filter((e) => e.type !== 'status' || e.data.status === 'running').map((e) => (e.type === 'token' ? [e.data.text, e.data.offset] : [eventStatus(e), e.data.attempts]))).toEqual([
        ['running', 1], ['Once', 0], ['running', 2], [' upon', 4],
      ]);
      await backend.complete(job.id, []);
      // A finished job is not run again.
      expect(await backend.retrying(job.id)).toBeUndefined();
      expect((await backend.get(job.id))?.attempts).toBe(2);
    });

    it('expires finished jobs after the TTL', async () => {
      const { job } = await backend.submit({ model: 'm', input: {} });
      await backend.cancel(job.id);
      const finished = await backend.get(job.id);
      expect(await backend.expire(Date.now())).toEqual([]);
      const expired = await backend.expire((finished?.completedAt ?? 0) + ttlMs + 1);
      expect(expired.map((j) => j.id)).toEqual([job.id]);
      expect(await backend.get(job.id)).toBeUndefined();
    });

    it('replays the events after a given id, then goes on live, each once and in order (SSE resume)', async () => {
      const { job } = await backend.submit({ model: 'm', input: {} });
      await backend.claim(['m']);
      const seen: WorkEvent[] = [];
      const offAll = backend.follow(job.id, (e) => seen.push(e));
      await vi.waitFor(() => expect(seen).toHaveLength(1));
      expect(eventStatus(seen[0]!)).toBe('running');
      for (let step = 1; step <= 3; step += 1) await backend.progress(job.id, { step, total: 6 });
      await vi.waitFor(() => expect(seen).toHaveLength(4));
      offAll();
      // A client that saw up to step 1 disconnects; steps 4 and 5 happen while it is away.
      const lastSeen = seen[1]!.id;
      for (let step = 4; step <= 5; step += 1) await backend.progress(job.id, { step, total: 6 });
      const resumed: WorkEvent[] = [];
      const off = backend.follow(job.id, (e) => resumed.push(e), lastSeen);
      await vi.waitFor(() => expect(resumed).toHaveLength(4));
      await backend.progress(job.id, { step: 6, total: 6 });
      await backend.complete(job.id, []);
      await vi.waitFor(() => expect(resumed).toHaveLength(6));
      off();
      expect(resumed.map((e) => (e.type === 'progress' ? e.data.step : eventStatus(e)))).toEqual([2, 3, 4, 5, 6, 'succeeded']);
      const ids = resumed.map((e) => e.id);
      expect([...ids].sort(compareEventIds)).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
      // Resuming after the final event: nothing missed, the stream is told the job has ended.
      const late: WorkEvent[] = [];
      const offLate = backend.follow(job.id, (e) => late.push(e), ids[ids.length - 1]);
      await vi.waitFor(() => expect(late).toHaveLength(1));
      offLate();
      expect(eventStatus(late[0]!)).toBe('succeeded');
    });

    it('runs synchronous predictions in the non-durable lane: ordered with jobs, result handed over once, not listed', async () => {
      const job = (await backend.submit({ model: 'm', input: { n: 1 } })).job;
      const prediction = (await backend.submit({ durable: false, model: 'm', input: { n: 2 }, accept: 'image/png', priority: 1 })).job;
      expect(prediction).toMatchObject({ durable: false, status: 'queued', accept: 'image/png' });
      expect(await backend.queuedCount('m', false)).toBe(1);
      expect(await backend.queuedCount('m')).toBe(1);
      // Higher priority first, whichever lane it is in.
      expect((await backend.claim(['m']))?.id).toBe(prediction.id);
      expect(await backend.queuedCount('m', false)).toBe(0);
      const ended: string[] = [];
      const off = backend.subscribe(prediction.id, (e) => ended.push(eventStatus(e) ?? e.type));
      const data = new Uint8Array([137, 80, 78, 71]);
      await backend.complete(prediction.id, [], { contentType: 'image/png', data });
      await vi.waitFor(() => expect(ended).toContain('succeeded'));
      off();
      expect(await backend.result(prediction.id)).toEqual({ contentType: 'image/png', data });
      expect(await backend.result(prediction.id)).toBeUndefined();
      expect((await backend.list({ limit: 10 })).jobs.map((j) => j.id)).toEqual([job.id]);
    });

    it("hands a prediction's result over with its parts, each as the bytes it was given", async () => {
      const prediction = (await backend.submit({ durable: false, model: 'm', input: {} })).job;
      await backend.claim(['m']);
      const parts = [new Uint8Array([137, 80, 78, 71, 1]), new Uint8Array([137, 80, 78, 71, 2, 2])].map((data) => ({ contentType: 'image/png', data }));
      const result = { contentType: 'application/json', data: new TextEncoder().encode('{"seed":1}'), parts };
      await backend.complete(prediction.id, [], result);
      expect(await backend.result(prediction.id)).toEqual(result);
      expect(await backend.result(prediction.id)).toBeUndefined();
    });

    it('withdraws only what no worker has claimed, and skips a prediction past its deadline', async () => {
      const a = (await backend.submit({ durable: false, model: 'm', input: {} })).job;
      const b = (await backend.submit({ durable: false, model: 'm', input: {} })).job;
      expect((await backend.claim(['m']))?.id).toBe(a.id);
      expect(await backend.withdraw(a.id, { code: 'EASEL_QUEUE_TIMEOUT', message: 'late' })).toBe(false);
      expect((await backend.get(a.id))?.status).toBe('running');
      expect(await backend.withdraw(b.id, { code: 'EASEL_QUEUE_TIMEOUT', message: 'late' })).toBe(true);
      expect(await backend.get(b.id)).toMatchObject({ status: 'cancelled', error: { code: 'EASEL_QUEUE_TIMEOUT' } });
      const stale = (await backend.submit({ durable: false, model: 'm', input: {}, deadline: Date.now() - 1 })).job;
      expect(await backend.claim(['m'])).toBeUndefined();
      await vi.waitFor(async () => expect((await backend.get(stale.id))?.error?.code).toBe('EASEL_TIMEOUT'));
    });
  });
}
