// The distributed job backend: BullMQ queues (one per model) on a shared Redis do the claiming,
// ordering, locking and stalled-job takeover; Easel's job records, listing index and queue
// depth live in plain Redis keys beside them; events cross nodes over Redis pub/sub.
// The only importer of the Redis client (ioredis) and of BullMQ.
//
// Keys (prefix P, default "easel"):
//   P:job:<id>          the job record (JSON)
//   P:jobs              ZSET seq → id, newest last (listing and cursors)
//   P:seq               the sequence counter
//   P:idem:<key>        idempotency key → id
//   P:queued:<model>    ZSET of queued ids by (priority, seq): positions
//   P:depth:<model>     LIST with one entry per queued job: its LLEN is the queue depth that
//                       KEDA's redis scaler reads (listName: P:depth:<model>)
//   P:expiry            ZSET expiresAt → id of finished jobs
//   P:bull:<model>:*    BullMQ's own keys
import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job as BullJob } from 'bullmq';
import { Redis } from 'ioredis';
import { decodeInput, encodeInput } from './input-codec.js';
import { JobEvents } from './job-events.js';
import { isTerminal, type Job, type JobBackend, type JobEvent, type JobFilter, type JobOutput, type JobProgress, type JobStatus, type NewJob } from './job.js';

export interface RedisJobBackendOptions {
  url: string;
  prefix?: string | undefined;
  jobTtlMs: number;
  /** A claimed job's lock; a node that stops renewing it (died) loses the job after this. */
  lockMs?: number | undefined;
  /** How often stalled jobs (expired locks) are looked for and queued again. */
  stalledCheckMs?: number | undefined;
}

interface StoredJob extends Omit<Job, 'input'> {
  readonly input: string;
  readonly seq: number;
}

type Message =
  | { kind: 'event'; jobId: string; event: WireEvent }
  | { kind: 'cancel'; jobId: string }
  | { kind: 'queued'; jobId: string };

type WireEvent =
  | { type: 'status'; job: StoredJob }
  | { type: 'progress'; jobId: string; progress: JobProgress }
  | { type: 'preview'; jobId: string; contentType: string; data: string };

const PRIORITY_SPAN = 2 ** 40;

function fromStored(s: StoredJob): Job {
  const { seq: _seq, input, ...rest } = s;
  // Records written before requestHash existed have none.
  return { ...rest, requestHash: rest.requestHash ?? null, input: decodeInput(input) };
}

export class RedisJobBackend extends JobEvents implements JobBackend {
  readonly #o: Required<Omit<RedisJobBackendOptions, 'prefix'>> & { prefix: string };
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #bullConnection: Redis;
  readonly #queues = new Map<string, Queue>();
  readonly #workers = new Map<string, Worker>();
  readonly #claimed = new Map<string, { bull: BullJob; token: string; renew: NodeJS.Timeout }>();
  readonly #ready: Promise<unknown>;
  #closing: Promise<void> | undefined;

  constructor(o: RedisJobBackendOptions) {
    super();
    const lockMs = o.lockMs ?? 30_000;
    this.#o = { url: o.url, prefix: o.prefix ?? 'easel', jobTtlMs: o.jobTtlMs, lockMs, stalledCheckMs: o.stalledCheckMs ?? Math.max(100, Math.floor(lockMs / 2)) };
    this.#redis = new Redis(o.url, { lazyConnect: false });
    this.#subscriber = new Redis(o.url);
    this.#bullConnection = new Redis(o.url, { maxRetriesPerRequest: null });
    this.#subscriber.on('message', (_channel: string, text: string) => this.#onMessage(JSON.parse(text) as Message));
    this.#ready = this.#subscriber.subscribe(this.#key('events'));
  }

  #key(...parts: string[]): string {
    return [this.#o.prefix, ...parts].join(':');
  }

  #onMessage(m: Message): void {
    if (m.kind === 'cancel') this.emitCancel(m.jobId);
    else if (m.kind === 'queued') void this.get(m.jobId).then((job) => job && this.emitQueued(job));
    else {
      const e = m.event;
      const local: JobEvent =
        e.type === 'status' ? { type: 'status', job: fromStored(e.job) } : e.type === 'progress' ? e : { type: 'preview', jobId: e.jobId, contentType: e.contentType, data: new Uint8Array(Buffer.from(e.data, 'base64')) };
      this.emitJob(m.jobId, local);
      if (local.type === 'status' && isTerminal(local.job.status)) this.emitFinished(local.job);
    }
  }

  async #publish(m: Message): Promise<void> {
    await this.#ready;
    await this.#redis.publish(this.#key('events'), JSON.stringify(m));
  }

  #queue(model: string): Queue {
    let q = this.#queues.get(model);
    if (!q) {
      q = new Queue(model, { connection: this.#bullConnection, prefix: this.#key('bull') });
      this.#queues.set(model, q);
    }
    return q;
  }

  #worker(model: string): Worker {
    let w = this.#workers.get(model);
    if (!w) {
      w = new Worker(model, null, {
        connection: this.#bullConnection,
        prefix: this.#key('bull'),
        autorun: false,
        lockDuration: this.#o.lockMs,
        stalledInterval: this.#o.stalledCheckMs,
        maxStalledCount: 5,
      });
      // A job whose node died went back to BullMQ's queue: mirror it in the record and the indexes.
      w.on('stalled', (jobId: string) => void this.#requeue(jobId));
      void w.startStalledCheckTimer();
      this.#workers.set(model, w);
    }
    return w;
  }

  async #read(id: string): Promise<StoredJob | undefined> {
    const text = await this.#redis.get(this.#key('job', id));
    return text === null ? undefined : (JSON.parse(text) as StoredJob);
  }

  async #write(job: StoredJob): Promise<void> {
    await this.#redis.set(this.#key('job', job.id), JSON.stringify(job));
  }

  async #emitStatus(job: StoredJob): Promise<Job> {
    await this.#publish({ kind: 'event', jobId: job.id, event: { type: 'status', job } });
    if (job.status === 'queued') await this.#publish({ kind: 'queued', jobId: job.id });
    return fromStored(job);
  }

  #score(job: StoredJob): number {
    return (100 - job.priority) * PRIORITY_SPAN + job.seq;
  }

  async #index(job: StoredJob): Promise<void> {
    await this.#redis.multi().zadd(this.#key('queued', job.model), this.#score(job), job.id).lpush(this.#key('depth', job.model), job.id).exec();
  }

  async #unindex(job: StoredJob): Promise<void> {
    await this.#redis.multi().zrem(this.#key('queued', job.model), job.id).lrem(this.#key('depth', job.model), 1, job.id).exec();
  }

  /** Says that this node serves these models, for `ttlMs` (renew it sooner). */
  async announce(models: readonly string[], ttlMs: number): Promise<void> {
    if (models.length === 0) return;
    const until = Date.now() + ttlMs;
    await this.#redis.zadd(this.#key('models'), ...models.flatMap((m) => [until, m]));
  }

  /** Models some node has announced and not let lapse. */
  async announcedModels(): Promise<string[]> {
    return this.#redis.zrangebyscore(this.#key('models'), String(Date.now()), '+inf');
  }

  async byIdempotencyKey(key: string): Promise<Job | undefined> {
    const id = await this.#redis.get(this.#key('idem', key));
    return id === null ? undefined : this.get(id);
  }

  async submit(n: NewJob): Promise<{ job: Job; created: boolean }> {
    const id = randomUUID();
    if (n.idempotencyKey !== undefined) {
      const taken = await this.#redis.set(this.#key('idem', n.idempotencyKey), id, 'NX');
      if (taken === null) {
        const seen = await this.byIdempotencyKey(n.idempotencyKey);
        if (seen) return { job: seen, created: false };
      }
    }
    const seq = await this.#redis.incr(this.#key('seq'));
    const job: StoredJob = {
      id, seq, model: n.model, version: n.version ?? null, input: encodeInput(n.input), priority: n.priority ?? 0, status: 'queued', progress: null,
      attempts: 0, error: null, outputs: [], createdAt: Date.now(), startedAt: null, completedAt: null, expiresAt: null, cancelRequested: false,
      webhook: n.webhook ?? null, webhookEvents: n.webhookEvents ? [...n.webhookEvents] : null, requestHash: n.requestHash ?? null,
    };
    await this.#write(job);
    await this.#redis.zadd(this.#key('jobs'), seq, id);
    await this.#index(job);
    // BullMQ: 1 is its highest priority; every job is prioritized so that ours order them all.
    await this.#queue(n.model).add('job', { id }, { jobId: id, priority: 101 - job.priority, removeOnComplete: true, removeOnFail: true });
    return { job: await this.#emitStatus(job), created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    const s = await this.#read(id);
    return s && fromStored(s);
  }

  async list(f: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }> {
    const out: StoredJob[] = [];
    let max = f.cursor === undefined ? '+inf' : `(${f.cursor}`;
    for (;;) {
      const ids = await this.#redis.zrevrangebyscore(this.#key('jobs'), max, '-inf', 'LIMIT', 0, 200);
      if (ids.length === 0) break;
      const texts = await this.#redis.mget(ids.map((id) => this.#key('job', id)));
      for (const text of texts) {
        if (text === null) continue;
        const job = JSON.parse(text) as StoredJob;
        if ((f.status && job.status !== f.status) || (f.model && job.model !== f.model)) continue;
        out.push(job);
        if (out.length > f.limit) break;
      }
      if (out.length > f.limit) break;
      const last = await this.#redis.zscore(this.#key('jobs'), ids[ids.length - 1]!);
      max = `(${last}`;
    }
    const page = out.slice(0, f.limit);
    return { jobs: page.map(fromStored), nextCursor: out.length > f.limit ? String(page[page.length - 1]!.seq) : null };
  }

  async cancel(id: string): Promise<Job | undefined> {
    const job = await this.#read(id);
    if (!job) return undefined;
    if (job.status === 'queued') {
      await this.#queue(job.model).remove(id).catch(() => 0);
      return this.#finish(job, 'cancelled', { code: 'EASEL_CANCELLED', message: 'cancelled before it started' });
    }
    if (job.status === 'running' && !job.cancelRequested) {
      const asked: StoredJob = { ...job, cancelRequested: true };
      await this.#write(asked);
      await this.#publish({ kind: 'cancel', jobId: id });
      return fromStored(asked);
    }
    return fromStored(job);
  }

  async position(id: string): Promise<number | null> {
    const job = await this.#read(id);
    if (!job || job.status !== 'queued') return null;
    return this.#redis.zrank(this.#key('queued', job.model), id);
  }

  async queuedCount(model: string): Promise<number> {
    return this.#redis.zcard(this.#key('queued', model));
  }

  async claim(models: readonly string[]): Promise<Job | undefined> {
    // Each asked model gets its BullMQ worker, whose stalled checks take over dead nodes' jobs.
    for (const model of models) this.#worker(model);
    // The model whose best queued job ranks first; BullMQ hands out its queue's best job.
    let best: { model: string; score: number } | undefined;
    for (const model of models) {
      const top = await this.#redis.zrange(this.#key('queued', model), '0', '0', 'WITHSCORES');
      const score = top[1] === undefined ? undefined : Number(top[1]);
      if (score !== undefined && (!best || score < best.score)) best = { model, score };
    }
    if (!best) return undefined;
    const token = randomUUID();
    const bull = (await this.#worker(best.model).getNextJob(token, { block: false })) as BullJob | undefined;
    if (!bull?.id) return undefined;
    const job = await this.#read(bull.id);
    if (!job || job.status === 'cancelled' || job.status === 'succeeded' || job.status === 'failed') {
      await bull.moveToCompleted(null, token, false).catch(() => undefined);
      return undefined;
    }
    const renew = setInterval(() => void bull.extendLock(token, this.#o.lockMs).catch(() => undefined), Math.max(50, Math.floor(this.#o.lockMs / 3)));
    renew.unref();
    this.#claimed.set(bull.id, { bull, token, renew });
    const running: StoredJob = { ...job, status: 'running', attempts: job.attempts + 1, startedAt: Date.now(), progress: null };
    await this.#write(running);
    await this.#unindex(running);
    return this.#emitStatus(running);
  }

  async progress(id: string, p: JobProgress, preview?: { contentType: string; data: Uint8Array }): Promise<void> {
    const job = await this.#read(id);
    if (job?.status === 'running') await this.#write({ ...job, progress: p });
    await this.#publish({ kind: 'event', jobId: id, event: { type: 'progress', jobId: id, progress: p } });
    if (preview) await this.#publish({ kind: 'event', jobId: id, event: { type: 'preview', jobId: id, contentType: preview.contentType, data: Buffer.from(preview.data).toString('base64') } });
  }

  async #finish(job: StoredJob, status: JobStatus, error: { code: string; message: string } | null, outputs: readonly JobOutput[] = []): Promise<Job> {
    if (job.status !== 'queued' && job.status !== 'running') return fromStored(job);
    const now = Date.now();
    const done: StoredJob = { ...job, status, error, outputs: [...outputs], completedAt: now, expiresAt: now + this.#o.jobTtlMs };
    await this.#write(done);
    await this.#unindex(done);
    await this.#redis.zadd(this.#key('expiry'), done.expiresAt!, done.id);
    return this.#emitStatus(done);
  }

  async #settle(id: string, settle: (bull: BullJob, token: string) => Promise<unknown>): Promise<void> {
    const claimed = this.#claimed.get(id);
    if (!claimed) return;
    clearInterval(claimed.renew);
    this.#claimed.delete(id);
    await settle(claimed.bull, claimed.token).catch(() => undefined);
  }

  async complete(id: string, outputs: readonly JobOutput[]): Promise<Job | undefined> {
    await this.#settle(id, (bull, token) => bull.moveToCompleted(null, token, false));
    const job = await this.#read(id);
    return job && this.#finish(job, 'succeeded', null, outputs);
  }

  async fail(id: string, error: { code: string; message: string }, status: 'failed' | 'cancelled' = 'failed'): Promise<Job | undefined> {
    await this.#settle(id, (bull, token) => bull.moveToFailed(new Error(error.message), token, false));
    const job = await this.#read(id);
    return job && this.#finish(job, status, error);
  }

  async release(id: string): Promise<void> {
    await this.#settle(id, (bull, token) => bull.moveToWait(token));
    await this.#requeue(id);
  }

  /** The record side of a job going back to the queue (released, or taken from a dead node). */
  async #requeue(id: string): Promise<void> {
    const job = await this.#read(id);
    if (!job || job.status !== 'running') return;
    const queued: StoredJob = { ...job, status: 'queued', progress: null };
    await this.#write(queued);
    await this.#index(queued);
    await this.#emitStatus(queued);
  }

  async expire(now: number): Promise<Job[]> {
    const ids = await this.#redis.zrangebyscore(this.#key('expiry'), '-inf', String(now));
    const expired: Job[] = [];
    for (const id of ids) {
      const job = await this.#read(id);
      await this.#redis.multi().del(this.#key('job', id)).zrem(this.#key('jobs'), id).zrem(this.#key('expiry'), id).exec();
      if (job) expired.push(fromStored(job));
    }
    return expired;
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#closeInOrder());
  }

  async #closeInOrder(): Promise<void> {
    for (const claimed of this.#claimed.values()) clearInterval(claimed.renew);
    this.#claimed.clear();
    this.removeAllListeners();
    for (const w of this.#workers.values()) await w.close().catch(() => undefined);
    for (const q of this.#queues.values()) await q.close().catch(() => undefined);
    for (const c of [this.#subscriber, this.#bullConnection, this.#redis]) c.disconnect();
  }
}
