// Async jobs on the inference port: POST /v1/jobs, GET /v1/jobs[/{id}], DELETE /v1/jobs/{id},
// GET /v1/jobs/{id}/events (SSE), GET /ws/jobs/{id} (WebSocket), GET /v1/jobs/{id}/outputs/{n}; and submitJob for
// `Prefer: respond-async` on /predictions.
import { createHash } from 'node:crypto';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { EaselError, errors, invalidField } from '../errors/easel-error.js';
import { isTerminal, JOB_STATUSES, type Job, type JobBackend } from '../jobs/job.js';
import { isEventId, isFinalEvent, type WorkEvent } from '../jobs/work-event.js';
import { publicJob } from '../jobs/job-view.js';
import { encodeInput } from '../jobs/input-codec.js';
import { WEBHOOK_EVENTS } from '../jobs/webhook-notifier.js';
import type { Admission } from '../handlers/admission.js';
import type { ModelControl } from '../models/model-control.js';
import { checkOutbound, parseOutboundUrl, type OutboundPolicy } from '../net/outbound-guard.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import { methodNotAllowed } from './errors.js';
import { intQuery, jobId, jsonObject, pathName, strictObject } from './schemas.js';
import { streamWrite } from './stream-write.js';

export interface JobRoutesOptions {
  backend: JobBackend;
  artifacts: ArtifactStore;
  control: ModelControl;
  maxQueuedJobs: number;
  /** Queued jobs one API key may have, every model together. */
  maxQueuedJobsPerKey: number;
  /** A job's input as it would be stored (uploaded bytes included): larger is 413. */
  maxJobInputBytes: number;
  /** Whether some node serves the model (here, or a worker node in the distributed mode). */
  modelKnown(model: string): Promise<boolean>;
  /** The models some node serves. */
  models(): Promise<string[]>;
  /** Seconds one job of the model takes, measured; undefined before the first one finished. */
  secondsPerJob(model: string): number | undefined;
  isDraining(): boolean;
  /** Which webhook receivers a job may name. */
  webhookPolicy: OutboundPolicy;
  /** How often an SSE stream sends a comment line while it has nothing else to say. */
  sseHeartbeatMs: number;
  /** Event streams (SSE and WebSocket together) one API key, or one client address without keys, may hold open on this node. */
  maxStreamsPerClient: number;
  /**
   * Admission for a model that runs on other nodes (an API-only node of the distributed mode):
   * the handler's parse from the spec this node knows from its config; undefined when it knows none.
   */
  elsewhere?: ((model: string) => Admission | undefined) | undefined;
}

export interface SubmitRequest {
  /** Who submits it: the API key's name, null on a server without keys. */
  owner: string | null;
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

/** Who asks: the API key's name, or null on a server without keys (everyone is one owner). */
export function ownerOf(req: FastifyRequest): string | null {
  return req.apiKey?.name ?? null;
}

/** Whether the asker may see this job: its owner, within the key's models. Nobody else learns that it exists. */
function mayRead(req: FastifyRequest, job: Job): boolean {
  const key = req.apiKey;
  return !key || (job.owner === key.name && (key.models?.includes(job.model) ?? true));
}

/** Idempotency keys are per owner (the IETF draft scopes them per client): two keys' "42" are two keys. */
function ownedIdempotencyKey(owner: string | null, key: string | undefined): string | undefined {
  return key === undefined || owner === null ? key : JSON.stringify([owner, key]);
}

/** The Idempotency-Key header, when the client sent one. */
export function idempotencyKey(req: FastifyRequest): string | undefined {
  const key = req.headers['idempotency-key'];
  if (key === undefined || key === '') return undefined;
  if (typeof key !== 'string' || key.length > 255) throw new EaselError('EASEL_BAD_REQUEST', 'Idempotency-Key must be one header of at most 255 characters', { field: 'Idempotency-Key' });
  return key;
}

/** A digest of what the client asked for, before admission fills defaults (key order aside). */
function requestHash(req: SubmitRequest): string {
  const { model, version, input, priority, webhook, webhookEvents } = req;
  return createHash('sha256').update(canonicalJson({ model, version, input, priority: priority ?? 0, webhook, webhookEvents })).digest('hex');
}

function canonicalJson(v: unknown): string {
  if (v instanceof Uint8Array) return `"bytes:${createHash('sha256').update(v).digest('hex')}"`;
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * Admits a job: 404 for an unknown model, 400 when the model's handler refuses the input or the
 * webhook is not reachable by policy, 422 for an idempotency key reused with another request,
 * 503 when the model's job queue is full; then answers 202.
 */
export async function submitJob(o: JobRoutesOptions, req: SubmitRequest, reply: FastifyReply): Promise<FastifyReply> {
  if (o.isDraining()) throw errors.shuttingDown('jobs', 5);
  let local = true;
  try {
    o.control.spec(req.model, req.version);
  } catch (err) {
    // Not served here: in the distributed mode a worker node may serve it (and parses it there).
    if (!(await o.modelKnown(req.model))) throw err;
    local = false;
  }
  // The same admission as /predictions: an invalid job is a 400 now, not a failure later.
  // The webhook first: a job whose receiver is refused is never queued, whatever its input.
  if (req.webhook !== undefined) await checkOutbound(parseOutboundUrl(req.webhook, 'webhook'), o.webhookPolicy, 'webhook');
  const input = local ? o.control.admit(req.model, req.version, req.input) : (o.elsewhere?.(req.model)?.parse(req.input) ?? req.input);
  // Stored once, shown on every read of the job: its bytes are bounded, not only the count of jobs.
  const bytes = Buffer.byteLength(encodeInput(input));
  if (bytes > o.maxJobInputBytes) {
    throw new EaselError('EASEL_INPUT_TOO_LARGE', `the job's input takes ${bytes} bytes; a job's input may take at most ${o.maxJobInputBytes} (maxJobInputBytes)`, { field: 'input' });
  }
  const hash = requestHash(req);
  const idempotencyKey = ownedIdempotencyKey(req.owner, req.idempotencyKey);
  // A repeated idempotency key gets its job back even when the queue is full.
  const seen = idempotencyKey === undefined ? undefined : await o.backend.byIdempotencyKey(idempotencyKey);
  if (seen) return answerRepeat(o, seen, hash, reply);
  if ((await o.backend.queuedCount(req.model)) >= o.maxQueuedJobs) {
    throw errors.queueFull(`job queue for ${req.model}`, o.maxQueuedJobs, 'queued jobs', 5);
  }
  if (req.owner !== null && (await o.backend.queuedByOwner(req.owner)) >= o.maxQueuedJobsPerKey) {
    throw new EaselError('EASEL_TOO_MANY_JOBS', `the API key "${req.owner}" has ${o.maxQueuedJobsPerKey} queued jobs, the most one key may have (maxQueuedJobsPerKey); retry when some have started`, { retryAfterSeconds: 5 });
  }
  const { job, created } = await o.backend.submit({ ...req, idempotencyKey, input, requestHash: hash });
  if (!created) return answerRepeat(o, job, hash, reply);
  return reply.code(202).header('location', `/v1/jobs/${job.id}`).send(await describeQueued(o, job));
}

async function answerRepeat(o: JobRoutesOptions, seen: Job, hash: string, reply: FastifyReply): Promise<FastifyReply> {
  if (seen.requestHash !== null && seen.requestHash !== hash) {
    throw new EaselError('EASEL_IDEMPOTENCY_KEY_REUSED', `this Idempotency-Key was used for job ${seen.id} with a different request; use a new key for a new request`, { field: 'Idempotency-Key' });
  }
  return reply.code(200).header('location', `/v1/jobs/${seen.id}`).send(await describeQueued(o, seen));
}

const submitBody = strictObject({
  model: pathName.describe('a registered model'),
  version: pathName.optional(),
  input: jsonObject.describe('the model\'s request fields, e.g. {"prompt": "..."}'),
  priority: z.number({ error: 'priority must be an integer from -100 to 100 (higher runs first)' }).int().min(-100).max(100).optional(),
  webhook: z.string().max(2048).optional().describe('an http(s) URL that receives the job (public addresses, or hosts the operator allows)'),
  webhook_events_filter: z.array(z.enum(WEBHOOK_EVENTS)).max(WEBHOOK_EVENTS.length).optional(),
});

/** The most jobs one page of the list holds. */
const MAX_PAGE = 200;

const listQuery = strictObject({
  status: z.enum(JOB_STATUSES).optional(),
  model: pathName.optional(),
  limit: intQuery('limit', 1, MAX_PAGE).optional(),
  // Sequence numbers are exact integers: a longer one is no cursor of ours.
  cursor: z.string().regex(/^\d{1,15}$/, { error: 'cursor must be the next_cursor of a previous page' }).optional(),
});

const idParams = strictObject({ id: jobId });
const outputParams = strictObject({ id: jobId, n: z.string().regex(/^\d{1,6}$/, { error: 'n must be an output index: 0, 1, ...' }) });

/** The event id a reconnecting client saw last (SSE's Last-Event-ID header), if it sent one. */
function lastEventId(req: FastifyRequest): string | undefined {
  const value = req.headers['last-event-id'];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || !isEventId(value)) {
    throw new EaselError('EASEL_INVALID_PARAMETER', 'Last-Event-ID must be the id of an event this stream sent (digits, or digits-digits)', { field: 'Last-Event-ID' });
  }
  return value;
}

/** Follows a job; `end` is called after its final status. Returns the function that stops following. */
function followJob(o: JobRoutesOptions, jobId: string, send: (e: WorkEvent) => void, end: () => void, afterEventId?: string): () => void {
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    off();
    end();
  };
  const off = o.backend.follow(
    jobId,
    (e) => {
      if (stopped) return;
      send(e);
      if (isFinalEvent(e)) stop();
    },
    afterEventId,
  );
  return stop;
}

/** A job in the list: its view without the input. */
function listedJob(job: Job): Record<string, unknown> {
  const { input: _input, ...view } = publicJob(job);
  return view;
}

/** The job, when the asker may see it; otherwise the same 404 as for an id never issued. */
async function jobOr404(o: JobRoutesOptions, req: FastifyRequest, id: string): Promise<Job> {
  const job = await o.backend.get(id);
  if (!job || !mayRead(req, job)) throw errors.jobNotFound(id);
  return job;
}

/** Open event streams per client (an API key, else an address) on this node. */
class StreamCounts {
  readonly #open = new Map<string, number>();
  constructor(private readonly max: number) {}

  /** Counts a new stream of this client's; the function returned ends it. Throws when the client holds its most. */
  open(req: FastifyRequest): () => void {
    const client = req.apiKey ? `key:${req.apiKey.name}` : `ip:${req.ip}`;
    const n = this.#open.get(client) ?? 0;
    if (n >= this.max) {
      throw new EaselError('EASEL_TOO_MANY_STREAMS', `${req.apiKey ? `the API key "${req.apiKey.name}"` : 'this client'} holds ${n} open event streams, the most one client may (maxStreamsPerClient); close one first`, { retryAfterSeconds: 5 });
    }
    this.#open.set(client, n + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      const left = (this.#open.get(client) ?? 1) - 1;
      if (left > 0) this.#open.set(client, left);
      else this.#open.delete(client);
    };
  }
}

/** The request fields that take an image, and so a reference to a finished job's output. */
const IMAGE_FIELDS = ['image', 'mask_image'] as const;

/**
 * A finished job's output as an init image or mask: `{"job": "<id>", "output": 0}` in place of the
 * image's bytes (diffusers' "use this result", without a round trip through the client). Only a
 * job the caller may read; its output's bytes are read from the artifact store here, at
 * admission, so the queued request carries the image itself.
 */
export async function resolveJobOutputs(o: JobRoutesOptions, req: FastifyRequest, input: Record<string, unknown>): Promise<Record<string, unknown>> {
  let resolved = input;
  for (const field of IMAGE_FIELDS) {
    const ref = input[field];
    if (!ref || typeof ref !== 'object' || ref instanceof Uint8Array || Array.isArray(ref)) continue;
    const { job: id, output = 0, ...rest } = ref as Record<string, unknown>;
    if (typeof id !== 'string' || !Number.isInteger(output) || Object.keys(rest).length > 0) {
      throw invalidField(field, `${field} as a reference is {"job": "<job id>", "output": <index, default 0>}; got ${JSON.stringify(ref).slice(0, 200)}`);
    }
    const job = await o.backend.get(id);
    // Another key's job reads as one that does not exist.
    if (!job || !mayRead(req, job)) throw invalidField(field, `${field}: there is no job ${id.slice(0, 64)} (or it is another API key's)`);
    const stored = job.outputs[output as number];
    if (!stored) throw invalidField(field, `${field}: job ${job.id} has ${job.outputs.length} output(s) (status ${job.status}); there is no output ${String(output)}`);
    const data = await o.artifacts.get(stored.key);
    if (!data) throw invalidField(field, `${field}: output ${String(output)} of job ${job.id} has expired`);
    resolved = { ...resolved, [field]: data };
  }
  return resolved;
}

export async function jobRoutes(app: FastifyInstance, o: JobRoutesOptions): Promise<void> {
  const streams = new StreamCounts(o.maxStreamsPerClient);
  app.post('/v1/jobs', { schema: { summary: 'Submit a job: 202 with its id, queue position and estimate.', body: submitBody } }, async (req, reply) => {
    const b = req.body as z.infer<typeof submitBody>;
    const input = await resolveJobOutputs(o, req, b.input);
    return submitJob(o, { owner: ownerOf(req), model: b.model, version: b.version, input, priority: b.priority, webhook: b.webhook, webhookEvents: b.webhook_events_filter, idempotencyKey: idempotencyKey(req) }, reply);
  });

  app.get('/v1/jobs', { schema: { summary: 'List jobs, newest first.', querystring: listQuery } }, async (req) => {
    const q = req.query as z.infer<typeof listQuery>;
    const page = await o.backend.list({ status: q.status, model: q.model, limit: q.limit ?? 100, cursor: q.cursor, owner: req.apiKey ? req.apiKey.name : undefined, models: req.apiKey?.models });
    // Without inputs: a page is bounded by the number of jobs, not by what they were given (GET /v1/jobs/{id} has it).
    return { jobs: page.jobs.map((j) => listedJob(j)), next_cursor: page.nextCursor };
  });

  app.get('/v1/jobs/:id', { schema: { summary: 'A job: status, progress, outputs, error.', params: idParams } }, async (req: FastifyRequest<{ Params: { id: string } }>) => describeQueued(o, await jobOr404(o, req, req.params.id)));

  app.delete('/v1/jobs/:id', { schema: { summary: 'Cancel a job (queued: at once; running: at its next step).', params: idParams } }, async (req: FastifyRequest<{ Params: { id: string } }>) => {
    const job = await jobOr404(o, req, req.params.id);
    if (isTerminal(job.status)) throw new EaselError('EASEL_JOB_FINISHED', `job ${job.id} has already ${job.status === 'cancelled' ? 'been cancelled' : job.status}`);
    return publicJob((await o.backend.cancel(job.id)) ?? job);
  });

  app.get('/v1/jobs/:id/outputs/:n', { schema: { summary: 'One output of a finished job, as its bytes.', params: outputParams } }, async (req: FastifyRequest<{ Params: { id: string; n: string } }>, reply) => {
    const job = await jobOr404(o, req, req.params.id);
    const output = job.outputs[Number(req.params.n)];
    if (!output) throw new EaselError('EASEL_OUTPUT_NOT_FOUND', `job ${job.id} has ${job.outputs.length} output(s) (status ${job.status}); there is no output ${req.params.n}`);
    const data = await o.artifacts.get(output.key);
    if (!data) throw new EaselError('EASEL_OUTPUT_NOT_FOUND', `output ${req.params.n} of job ${job.id} has expired`);
    return reply.type(output.contentType).send(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });

  app.get('/v1/jobs/:id/events', { schema: { summary: 'Server-sent events: status, progress, previews, the final status. Each has an id; a client that reconnects with Last-Event-ID gets the events it missed.', params: idParams } }, async (req: FastifyRequest<{ Params: { id: string } }>, reply) => {
    const job = await jobOr404(o, req, req.params.id);
    const after = lastEventId(req);
    const release = streams.open(req);
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // A comment line now and then: proxies cut streams that stay silent (a job waiting in the queue).
    const heartbeat = setInterval(() => reply.raw.write(': heartbeat\n\n'), o.sseHeartbeatMs);
    const stop = followJob(
      o,
      job.id,
      (e) => streamWrite(reply.raw, `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`),
      () => {
        clearInterval(heartbeat);
        release();
        if (!reply.raw.writableEnded) reply.raw.end();
      },
      after,
    );
    req.raw.on('close', () => {
      stop();
      release();
    });
  });

  // The route reads nothing from clients: a message larger than a few KB closes the socket.
  await app.register(websocket, { options: { maxPayload: 4096 } });
  app.route<{ Params: { id: string } }>({
    method: 'GET',
    url: '/ws/jobs/:id',
    schema: { summary: 'The same events over a WebSocket (Upgrade: websocket).', params: idParams },
    // A plain HTTP GET gets an answer in the error shape, not an empty 404.
    handler: async () => {
      throw new EaselError('EASEL_UPGRADE_REQUIRED', 'this route speaks WebSocket: connect with "Connection: Upgrade" and "Upgrade: websocket", or follow the job over SSE at /v1/jobs/{id}/events');
    },
    wsHandler: (socket, req) => {
      void (async () => {
        const job = await o.backend.get(req.params.id);
        if (!job || !mayRead(req, job)) {
          socket.send(JSON.stringify({ event: 'error', data: { code: 'EASEL_JOB_NOT_FOUND', message: `no job ${req.params.id} (never submitted, or expired)` } }));
          socket.close(4404, 'job not found');
          return;
        }
        let release: () => void;
        try {
          release = streams.open(req);
        } catch (err) {
          const e = err as EaselError;
          socket.send(JSON.stringify({ event: 'error', data: { code: e.code, message: e.message } }));
          socket.close(4429, 'too many streams');
          return;
        }
        const stop = followJob(o, job.id, (e) => socket.send(JSON.stringify({ event: e.type, id: e.id, data: e.data })), () => socket.close(1000, 'job finished'));
        socket.on('close', () => {
          stop();
          release();
        });
      })().catch((err: unknown) => {
        req.log.error({ err }, 'following a job over a WebSocket failed');
        socket.close(1011, 'internal error');
      });
    },
  });
  methodNotAllowed(app, '/ws/jobs/:id', ['GET']);

  methodNotAllowed(app, '/v1/jobs', ['GET', 'POST']);
  methodNotAllowed(app, '/v1/jobs/:id', ['GET', 'DELETE']);
  methodNotAllowed(app, '/v1/jobs/:id/events', ['GET']);
  methodNotAllowed(app, '/v1/jobs/:id/outputs/:n', ['GET']);
}
