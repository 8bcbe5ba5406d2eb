// Async jobs on the inference port: POST /v1/jobs, GET /v1/jobs[/{id}], DELETE /v1/jobs/{id},
// GET /v1/jobs/{id}/events (SSE), GET /ws/jobs/{id} (WebSocket), GET /v1/jobs/{id}/outputs/{n}; and submitJob for
// `Prefer: respond-async` on /predictions.
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EaselError, invalidField } from '../errors/easel-error.js';
import { isTerminal, JOB_STATUSES, type Job, type JobBackend, type JobEvent, type JobStatus } from '../jobs/job.js';
import { publicJob } from '../jobs/job-view.js';
import { WEBHOOK_EVENTS } from '../jobs/webhook-notifier.js';
import type { ModelControl } from '../models/model-control.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import { methodNotAllowed } from './errors.js';

export interface JobRoutesOptions {
  backend: JobBackend;
  artifacts: ArtifactStore;
  control: ModelControl;
  maxQueuedJobs: number;
  /** Whether some node serves the model (here, or a worker node in the distributed mode). */
  modelKnown(model: string): Promise<boolean>;
  /** Seconds one job of the model takes, measured; undefined before the first one finished. */
  secondsPerJob(model: string): number | undefined;
  isDraining(): boolean;
}

export interface SubmitRequest {
  model: string;
  version?: string | undefined;
  input: Record<string, unknown>;
  priority?: number | undefined;
  idempotencyKey?: string | undefined;
  webhook?: string | undefined;
  webhookEvents?: string[] | undefined;
}

async function describeQueued(o: JobRoutesOptions, seen: Job): Promise<Record<string, unknown>> {
  const position = await o.backend.position(seen.id);
  // A worker may have claimed it meanwhile: report the state the position belongs to.
  const job = position === null && seen.status === 'queued' ? ((await o.backend.get(seen.id)) ?? seen) : seen;
  const perJob = o.secondsPerJob(job.model);
  const workers = o.control.health().models.filter((m) => m.name === job.model).reduce((n, m) => n + m.liveWorkers, 0);
  const estimate = perJob === undefined || position === null ? null : Math.round(((position + 1) * perJob * 10) / Math.max(1, workers)) / 10;
  return publicJob(job, position, estimate);
}

/** Admits a job (404 for an unknown model, 503 when its queue is full) and answers 202. */
export async function submitJob(o: JobRoutesOptions, req: SubmitRequest, reply: FastifyReply): Promise<FastifyReply> {
  if (o.isDraining()) throw new EaselError('EASEL_SHUTTING_DOWN', 'the server is shutting down and accepts no new jobs', 503, { retryAfterSeconds: 5 });
  try {
    o.control.spec(req.model, req.version);
  } catch (err) {
    // Not served here: in the distributed mode a worker node may serve it.
    if (!(await o.modelKnown(req.model))) throw err;
  }
  // A repeated idempotency key gets its job back even when the queue is full.
  const seen = req.idempotencyKey === undefined ? undefined : await o.backend.byIdempotencyKey(req.idempotencyKey);
  if (seen) return reply.code(200).header('location', `/v1/jobs/${seen.id}`).send(await describeQueued(o, seen));
  if ((await o.backend.queuedCount(req.model)) >= o.maxQueuedJobs) {
    throw new EaselError('EASEL_QUEUE_FULL', `the job queue for ${req.model} is full (${o.maxQueuedJobs} queued jobs); retry later`, 503, { retryAfterSeconds: 5 });
  }
  const { job, created } = await o.backend.submit(req);
  return reply
    .code(created ? 202 : 200)
    .header('location', `/v1/jobs/${job.id}`)
    .send(await describeQueued(o, job));
}

function parseSubmit(body: unknown, idempotencyKey: string | undefined): SubmitRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new EaselError('EASEL_BAD_REQUEST', 'the body must be a JSON object: {"model": "...", "input": {...}}', 400);
  }
  const b = body as Record<string, unknown>;
  const allowed = ['model', 'version', 'input', 'priority', 'webhook', 'webhook_events_filter'];
  const unknown = Object.keys(b).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) throw invalidField(unknown[0]!, `unknown field ${unknown.join(', ')}; a job takes ${allowed.join(', ')}`);
  if (typeof b.model !== 'string' || b.model === '') throw new EaselError('EASEL_BAD_REQUEST', 'model is required: the name of a registered model', 400, { field: 'model' });
  if (b.version !== undefined && typeof b.version !== 'string') throw invalidField('version', 'version must be a string');
  if (!b.input || typeof b.input !== 'object' || Array.isArray(b.input)) {
    throw new EaselError('EASEL_BAD_REQUEST', 'input is required: an object of the model\'s request fields, e.g. {"prompt": "..."}', 400, { field: 'input' });
  }
  const priority = b.priority ?? 0;
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < -100 || priority > 100) {
    throw invalidField('priority', `priority must be an integer from -100 to 100 (higher runs first), got ${JSON.stringify(priority)}`);
  }
  let webhook: string | undefined;
  if (b.webhook !== undefined) {
    const url = typeof b.webhook === 'string' && URL.canParse(b.webhook) ? new URL(b.webhook) : undefined;
    if (!url || !['http:', 'https:'].includes(url.protocol)) throw invalidField('webhook', `webhook must be an http(s) URL, got ${JSON.stringify(b.webhook)}`);
    webhook = url.href;
  }
  const filter = b.webhook_events_filter;
  if (filter !== undefined && (!Array.isArray(filter) || !filter.every((e) => (WEBHOOK_EVENTS as readonly unknown[]).includes(e)))) {
    throw invalidField('webhook_events_filter', `webhook_events_filter must be a list of ${WEBHOOK_EVENTS.join(', ')}`);
  }
  return { model: b.model, version: b.version as string | undefined, input: b.input as Record<string, unknown>, priority, idempotencyKey, webhook, webhookEvents: filter as string[] | undefined };
}

/**
 * Follows a job for a streaming client: the current state first, then every event, ending
 * after a final status. Returns the function that stops following (the client went away).
 */
function followJob(o: JobRoutesOptions, job: Job, send: (event: string, data: unknown) => void, end: () => void): () => void {
  let stopped = false;
  // Subscribe before reading the state again, so nothing falls between the two.
  const off = o.backend.subscribe(job.id, (e) => {
    if (stopped) return;
    const [event, data] = eventMessage(e);
    send(event, data);
    if (e.type === 'status' && isTerminal(e.job.status)) stop();
  });
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    off();
    end();
  };
  void o.backend.get(job.id).then((current = job) => {
    if (stopped) return;
    send('status', publicJob(current));
    if (isTerminal(current.status)) stop();
  }, stop);
  return stop;
}

function eventMessage(e: JobEvent): [string, unknown] {
  switch (e.type) {
    case 'status':
      return ['status', publicJob(e.job)];
    case 'progress':
      return ['progress', { ...e.progress, fraction: e.progress.total > 0 ? e.progress.step / e.progress.total : 0 }];
    case 'preview':
      return ['preview', { content_type: e.contentType, data: Buffer.from(e.data).toString('base64') }];
  }
}

async function jobOr404(o: JobRoutesOptions, id: string): Promise<Job> {
  const job = await o.backend.get(id);
  if (!job) throw new EaselError('EASEL_JOB_NOT_FOUND', `no job ${id} (never submitted, or expired)`, 404);
  return job;
}

export async function jobRoutes(app: FastifyInstance, o: JobRoutesOptions): Promise<void> {
  app.post('/v1/jobs', async (req, reply) => {
    const key = req.headers['idempotency-key'];
    return submitJob(o, parseSubmit(req.body, typeof key === 'string' && key !== '' ? key : undefined), reply);
  });

  app.get('/v1/jobs', async (req: FastifyRequest<{ Querystring: Record<string, string | undefined> }>) => {
    const q = req.query;
    if (q.status !== undefined && !(JOB_STATUSES as readonly string[]).includes(q.status)) {
      throw invalidField('status', `status must be one of ${JOB_STATUSES.join(', ')}, got ${q.status}`);
    }
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalidField('limit', `limit must be an integer from 1 to 1000, got ${q.limit}`);
    if (q.cursor !== undefined && !/^\d+$/.test(q.cursor)) throw invalidField('cursor', 'cursor must be the next_cursor of a previous page');
    const page = await o.backend.list({ status: q.status as JobStatus | undefined, model: q.model, limit, cursor: q.cursor });
    return { jobs: page.jobs.map((j) => publicJob(j)), next_cursor: page.nextCursor };
  });

  app.get('/v1/jobs/:id', async (req: FastifyRequest<{ Params: { id: string } }>) => describeQueued(o, await jobOr404(o, req.params.id)));

  app.delete('/v1/jobs/:id', async (req: FastifyRequest<{ Params: { id: string } }>) => {
    const job = await jobOr404(o, req.params.id);
    if (isTerminal(job.status)) throw new EaselError('EASEL_JOB_FINISHED', `job ${job.id} has already ${job.status === 'cancelled' ? 'been cancelled' : job.status}`, 409);
    return publicJob((await o.backend.cancel(job.id)) ?? job);
  });

  app.get('/v1/jobs/:id/outputs/:n', async (req: FastifyRequest<{ Params: { id: string; n: string } }>, reply) => {
    const job = await jobOr404(o, req.params.id);
    const output = /^\d+$/.test(req.params.n) ? job.outputs[Number(req.params.n)] : undefined;
    if (!output) throw new EaselError('EASEL_OUTPUT_NOT_FOUND', `job ${job.id} has ${job.outputs.length} output(s) (status ${job.status}); there is no output ${req.params.n}`, 404);
    const data = await o.artifacts.get(output.key);
    if (!data) throw new EaselError('EASEL_OUTPUT_NOT_FOUND', `output ${req.params.n} of job ${job.id} has expired`, 404);
    return reply.type(output.contentType).send(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });

  app.get('/v1/jobs/:id/events', async (req: FastifyRequest<{ Params: { id: string } }>, reply) => {
    const job = await jobOr404(o, req.params.id);
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const stop = followJob(
      o,
      job,
      (event, data) => reply.raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
      () => {
        if (!reply.raw.writableEnded) reply.raw.end();
      },
    );
    req.raw.on('close', stop);
  });

  await app.register(websocket);
  app.get('/ws/jobs/:id', { websocket: true }, (socket, req: FastifyRequest<{ Params: { id: string } }>) => {
    void (async () => {
      const job = await o.backend.get(req.params.id);
      if (!job) {
        socket.send(JSON.stringify({ event: 'error', data: { code: 'EASEL_JOB_NOT_FOUND', message: `no job ${req.params.id} (never submitted, or expired)` } }));
        socket.close(4404, 'job not found');
        return;
      }
      const stop = followJob(o, job, (event, data) => socket.send(JSON.stringify({ event, data })), () => socket.close(1000, 'job finished'));
      socket.on('close', stop);
    })().catch((err: unknown) => {
      req.log.error({ err }, 'following a job over a WebSocket failed');
      socket.close(1011, 'internal error');
    });
  });

  methodNotAllowed(app, '/v1/jobs', ['GET', 'POST']);
  methodNotAllowed(app, '/v1/jobs/:id', ['GET', 'DELETE']);
  methodNotAllowed(app, '/v1/jobs/:id/events', ['GET']);
  methodNotAllowed(app, '/v1/jobs/:id/outputs/:n', ['GET']);
}
