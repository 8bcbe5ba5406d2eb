// The contract suite every job backend passes (embedded SQLite now; Redis runs the same).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { JobBackend, JobEvent } from './job.js';

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
      const events: JobEvent[] = [];
      const off = backend.subscribe(job.id, (e) => events.push(e));
      const finished: string[] = [];
      const offFinished = backend.onFinished((j) => finished.push(`${j.id}:${j.status}`));
      await backend.claim(['m']);
      await backend.progress(job.id, { step: 1, total: 4 }, { contentType: 'image/jpeg', data: new Uint8Array([9]) });
      await backend.complete(job.id, [{ key: `${job.id}/0.png`, contentType: 'image/png', bytes: 10 }]);
      await vi.waitFor(() => expect(finished).toHaveLength(1));
      off();
      offFinished();
      expect(events.map((e) => (e.type === 'status' ? e.job.status : e.type))).toEqual(['running', 'progress', 'preview', 'succeeded']);
      expect(finished).toEqual([`${job.id}:succeeded`]);
      const done = await backend.get(job.id);
      expect(done?.outputs).toEqual([{ key: `${job.id}/0.png`, contentType: 'image/png', bytes: 10 }]);
      expect(done?.expiresAt).toBe((done?.completedAt ?? 0) + ttlMs);
      // Finished jobs stay finished.
      await backend.fail(job.id, { code: 'EASEL_HANDLER_FAILED', message: 'late' });
      expect((await backend.get(job.id))?.status).toBe('succeeded');
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

    it('expires finished jobs after the TTL', async () => {
      const { job } = await backend.submit({ model: 'm', input: {} });
      await backend.cancel(job.id);
      const finished = await backend.get(job.id);
      expect(await backend.expire(Date.now())).toEqual([]);
      const expired = await backend.expire((finished?.completedAt ?? 0) + ttlMs + 1);
      expect(expired.map((j) => j.id)).toEqual([job.id]);
      expect(await backend.get(job.id)).toBeUndefined();
    });
  });
}
