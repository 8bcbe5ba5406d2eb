// The job routes in-process through Fastify's inject(): no socket, no worker processes. The work
// queue is the real embedded one; events are put in it as a worker would.
import { createParser } from 'eventsource-parser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { inProcessServers } from '../../test/helpers/in-process-servers.js';
import type { SqliteJobBackend } from '../jobs/sqlite-job-backend.js';
import type { Servers } from './servers.js';

interface Event { id: string | undefined; event: string | undefined; data: Record<string, unknown> }

function parseSse(body: string): Event[] {
  const events: Event[] = [];
  createParser({ onEvent: (e) => events.push({ id: e.id, event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }) }).feed(body);
  return events;
}

describe('job routes (inject)', () => {
  let servers: Servers;
  let queue: SqliteJobBackend;
  let closeAll: () => Promise<void>;

  beforeEach(async () => {
    ({ servers, queue, close: closeAll } = await inProcessServers());
  });
  afterEach(() => closeAll());

  it('replays exactly the events after Last-Event-ID, ending with the final status', async () => {
    const { job } = await queue.submit({ model: 'm', input: {} });
    await queue.claim(['m']);
    for (let step = 1; step <= 5; step += 1) await queue.progress(job.id, { step, total: 5 });
    await queue.complete(job.id, []);
    const all = parseSse((await servers.inference.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events`, headers: { 'last-event-id': '0' } })).body);
    expect(all.map((e) => (e.event === 'progress' ? e.data.step : e.data.status))).toEqual(['queued', 'running', 1, 2, 3, 4, 5, 'succeeded']);
    const seenUpTo = all.find((e) => e.event === 'progress' && e.data.step === 2)!;
    const resumed = parseSse((await servers.inference.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events`, headers: { 'last-event-id': seenUpTo.id! } })).body);
    expect(resumed).toEqual(all.slice(all.indexOf(seenUpTo) + 1));
    // Without Last-Event-ID: the current state, with the id to resume from.
    const fresh = parseSse((await servers.inference.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events` })).body);
    expect(fresh).toEqual([{ id: all[all.length - 1]!.id, event: 'status', data: expect.objectContaining({ status: 'succeeded' }) }]);
  });

  it('refuses a Last-Event-ID that is not an event id, naming the header', async () => {
    const { job } = await queue.submit({ model: 'm', input: {} });
    const res = await servers.inference.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events`, headers: { 'last-event-id': '../etc' } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'EASEL_INVALID_PARAMETER', field: 'Last-Event-ID' });
  });

  it('answers 404 for a prediction of a model no node serves, before queueing anything', async () => {
    const res = await servers.inference.inject({ method: 'POST', url: '/predictions/nobody', payload: { data: [1] } });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ code: 'EASEL_MODEL_NOT_FOUND' });
    expect(await queue.queuedCount('nobody', false)).toBe(0);
  });
});
