// A synchronous prediction's wait, on the embedded work queue: the answer, a queue timeout that
// withdraws only unclaimed work, a response timeout and a client that goes away.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EaselError } from '../errors/easel-error.js';
import { awaitPrediction } from './prediction.js';
import { SqliteJobBackend } from './sqlite-job-backend.js';

describe('awaitPrediction', () => {
  let queue: SqliteJobBackend;
  beforeEach(() => {
    queue = new SqliteJobBackend({ file: ':memory:', jobTtlMs: 60_000 });
  });
  afterEach(() => queue.close());

  const submit = async (): Promise<string> => (await queue.submit({ durable: false, model: 'm', input: {} })).job.id;

  it('resolves with the result a worker completed it with', async () => {
    const id = await submit();
    const waiting = awaitPrediction(queue, (await queue.get(id))!, { model: 'm', timeoutMs: 5_000 });
    await queue.claim(['m']);
    await queue.complete(id, [], { contentType: 'text/plain', data: new Uint8Array([104, 105]) });
    await expect(waiting).resolves.toEqual({ contentType: 'text/plain', data: new Uint8Array([104, 105]) });
  });

  it('rejects with the error the worker failed it with, field and all', async () => {
    const id = await submit();
    const waiting = awaitPrediction(queue, (await queue.get(id))!, { model: 'm', timeoutMs: 5_000 });
    await queue.claim(['m']);
    await queue.fail(id, new EaselError('EASEL_INVALID_PARAMETER', 'steps must be 1–100, got 500', { field: 'steps' }).toJSON());
    await expect(waiting).rejects.toMatchObject({ code: 'EASEL_INVALID_PARAMETER', status: 400, field: 'steps' });
  });

  it('a queue timeout withdraws unclaimed work with a 503 and Retry-After, but never work a worker has taken', async () => {
    const taken = await submit();
    const waiting = await submit();
    const first = awaitPrediction(queue, (await queue.get(taken))!, { model: 'm', timeoutMs: 5_000, queueTimeoutMs: 30 });
    const second = awaitPrediction(queue, (await queue.get(waiting))!, { model: 'm', timeoutMs: 5_000, queueTimeoutMs: 30 });
    await queue.claim(['m']);
    const err = (await second.catch((e: unknown) => e)) as EaselError;
    expect(err).toMatchObject({ code: 'EASEL_QUEUE_TIMEOUT', status: 503 });
    expect(err.retryAfterSeconds).toBeGreaterThan(0);
    expect(err.message).toMatch(/waited 30 ms/);
    expect(await queue.queuedCount('m', false)).toBe(0);
    // The taken one is past its queue timeout too, and still gets its answer.
    await queue.complete(taken, [], { contentType: 'text/plain', data: new Uint8Array([1]) });
    await expect(first).resolves.toMatchObject({ contentType: 'text/plain' });
  });

  it('a response timeout is a 504 and asks the worker to stop; a client that goes away cancels', async () => {
    const slow = await submit();
    await queue.claim(['m']);
    const asked: string[] = [];
    queue.onCancelRequested((id) => asked.push(id));
    await expect(awaitPrediction(queue, (await queue.get(slow))!, { model: 'm', timeoutMs: 20 })).rejects.toMatchObject({ code: 'EASEL_TIMEOUT', status: 504 });
    expect(asked).toEqual([slow]);
    const gone = await submit();
    const controller = new AbortController();
    const waiting = awaitPrediction(queue, (await queue.get(gone))!, { model: 'm', timeoutMs: 5_000, signal: controller.signal });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'EASEL_CANCELLED' });
    expect((await queue.get(gone))?.status).toBe('cancelled');
  });
});
