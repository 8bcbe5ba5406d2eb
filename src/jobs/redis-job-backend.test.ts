// The Redis backend against a real redis-server on an ephemeral port: the contract suite,
// and a job taken over by another node when the node that claimed it stops renewing its lock.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startRedis, type RedisProcess } from '../../test/helpers/redis-server.js';
import { describeJobBackend } from './job-backend.contract.js';
import { RedisJobBackend } from './redis-job-backend.js';
import { eventStatus } from './work-event.js';

const TTL_MS = 60_000;
let redis: RedisProcess;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis?.stop());

// Each test gets its own key prefix: no state shared between tests.
describeJobBackend('distributed (Redis + BullMQ)', async () => new RedisJobBackend({ url: redis.url, prefix: `test-${randomUUID()}`, jobTtlMs: TTL_MS }), TTL_MS);

describe('RedisJobBackend across nodes', () => {
  it("keeps each model's outstanding work (queued or running) as a Redis list that KEDA's redis scaler can read (LLEN)", async () => {
    const prefix = `test-${randomUUID()}`;
    const backend = new RedisJobBackend({ url: redis.url, prefix, jobTtlMs: TTL_MS });
    const client = new Redis(redis.url);
    try {
      const jobs = [];
      for (let i = 0; i < 3; i += 1) jobs.push((await backend.submit({ model: 'sd', input: {} })).job);
      expect(await client.llen(`${prefix}:depth:sd`)).toBe(3);
      // Claimed: running, still outstanding; cancelled while queued: gone.
      const running = (await backend.claim(['sd']))!;
      await backend.cancel(jobs[2]!.id);
      expect(await client.llen(`${prefix}:depth:sd`)).toBe(2);
      expect(await backend.queuedCount('sd')).toBe(1);
      // Handed back and claimed again: counted once.
      await backend.release(running.id);
      await backend.claim(['sd']);
      expect(await client.llen(`${prefix}:depth:sd`)).toBe(2);
      await backend.complete(running.id, []);
      expect(await client.llen(`${prefix}:depth:sd`)).toBe(1);
    } finally {
      client.disconnect();
      await backend.close();
    }
  });

  it('another node takes over a job whose node died, within the lock time', async () => {
    const prefix = `test-${randomUUID()}`;
    const a = new RedisJobBackend({ url: redis.url, prefix, jobTtlMs: TTL_MS, lockMs: 1000, stalledCheckMs: 300 });
    const b = new RedisJobBackend({ url: redis.url, prefix, jobTtlMs: TTL_MS, lockMs: 1000, stalledCheckMs: 300 });
    try {
      const { job } = await a.submit({ model: 'm', input: { n: 1 } });
      expect((await a.claim(['m']))?.id).toBe(job.id);
      // Node a dies: its lock is no longer renewed.
      await a.close();
      expect(await b.claim(['m'])).toBeUndefined();
      // Once its lock lapses, another node takes the job over (how soon is the benchmark's business).
      const taken = await vi.waitFor(async () => {
        const j = await b.claim(['m']);
        if (!j) throw new Error('not yet claimable');
        return j;
      }, { timeout: 10_000, interval: 100 });
      expect(taken.id).toBe(job.id);
      expect(taken.attempts).toBe(2);
      await b.complete(job.id, []);
      expect((await b.get(job.id))?.status).toBe('succeeded');
    } finally {
      await b.close();
    }
  });

  it('carries progress and cancel requests from one node to another', async () => {
    const prefix = `test-${randomUUID()}`;
    const api = new RedisJobBackend({ url: redis.url, prefix, jobTtlMs: TTL_MS });
    const worker = new RedisJobBackend({ url: redis.url, prefix, jobTtlMs: TTL_MS });
    try {
      const { job } = await api.submit({ model: 'm', input: {} });
      const seen: string[] = [];
      api.subscribe(job.id, (e) => seen.push(eventStatus(e) ?? e.type));
      const cancels: string[] = [];
      worker.onCancelRequested((id) => cancels.push(id));
      await worker.claim(['m']);
      await worker.progress(job.id, { step: 1, total: 2 });
      await api.cancel(job.id);
      await vi.waitFor(() => {
        expect(cancels).toHaveLength(1);
        expect(seen.filter((x) => x !== 'queued')).toHaveLength(2);
      });
      expect(seen.filter((x) => x !== 'queued')).toEqual(['running', 'progress']);
      expect(cancels).toEqual([job.id]);
      expect(await api.queuedCount('m')).toBe(0);
    } finally {
      await api.close();
      await worker.close();
    }
  });

  it('keeps one truth when nodes race: a late report from a node that lost its job never rewrites the finished record', async () => {
    const prefix = `test-${randomUUID()}`;
    const a = new RedisJobBackend({ url: redis.url, prefix, jobTtlMs: TTL_MS });
    const b = new RedisJobBackend({ url: redis.url, prefix, jobTtlMs: TTL_MS });
    const client = new Redis(redis.url);
    try {
      const { job } = await a.submit({ model: 'sd', input: {} });
      await a.claim(['sd']);
      // Node a reports progress while node b (which took the job over) finishes it: they interleave.
      await Promise.all([
        ...Array.from({ length: 20 }, (_, i) => a.progress(job.id, { step: i + 1, total: 21 })),
        b.complete(job.id, [{ key: 'k', contentType: 'image/png', bytes: 1 }]),
      ]);
      await a.progress(job.id, { step: 21, total: 21 });
      const done = await b.get(job.id);
      expect(done?.status).toBe('succeeded');
      expect(done?.outputs).toHaveLength(1);
      // The indexes agree with the record: nothing queued, the depth list (KEDA) empty.
      expect(await client.llen(`${prefix}:depth:sd`)).toBe(0);
      expect(await client.zcard(`${prefix}:queued:sd`)).toBe(0);
      // The event stream ends with the final status: a resuming client sees nothing after it.
      const last = await client.xrevrange(`${prefix}:events:${job.id}`, '+', '-', 'COUNT', 1);
      expect(JSON.parse(last[0]![1][1]!)).toMatchObject({ type: 'status', data: { status: 'succeeded' } });
    } finally {
      client.disconnect();
      await a.close();
      await b.close();
    }
  });
});

describe('RedisJobBackend claims by pool policy', () => {
  it('passes over a class the pool does not take yet, takes it once it has waited, and never takes a class it refuses', async () => {
    const backend = new RedisJobBackend({ url: redis.url, prefix: `test-${randomUUID()}`, jobTtlMs: TTL_MS });
    try {
      const high = (await backend.submit({ model: 'sd', input: {}, priority: 10 })).job;
      const normal = (await backend.submit({ model: 'sd', input: {} })).job;
      const low = (await backend.submit({ model: 'sd', input: {}, priority: -5 })).job;
      // Spot-like: normal at once, high after 300 ms, never low.
      const spot = { takes: (cls: string, waitedMs: number) => cls === 'normal' || (cls === 'high' && waitedMs >= 300) };
      expect((await backend.claim(['sd'], spot))?.id).toBe(normal.id);
      expect(await backend.claim(['sd'], spot)).toBeUndefined();
      await new Promise((resolve) => setTimeout(resolve, 350));
      expect((await backend.claim(['sd'], spot))?.id).toBe(high.id);
      expect(await backend.claim(['sd'], spot)).toBeUndefined();
      // A pool without rules takes what is left.
      expect((await backend.claim(['sd']))?.id).toBe(low.id);
    } finally {
      await backend.close();
    }
  });
});
