import { describe, expect, it } from 'vitest';
import { EaselError } from '../errors/easel-error.js';
import { RequestBatcher } from './request-batcher.js';

const payload = { contentType: 'text/plain', data: new Uint8Array([1]) };

describe('RequestBatcher', () => {
  it('batches up to max within the delay, in arrival order', async () => {
    const q = new RequestBatcher();
    const results = [1, 2, 3].map((n) => q.submit('m', { n }, { timeoutMs: 5000 }));
    const batch = await q.take('m', 2, 10, new AbortController().signal);
    expect(batch.map((b) => b.input.n)).toEqual([1, 2]);
    for (const b of batch) q.complete(b, payload, {});
    const rest = await q.take('m', 2, 0, new AbortController().signal);
    expect(rest.map((b) => b.input.n)).toEqual([3]);
    q.complete(rest[0]!, payload, {});
    await expect(Promise.all(results)).resolves.toHaveLength(3);
  });

  it('retries once at the head of the lane, then gives up', async () => {
    const q = new RequestBatcher();
    const p = q.submit('m', { n: 1 }, { timeoutMs: 5000 });
    const signal = new AbortController().signal;
    const [a] = await q.take('m', 1, 0, signal);
    expect(q.retry(a!, 2)).toBe(true);
    const [b] = await q.take('m', 1, 0, signal);
    expect(b!.attempts).toBe(2);
    expect(q.retry(b!, 2)).toBe(false);
    q.fail(b!, new EaselError('EASEL_WORKER_DIED', 'died'));
    await expect(p).rejects.toMatchObject({ code: 'EASEL_WORKER_DIED' });
  });

  it('counts the runs it had elsewhere against the retries, and tells its submitter of each retry', async () => {
    const q = new RequestBatcher();
    let retries = 0;
    const p = q.submit('m', { n: 1 }, { timeoutMs: 5000, attempts: 1, onRetry: () => (retries += 1) });
    const signal = new AbortController().signal;
    const [a] = await q.take('m', 1, 0, signal);
    expect(a!.attempts).toBe(2);
    expect(q.retry(a!, 3)).toBe(true);
    expect(retries).toBe(1);
    const [b] = await q.take('m', 1, 0, signal);
    expect(q.retry(b!, 3)).toBe(false);
    expect(retries).toBe(1);
    q.fail(b!, new EaselError('EASEL_WORKER_DIED', 'died'));
    await expect(p).rejects.toMatchObject({ code: 'EASEL_WORKER_DIED' });
  });

  it('times out with 504 and aborts the request signal', async () => {
    const q = new RequestBatcher();
    const p = q.submit('m', {}, { timeoutMs: 20 });
    await expect(p).rejects.toMatchObject({ code: 'EASEL_TIMEOUT', status: 504 });
    expect(q.length('m')).toBe(0);
  });

  it('still hands out accepted work after close, and refuses new work', async () => {
    const q = new RequestBatcher();
    const p = q.submit('m', {}, { timeoutMs: 5000 });
    q.close();
    await expect(q.submit('m', {}, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'EASEL_SHUTTING_DOWN' });
    const [item] = await q.take('m', 1, 0, new AbortController().signal);
    q.complete(item!, payload, {});
    await expect(p).resolves.toBeDefined();
  });

  it('hands out higher priorities first, in arrival order within a priority', async () => {
    const q = new RequestBatcher();
    const base = { timeoutMs: 5000 };
    const all = [
      q.submit('m', { n: 'low-1' }, { ...base, priority: -1 }),
      q.submit('m', { n: 'normal-1' }, base),
      q.submit('m', { n: 'high' }, { ...base, priority: 5 }),
      q.submit('m', { n: 'normal-2' }, base),
    ];
    const batch = await q.take('m', 4, 0, new AbortController().signal);
    expect(batch.map((b) => b.input.n)).toEqual(['high', 'normal-1', 'normal-2', 'low-1']);
    for (const b of batch) q.complete(b, payload, {});
    await Promise.all(all);
  });

  it('forms a batch only of requests with the first one\'s compatibility key', async () => {
    const q = new RequestBatcher();
    const base = { timeoutMs: 5000 };
    const all = ['64/20', '64/50', '64/20', '128/20', '64/20'].map((batchKey, n) => q.submit('m', { n }, { ...base, batchKey }));
    const first = await q.take('m', 4, 0, new AbortController().signal);
    expect(first.map((b) => b.input.n)).toEqual([0, 2, 4]);
    const second = await q.take('m', 4, 0, new AbortController().signal);
    expect(second.map((b) => b.input.n)).toEqual([1]);
    const third = await q.take('m', 4, 0, new AbortController().signal);
    expect(third.map((b) => b.input.n)).toEqual([3]);
    for (const b of [...first, ...second, ...third]) q.complete(b, payload, {});
    await Promise.all(all);
  });

});
