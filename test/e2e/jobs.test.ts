// Async jobs through the real server with tiny-sd, embedded backend: submit, watch (SSE),
// fetch outputs, cancel (queued and running), priorities, admission, and survival of a kill -9.
import { createHmac } from 'node:crypto';
import { createParser } from 'eventsource-parser';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel, waitFor, type EaselProcess } from '../helpers/easel-process.js';

const BUNDLED_TINY_SD = path.join(ROOT, 'models', 'tiny-sd');
// These tests are about the job queue: one job at a time per worker (tiny-sd as a copy with
// batching mode none) keeps the others queued. Step-level batching has its own tests.
const SEQUENTIAL = mkdtempSync(path.join(tmpdir(), 'easel-tiny-sd-'));
const TINY_SD = path.join(SEQUENTIAL, 'tiny-sd');
cpSync(BUNDLED_TINY_SD, TINY_SD, { recursive: true });
appendFileSync(path.join(TINY_SD, 'easel.yaml'), '\nbatching:\n  mode: none\n');
afterAll(() => rmSync(SEQUENTIAL, { recursive: true, force: true }));
const PROMPT = 'a red circle on a blue background';

interface JobView {
  id: string;
  status: string;
  queue_position: number | null;
  estimated_seconds: number | null;
  progress: { step: number; total: number; fraction: number } | null;
  error: { code: string; message: string } | null;
  outputs: { url: string; content_type: string; bytes: number }[];
  started_at: string | null;
  attempts: number;
}

interface SseEvent {
  id?: string | undefined;
  event: string;
  data: Record<string, unknown>;
}

async function submit(e: EaselProcess, input: Record<string, unknown>, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${e.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ model: 'tiny-sd', input, ...extra }) });
}

async function submitOk(e: EaselProcess, input: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<JobView> {
  const res = await submit(e, input, extra);
  expect(res.status, await res.clone().text()).toBe(202);
  return (await res.json()) as JobView;
}

async function getJob(e: EaselProcess, id: string): Promise<JobView> {
  return (await (await fetch(`${e.inference}/v1/jobs/${id}`)).json()) as JobView;
}

async function finished(e: EaselProcess, id: string, timeoutMs = 60_000): Promise<JobView> {
  let job: JobView | undefined;
  await waitFor(async () => {
    job = await getJob(e, id);
    return ['succeeded', 'failed', 'cancelled'].includes(job.status);
  }, timeoutMs, `job ${id} to finish`);
  return job!;
}

/** Reads an SSE stream until it ends (parsed as clients parse it: eventsource-parser), calling `onEvent` for each event as it arrives. */
async function readEvents(url: string, onEvent: (e: SseEvent) => void | Promise<void> | 'stop' = () => {}, headers: Record<string, string> = {}): Promise<SseEvent[]> {
  const controller = new AbortController();
  const res = await fetch(url, { headers, signal: controller.signal });
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  const events: SseEvent[] = [];
  const parser = createParser({ onEvent: (e) => events.push({ id: e.id, event: e.event ?? 'message', data: JSON.parse(e.data) as Record<string, unknown> }) });
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body!) {
      const seen = events.length;
      parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
      for (const [i, e] of events.slice(seen).entries()) {
        // The client hangs up here: what it read so far is what it saw.
        if ((await onEvent(e)) === 'stop') {
          controller.abort();
          return events.slice(0, seen + i + 1);
        }
      }
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  return events;
}

function startServer(args: string[] = []): Promise<EaselProcess> {
  return serveModel('tiny-sd', TINY_SD, args);
}

describe('jobs (embedded backend)', () => {
  let easel: EaselProcess;
  beforeAll(async () => {
    easel = await startServer();
  }, 90_000);
  afterAll(() => easel?.stop());

  it('answers 202 at once, runs the job, and serves its image as an output', async () => {
    const job = await submitOk(easel, { prompt: PROMPT, seed: 1 });
    expect(job.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(['queued', 'running']).toContain(job.status);
    const done = await finished(easel, job.id);
    expect(done.status).toBe('succeeded');
    expect(done.progress).toEqual({ step: 20, total: 20, fraction: 1 });
    expect(done.outputs).toEqual([{ url: `/v1/jobs/${job.id}/outputs/0`, content_type: 'image/png', bytes: expect.any(Number) }]);
    // Its stages, in seconds: the wait for a worker, then its batch's stages in the worker (inference spans the 20 steps).
    const timings = (done as unknown as { timings: Record<string, number> }).timings;
    for (const stage of ['queue_wait', 'preprocess', 'inference', 'postprocess', 'encode_image']) expect(timings[stage], stage).toBeGreaterThanOrEqual(0);
    expect(timings.inference).toBeGreaterThan(timings.encode_image!);
    const res = await fetch(`${easel.inference}${done.outputs[0]!.url}`);
    expect(res.headers.get('content-type')).toBe('image/png');
    const meta = await sharp(new Uint8Array(await res.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([64, 64]);
    // The same request through /predictions gives the same bytes.
    const direct = await fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: PROMPT, seed: 1 }) });
    const again = await fetch(`${easel.inference}${done.outputs[0]!.url}`);
    expect(Buffer.from(await direct.arrayBuffer()).equals(Buffer.from(await again.arrayBuffer()))).toBe(true);
  });

  it('stores each image of a several-image job as an output: the images a synchronous request gets as base64', async () => {
    const input = { prompt: PROMPT, seed: 5, num_images: 2 };
    const done = await finished(easel, (await submitOk(easel, input)).id);
    expect(done.outputs.map((o) => o.content_type)).toEqual(['image/png', 'image/png']);
    const stored = await Promise.all(done.outputs.map(async (o) => Buffer.from(await (await fetch(`${easel.inference}${o.url}`)).arrayBuffer())));
    const direct = await fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });
    const body = (await direct.json()) as { images: string[]; seeds: number[] };
    expect(body.seeds).toEqual([5, 6]);
    expect(stored.map((b) => b.toString('base64'))).toEqual(body.images);
    expect(stored[0]!.equals(stored[1]!)).toBe(false);
  });

  it('streams status, progress and previews over SSE, ending with the result; a late client gets the state first', async () => {
    const job = await submitOk(easel, { prompt: PROMPT, seed: 2, num_inference_steps: 40, preview_every: 10 });
    const events = await readEvents(`${easel.inference}/v1/jobs/${job.id}/events`);
    expect(events[0]!.event).toBe('status');
    const last = events[events.length - 1]!;
    expect(last.event).toBe('status');
    expect(last.data.status).toBe('succeeded');
    const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step as number);
    expect(steps.length).toBeGreaterThan(10);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(steps[steps.length - 1]).toBe(40);
    const previews = events.filter((e) => e.event === 'preview');
    expect(previews.length).toBeGreaterThan(0);
    const preview = await sharp(Buffer.from(previews[0]!.data.data as string, 'base64')).metadata();
    expect(preview.format).toBe('jpeg');

    const late = await readEvents(`${easel.inference}/v1/jobs/${job.id}/events`);
    expect(late).toHaveLength(1);
    expect(late[0]!.data.status).toBe('succeeded');
  });

  it('streams the same events over a WebSocket, and says when a job does not exist', async () => {
    const job = await submitOk(easel, { prompt: PROMPT, seed: 4, num_inference_steps: 30 });
    const ws = `${easel.inference.replace('http', 'ws')}/ws/jobs`;
    const messages = await new Promise<{ event: string; data: Record<string, unknown> }[]>((resolve, reject) => {
      const socket = new WebSocket(`${ws}/${job.id}`);
      const got: { event: string; data: Record<string, unknown> }[] = [];
      socket.on('message', (m: Buffer) => got.push(JSON.parse(m.toString()) as { event: string; data: Record<string, unknown> }));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
    });
    expect(messages[0]!.event).toBe('status');
    expect(messages.filter((m) => m.event === 'progress').length).toBeGreaterThan(5);
    expect(messages[messages.length - 1]!.data.status).toBe('succeeded');

    const missing = await new Promise<{ code: number; first: string }>((resolve, reject) => {
      const socket = new WebSocket(`${ws}/no-such-job`);
      let first = '';
      socket.on('message', (m: Buffer) => (first ||= m.toString()));
      socket.on('close', (code) => resolve({ code, first }));
      socket.on('error', reject);
    });
    expect(missing.code).toBe(4404);
    expect(missing.first).toContain('EASEL_JOB_NOT_FOUND');
  });

  it('cancels a running job within a step, ends its stream with cancelled, and goes on to the next job', async () => {
    const job = await submitOk(easel, { prompt: PROMPT, seed: 3, num_inference_steps: 100 });
    let stepAtCancel = -1;
    let cancelling: Promise<Response> | undefined;
    const events = await readEvents(`${easel.inference}/v1/jobs/${job.id}/events`, async (e) => {
      if (e.event === 'progress' && (e.data.step as number) >= 5 && !cancelling) {
        stepAtCancel = e.data.step as number;
        cancelling = fetch(`${easel.inference}/v1/jobs/${job.id}`, { method: 'DELETE' });
      }
    });
    expect((await cancelling!).status).toBe(200);
    const last = events[events.length - 1]!;
    expect(last.data.status).toBe('cancelled');
    const done = await getJob(easel, job.id);
    expect(done.error?.code).toBe('EASEL_CANCELLED');
    // The worker stops at its next step: a step may be in flight when the cancel arrives.
    expect(done.progress!.step).toBeLessThanOrEqual(stepAtCancel + 3);
    expect(done.progress!.step).toBeLessThan(100);
    const next = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 4 });
    expect((await finished(easel, next.id)).status).toBe('succeeded');
  });

  it('cancels a queued job at once, runs higher priorities first, and keeps idempotent submissions single', async () => {
    // The estimate is measured from finished jobs: one has finished, whatever ran before this test.
    await finished(easel, (await submitOk(easel, { prompt: PROMPT, num_inference_steps: 2 })).id);
    const busy = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 100 });
    await waitFor(async () => (await getJob(easel, busy.id)).status === 'running', 20_000, 'the first job to run');
    const low = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 2 });
    const doomed = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 2 });
    const high = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 2 }, { priority: 10 });
    expect(low.queue_position).toBe(0);
    // Measured from the jobs that finished before: a number, not a constant.
    expect(low.estimated_seconds).toBeGreaterThan(0);
    expect((await getJob(easel, high.id)).queue_position).toBe(0);
    expect((await getJob(easel, low.id)).queue_position).toBe(1);

    const cancelled = await fetch(`${easel.inference}/v1/jobs/${doomed.id}`, { method: 'DELETE' });
    expect(((await cancelled.json()) as JobView).status).toBe('cancelled');

    const key = { 'idempotency-key': `key-${low.id}` };
    const first = await submit(easel, { prompt: PROMPT, num_inference_steps: 2 }, {}, key);
    const repeat = await submit(easel, { prompt: PROMPT, num_inference_steps: 2 }, {}, key);
    expect(first.status).toBe(202);
    expect(repeat.status).toBe(200);
    const firstId = ((await first.json()) as JobView).id;
    expect(((await repeat.json()) as JobView).id).toBe(firstId);

    await fetch(`${easel.inference}/v1/jobs/${busy.id}`, { method: 'DELETE' });
    const [lowDone, highDone] = [await finished(easel, low.id), await finished(easel, high.id)];
    expect(Date.parse(highDone.started_at!)).toBeLessThanOrEqual(Date.parse(lowDone.started_at!));
    expect((await getJob(easel, doomed.id)).started_at).toBeNull();
    expect((await finished(easel, firstId)).status).toBe('succeeded');

    const list = (await (await fetch(`${easel.inference}/v1/jobs?status=cancelled&limit=50`)).json()) as { jobs: JobView[] };
    expect(list.jobs.map((j) => j.id)).toEqual(expect.arrayContaining([doomed.id, busy.id]));
  });

  it('gives clear errors: unknown model, missing input, unknown job, finished job, absent output', async () => {
    const unknown = await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nope', input: {} }) });
    expect(unknown.status).toBe(404);
    const noInput = await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd' }) });
    expect(noInput.status).toBe(400);
    expect(((await noInput.json()) as { field: string }).field).toBe('input');
    expect((await fetch(`${easel.inference}/v1/jobs/not-a-job`)).status).toBe(404);
    const job = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 2 });
    await finished(easel, job.id);
    const again = await fetch(`${easel.inference}/v1/jobs/${job.id}`, { method: 'DELETE' });
    expect(again.status).toBe(409);
    expect((await fetch(`${easel.inference}/v1/jobs/${job.id}/outputs/3`)).status).toBe(404);
    // A job whose input the handler refuses is a 400 at submission, naming the field: never queued.
    const bad = await submit(easel, { prompt: PROMPT, width: 65 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'EASEL_INVALID_PARAMETER', field: 'width', message: expect.stringMatching(/multiple of 16 .*got 65/) });
  });

  it('counts jobs by model and status, and exports the queue depth and the queue and run times', async () => {
    // Its own jobs: three that succeed and one cancelled, whatever ran before this test.
    const ok = await Promise.all([1, 2, 3].map(async () => submitOk(easel, { prompt: PROMPT, num_inference_steps: 2 })));
    for (const j of ok) await finished(easel, j.id);
    const doomed = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 100 });
    await fetch(`${easel.inference}/v1/jobs/${doomed.id}`, { method: 'DELETE' });
    expect((await finished(easel, doomed.id)).status).toBe('cancelled');
    let text = '';
    await waitFor(async () => /easel_jobs_total\{model="tiny-sd",status="cancelled"\} \d+/.test((text = await (await fetch(`${easel.metrics}/metrics`)).text())), 10_000, 'the cancelled job to be counted');
    expect(Number(/easel_jobs_total\{model="tiny-sd",status="succeeded"\} (\d+)/.exec(text)?.[1])).toBeGreaterThanOrEqual(3);
    expect(text).toMatch(/easel_jobs_total\{model="tiny-sd",status="cancelled"\} \d+/);
    expect(text).toMatch(/easel_jobs_queued\{model="tiny-sd"\} 0/);
    expect(text).toMatch(/easel_job_queue_time_seconds_count\{model="tiny-sd"\} \d+/);
    expect(text).toMatch(/easel_job_run_time_seconds_count\{model="tiny-sd"\} \d+/);
  });

  it('turns a prediction into a job with Prefer: respond-async', async () => {
    const res = await fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'respond-async' }, body: JSON.stringify({ data: PROMPT }) });
    expect(res.status).toBe(202);
    const job = (await res.json()) as JobView;
    expect(res.headers.get('location')).toBe(`/v1/jobs/${job.id}`);
    expect((await finished(easel, job.id)).status).toBe('succeeded');
  });

  it('a client that reconnects with Last-Event-ID gets exactly the events it missed, in order', async () => {
    const job = await submitOk(easel, { prompt: PROMPT, seed: 5, num_inference_steps: 60, preview_every: 10 });
    const url = `${easel.inference}/v1/jobs/${job.id}/events`;
    // The client reads until step 5, then its connection drops.
    const before = await readEvents(url, (e) => (e.event === 'progress' && (e.data.step as number) >= 5 ? 'stop' : undefined));
    expect(before.every((e) => e.id !== undefined)).toBe(true);
    const lastSeen = before[before.length - 1]!;
    // Meanwhile the job goes on.
    await waitFor(async () => ((await getJob(easel, job.id)).progress?.step ?? 0) >= (lastSeen.data.step as number) + 5, 30_000, 'progress while the client is away');
    const after = await readEvents(url, undefined, { 'last-event-id': lastSeen.id! });
    expect(after[after.length - 1]!.data.status).toBe('succeeded');
    // Everything the job did, as stored (Last-Event-ID 0: from the start).
    const all = await readEvents(url, undefined, { 'last-event-id': '0' });
    const missed = all.slice(all.findIndex((e) => e.id === lastSeen.id) + 1);
    expect(after.map((e) => e.id)).toEqual(missed.map((e) => e.id));
    expect(after).toEqual(missed);
    const steps = after.filter((e) => e.event === 'progress').map((e) => e.data.step as number);
    expect(steps[0]).toBe((lastSeen.data.step as number) + 1);
    expect(steps).toEqual(Array.from({ length: 60 - (lastSeen.data.step as number) }, (_, i) => (lastSeen.data.step as number) + 1 + i));
    // An id that is not one of ours is a 400 naming the header.
    const bad = await fetch(url, { headers: { 'last-event-id': 'yesterday' } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'EASEL_INVALID_PARAMETER', field: 'Last-Event-ID' });
  }, 90_000);
});

describe('SSE heartbeat', () => {
  it('sends a comment line every --sse-heartbeat-ms, which event parsers ignore', async () => {
    const easel = await startServer(['--sse-heartbeat-ms', '100']);
    try {
      const job = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 100 });
      const raw = await (await fetch(`${easel.inference}/v1/jobs/${job.id}/events`)).text();
      expect(raw.split('\n').filter((l) => l === ': heartbeat').length).toBeGreaterThan(0);
      expect(raw.trim().split('\n\n').pop()).toMatch(/"status":"succeeded"/);
      // A client's event parser sees the events of a running job and never a heartbeat.
      const second = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 100 });
      const events = await readEvents(`${easel.inference}/v1/jobs/${second.id}/events`);
      expect(new Set(events.map((e) => e.event))).toEqual(new Set(['status', 'progress']));
      expect(events[events.length - 1]!.data.status).toBe('succeeded');
    } finally {
      await easel.stop();
    }
  }, 90_000);
});

describe('admission limits: one work queue, two lanes', () => {
  // One worker running one request at a time: at most 1 synchronous request and 2 jobs may wait.
  let easel: EaselProcess;
  beforeAll(async () => {
    easel = await startServer(['--max-queue-length', '1', '--max-queued-jobs', '2']);
  }, 90_000);
  afterAll(() => easel?.stop());

  it('a full queue of synchronous requests answers 503 with Retry-After, while a durable job submitted then is accepted and waits', async () => {
    const predict = (steps: number): Promise<Response> =>
      fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: PROMPT, num_inference_steps: steps }) });
    const queueLength = async (): Promise<number> => Number(/easel_queue_length\{model="tiny-sd"\} (\d+)/.exec(await (await fetch(`${easel.metrics}/metrics`)).text())?.[1] ?? 0);
    // The node claims what its one worker runs; the second request waits in the work queue,
    // which is then at its limit (1).
    const accepted = [predict(100), predict(100)];
    await waitFor(async () => (await queueLength()) >= 1, 20_000, 'a request to wait in the queue');
    const [refused, job] = await Promise.all([predict(2), submit(easel, { prompt: PROMPT, num_inference_steps: 2 })]);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await refused.json()).toMatchObject({ code: 'EASEL_QUEUE_FULL' });
    expect(job.status).toBe(202);
    const queuedJob = (await job.json()) as JobView;
    expect(queuedJob.status).toBe('queued');
    for (const res of await Promise.all(accepted)) expect(res.status).toBe(200);
    expect((await finished(easel, queuedJob.id)).status).toBe('succeeded');
  }, 90_000);

  it('answers 503 with Retry-After beyond --max-queued-jobs, and runs everything it accepted', async () => {
    const busy = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 60 });
    await waitFor(async () => (await getJob(easel, busy.id)).status === 'running', 20_000, 'the first job to run');
    const keyed = await submit(easel, { prompt: PROMPT, num_inference_steps: 2 }, {}, { 'idempotency-key': 'adm-1' });
    expect(keyed.status).toBe(202);
    const accepted = [await submitOk(easel, { prompt: PROMPT, num_inference_steps: 2 }), (await keyed.json()) as JobView];
    const refused = await submit(easel, { prompt: PROMPT });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBeTruthy();
    expect(((await refused.json()) as { code: string }).code).toBe('EASEL_QUEUE_FULL');
    // A fresh idempotency key is a new job: refused too. A repeated one with the same request
    // gets its job back; with another request it is refused (422, IETF idempotency-key draft).
    expect((await submit(easel, { prompt: PROMPT }, {}, { 'idempotency-key': 'adm-2' })).status).toBe(503);
    const reused = await submit(easel, { prompt: PROMPT }, {}, { 'idempotency-key': 'adm-1' });
    expect(reused.status).toBe(422);
    expect(((await reused.json()) as { code: string }).code).toBe('EASEL_IDEMPOTENCY_KEY_REUSED');
    const repeat = await submit(easel, { prompt: PROMPT, num_inference_steps: 2 }, {}, { 'idempotency-key': 'adm-1' });
    expect(repeat.status).toBe(200);
    expect(((await repeat.json()) as JobView).id).toBe(accepted[1]!.id);
    for (const job of [busy, ...accepted]) expect((await finished(easel, job.id)).status).toBe('succeeded');
  }, 90_000);
});

describe('durability', () => {
  it('kill -9 of the server with 20 jobs queued or running: all 20 complete after a restart', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'easel-jobs-'));
    try {
      const first = await startServer(['--data-dir', dataDir]);
      const ids: string[] = [];
      for (let i = 0; i < 20; i += 1) ids.push((await submitOk(first, { prompt: PROMPT, seed: i, num_inference_steps: 30 })).id);
      await waitFor(async () => (await getJob(first, ids[0]!)).status === 'running', 20_000, 'a job to run');
      first.child.kill('SIGKILL');
      await first.stop();

      const second = await startServer(['--data-dir', dataDir]);
      try {
        for (const id of ids) {
          const job = await finished(second, id, 120_000);
          expect(job.status).toBe('succeeded');
          expect(job.outputs).toHaveLength(1);
        }
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 240_000);
});

describe('worker faults while a job runs (embedded backend)', () => {
  let easel: EaselProcess;
  beforeAll(async () => {
    easel = await startServer();
  }, 90_000);
  afterAll(() => easel?.stop());

  async function runningWorkerPid(): Promise<number> {
    let pid = 0;
    await waitFor(async () => {
      const desc = ((await (await fetch(`${easel.management}/models/tiny-sd`)).json()) as { workers: { pid: number | null; status: string }[] }[])[0]!;
      pid = desc.workers.find((w) => w.status === 'BUSY')?.pid ?? 0;
      return pid > 0;
    }, 20_000, 'a BUSY worker');
    return pid;
  }

  async function directPng(input: Record<string, unknown>): Promise<Buffer> {
    const res = await fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });
    return Buffer.from(await res.arrayBuffer());
  }

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`${signal} to the worker running a job: the job completes once, with the right image`, async () => {
      const input = { prompt: PROMPT, seed: 11, num_inference_steps: 100 };
      const job = await submitOk(easel, input);
      await waitFor(async () => ((await getJob(easel, job.id)).progress?.step ?? 0) >= 3, 20_000, 'the job to make progress');
      const pid = await runningWorkerPid();
      process.kill(pid, signal);
      const done = await finished(easel, job.id, 90_000);
      expect(done.status).toBe('succeeded');
      expect(done.outputs).toHaveLength(1);
      // The worker is gone (SIGTERM: after finishing or handing back its job) and replaced.
      await waitFor(() => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      }, 20_000, `worker ${pid} to exit`);
      const output = Buffer.from(await (await fetch(`${easel.inference}${done.outputs[0]!.url}`)).arrayBuffer());
      expect(output.equals(await directPng(input))).toBe(true);
      if (signal !== 'SIGKILL') return;
      // Killed: a second attempt, announced by a status event before its progress starts again at step 1.
      expect(done.attempts).toBe(2);
      const replay = await (await fetch(`${easel.inference}/v1/jobs/${job.id}/events`, { headers: { 'last-event-id': '0' } })).text();
      const events = [...replay.matchAll(/event: (\w+)\ndata: (.*)\n/g)].map((m) => ({ type: m[1]!, data: JSON.parse(m[2]!) as { status?: string; attempts?: number; step?: number } }));
      const retried = events.findIndex((e) => e.type === 'status' && e.data.status === 'running' && e.data.attempts === 2);
      expect(retried).toBeGreaterThan(0);
      const steps = (from: number, to: number): number[] => events.slice(from, to).filter((e) => e.type === 'progress').map((e) => e.data.step!);
      expect(Math.max(...steps(0, retried))).toBeGreaterThanOrEqual(3);
      expect(steps(retried, events.length)[0]).toBe(1);
      expect(steps(retried, events.length).at(-1)).toBe(100);
    }, 120_000);
  }
});

describe('webhooks', () => {
  const SECRET = 'a-test-webhook-secret';
  let easel: EaselProcess;
  let receiver: Server;
  let url = '';
  const received: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
  /** Jobs whose first `completed` delivery the receiver answers with 500 (to see it retried). */
  const failFirstCompleted = new Set<string>();

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        const { webhook_event: event, id } = JSON.parse(body) as { webhook_event: string; id: string };
        if (event === 'completed' && failFirstCompleted.delete(id)) {
          res.writeHead(500).end();
          return;
        }
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    // The receiver is on loopback: only the operator's allow-list lets a webhook reach it.
    easel = await startServer(['--webhook-secret', SECRET, '--webhook-allowed-hosts', `127\\.0\\.0\\.1:${(receiver.address() as AddressInfo).port}`]);
  }, 90_000);
  afterAll(async () => {
    await easel?.stop();
    receiver?.close();
  });

  it('delivers start, throttled output and completed, signed, retrying a failed delivery with the same id', async () => {
    const job = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 80 }, { webhook: url });
    failFirstCompleted.add(job.id);
    const completedOf = (id: string): number => received.filter((r) => r.body.includes(id) && r.body.includes('"webhook_event":"completed"')).length;
    await waitFor(() => completedOf(job.id) >= 2, 30_000, 'the completed webhook to be retried');
    const mine = received.filter((r) => r.body.includes(job.id));
    const events = mine.map((r) => (JSON.parse(r.body) as { webhook_event: string }).webhook_event);
    expect(events[0]).toBe('start');
    expect(events.slice(-2)).toEqual(['completed', 'completed']);
    const outputs = events.filter((e) => e === 'output').length;
    expect(outputs).toBeGreaterThan(0);
    expect(outputs).toBeLessThan(80); // throttled, not one per step
    const [failed, retried] = mine.slice(-2);
    expect(retried!.headers['webhook-id']).toBe(failed!.headers['webhook-id']);
    for (const r of mine) {
      const expected = `v1,${createHmac('sha256', SECRET).update(`${String(r.headers['webhook-id'])}.${String(r.headers['webhook-timestamp'])}.${r.body}`).digest('base64')}`;
      expect(r.headers['webhook-signature']).toBe(expected);
    }
    const final = JSON.parse(retried!.body) as { status: string; outputs: unknown[] };
    expect(final.status).toBe('succeeded');
    expect(final.outputs).toHaveLength(1);
  });

  it('sends only the filtered events, and refuses a webhook that is not an http(s) URL', async () => {
    const job = await submitOk(easel, { prompt: PROMPT, num_inference_steps: 30 }, { webhook: url, webhook_events_filter: ['completed'] });
    await finished(easel, job.id);
    await waitFor(() => received.some((r) => r.body.includes(job.id)), 10_000, 'the webhook');
    // Deliveries of a job go in order and completed is its last: had another event passed the filter, it would be here.
    expect(received.filter((r) => r.body.includes(job.id)).map((r) => (JSON.parse(r.body) as { webhook_event: string }).webhook_event)).toEqual(['completed']);
    const bad = await submit(easel, { prompt: PROMPT }, { webhook: 'file:///etc/passwd' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { field: string }).field).toBe('webhook');
  });
});
