// The distributed work queue: BullMQ queues (one per model) on a shared Redis do the claiming,
// ordering, locking and stalled-job takeover; the job record is the one truth about a job's
// state. Every state change is one Lua script that checks the record's revision, writes the
// record, its indexes and the queue depth, appends the event to the job's stream and publishes
// it: no copies that a crash can leave disagreeing. BullMQ's own state follows the record (a
// claim whose record is finished is dropped). The only importer of ioredis and of BullMQ.
//
// Keys (prefix P, default "easel"):
//   P:job:<id>          HASH {rev, data}: the job record (JSON) and its revision
//   P:events:<id>       STREAM of the job's events (durable jobs): SSE resumes from it
//   P:result:<id>       a synchronous prediction's result bytes, until its API node takes them
//   P:jobs              ZSET seq → id of durable jobs, newest last (listing and cursors)
//   P:seq               the sequence counter
//   P:idem:<key>        idempotency key → id
//   P:queued:<model>    ZSET of queued durable ids by (priority, seq): positions
//   P:owned:<owner>     ZSET of an API key's queued durable ids (its bound on queued jobs)
//   P:waiting:<model>   ZSET of queued synchronous predictions (their lane's length limit)
//   P:depth:<model>     LIST with one entry per unit of work not yet ended (both lanes, queued or
//                       running): its LLEN is the depth KEDA's redis scaler reads
//                       (listName: P:depth:<model>, deploy/kubernetes/workers)
//   P:expiry            ZSET expiresAt → id of finished jobs
//   P:events            the pub/sub channel: events, cancel requests
//   P:bull:<model>[~high|~low]:*  BullMQ's own keys: a queue per model and priority class (pools)
import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job as BullJob } from 'bullmq';
import { Redis } from 'ioredis';
import { decodeInput, encodeInput } from './input-codec.js';
import { JobEvents } from './job-events.js';
import { isTerminal, PRIORITY_CLASSES, priorityClass, type ClaimPolicy, type Job, type JobBackend, type PriorityClass, type JobFilter, type JobOutput, type JobProgress, type JobStatus, type NewJob, type Payload, type JobError, type TextChunk } from './job.js';
import { eventStatus, isFinalEvent, progressEvents, statusEvent, type NewWorkEvent, type WorkEvent } from './work-event.js';

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

const PRIORITY_SPAN = 2 ** 40;

/** Whether a stored job passes a list's filter. */
function matches(job: StoredJob, f: JobFilter): boolean {
  if (f.status && job.status !== f.status) return false;
  if (f.model && job.model !== f.model) return false;
  if (f.models && !f.models.includes(job.model)) return false;
  return f.owner === undefined || (job.owner ?? null) === f.owner;
}

/** A model's BullMQ queue for a priority class: a pool that does not take a class never meets its work. */
const bullQueueName = (model: string, cls: PriorityClass): string => (cls === 'normal' ? model : `${model}~${cls}`);

/** Each class's scores in a lane's ZSET ((100 - priority) × span + seq): [from, below]. */
const CLASS_SCORES: ReadonlyMap<PriorityClass, [number, number]> = new Map([
  ['high', [0, 100 * PRIORITY_SPAN]],
  ['normal', [100 * PRIORITY_SPAN, 101 * PRIORITY_SPAN]],
  ['low', [101 * PRIORITY_SPAN, 201 * PRIORITY_SPAN]],
]);
/** How long a finished synchronous prediction's record and result wait for their API node. */
const KEEP_PREDICTION_MS = 60_000;
/** A job's stream keeps about this many events (previews included). */
const EVENTS_KEPT = 5_000;

function fromStored(s: StoredJob): Job {
  const { seq: _seq, input, ...rest } = s;
  // Records written before timings (or owners) existed have none.
  return { ...rest, input: decodeInput(input), timings: rest.timings ?? null, owner: rest.owner ?? null };
}

/**
 * One state change, applied atomically: the record is replaced only if its revision is still
 * the one read (else nothing happens and the caller reads again), then each op runs. Ops:
 * zadd key score member | zrem key member | lpush key value | lrem key value | event stream
 * channel jobId json (XADD when stream is not empty, then PUBLISH "ev|jobId|eventId|json") |
 * publish channel message | setpx key value ms | pexpire key ms.
 */
const APPLY_SCRIPT = `
local rev = redis.call('HGET', KEYS[1], 'rev')
if ARGV[1] == '' then
  if rev then return -1 end
elseif rev ~= ARGV[1] then
  return -1
end
local newrev = (tonumber(rev) or 0) + 1
redis.call('HSET', KEYS[1], 'rev', newrev, 'data', ARGV[2])
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'zadd' then redis.call('ZADD', ARGV[i+1], ARGV[i+2], ARGV[i+3]); i = i + 4
  elseif op == 'zrem' then redis.call('ZREM', ARGV[i+1], ARGV[i+2]); i = i + 3
  elseif op == 'lpush' then redis.call('LPUSH', ARGV[i+1], ARGV[i+2]); i = i + 3
  elseif op == 'lrem' then redis.call('LREM', ARGV[i+1], 1, ARGV[i+2]); i = i + 3
  elseif op == 'event' then
    local id = '0'
    if ARGV[i+1] ~= '' then id = redis.call('XADD', ARGV[i+1], 'MAXLEN', '~', ${EVENTS_KEPT}, '*', 'e', ARGV[i+4]) end
    redis.call('PUBLISH', ARGV[i+2], 'ev|' .. ARGV[i+3] .. '|' .. id .. '|' .. ARGV[i+4]); i = i + 5
  elseif op == 'publish' then redis.call('PUBLISH', ARGV[i+1], ARGV[i+2]); i = i + 3
  elseif op == 'setpx' then redis.call('SET', ARGV[i+1], ARGV[i+2], 'PX', ARGV[i+3]); i = i + 4
  elseif op == 'pexpire' then redis.call('PEXPIRE', ARGV[i+1], ARGV[i+2]); i = i + 3
  else return redis.error_reply('unknown op ' .. op) end
end
return newrev
`;

type Op = (string | number | Buffer)[];

interface ApplyingRedis extends Redis {
  easelApply(key: string, rev: string, data: string, ...ops: (string | number | Buffer)[]): Promise<number>;
}

export class RedisJobBackend extends JobEvents implements JobBackend {
  readonly #o: Required<Omit<RedisJobBackendOptions, 'prefix'>> & { prefix: string };
  readonly #redis: ApplyingRedis;
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
    this.#redis = new Redis(o.url, { lazyConnect: false }) as ApplyingRedis;
    this.#redis.defineCommand('easelApply', { numberOfKeys: 1, lua: APPLY_SCRIPT });
    this.#subscriber = new Redis(o.url);
    this.#bullConnection = new Redis(o.url, { maxRetriesPerRequest: null });
    this.#subscriber.on('message', (_channel: string, text: string) => this.#onMessage(text));
    this.#ready = this.#subscriber.subscribe(this.#key('events'));
  }

  #key(...parts: string[]): string {
    return [this.#o.prefix, ...parts].join(':');
  }

  #onMessage(text: string): void {
    const [kind, jobId = '', eventId = '0'] = text.split('|', 3);
    if (kind === 'cancel') {
      this.emitCancel(jobId);
      return;
    }
    if (kind !== 'ev') return;
    const json = text.slice(kind.length + jobId.length + eventId.length + 3);
    const e = JSON.parse(json) as NewWorkEvent;
    this.emitJob(jobId, { id: eventId, ...e });
    const status = eventStatus(e);
    // Local listeners of queue-wide happenings get the record (the event carries the public view).
    if (status === 'queued' || isFinalEvent(e)) {
      void this.get(jobId).then((job) => {
        if (!job) return;
        if (job.status === 'queued') this.emitQueued(job);
        else if (isTerminal(job.status)) this.emitFinished(job);
      });
    }
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
      // A job whose node died went back to BullMQ's queue: so does its record.
      w.on('stalled', (jobId: string) => void this.#requeue(jobId));
      void w.startStalledCheckTimer();
      this.#workers.set(model, w);
    }
    return w;
  }

  async #read(id: string): Promise<{ rev: string; job: StoredJob } | undefined> {
    const [rev, data] = await this.#redis.hmget(this.#key('job', id), 'rev', 'data');
    return rev == null || data == null ? undefined : { rev, job: JSON.parse(data) as StoredJob };
  }

  // The ops of one state change.
  #event(job: StoredJob, e: NewWorkEvent): Op {
    return ['event', job.durable ? this.#key('events', job.id) : '', this.#key('events'), job.id, JSON.stringify(e)];
  }

  #status(job: StoredJob): Op {
    return this.#event(job, statusEvent(fromStored(job)));
  }

  /** In its lane's queue (by priority, then arrival): submitted, or handed back. */
  #enqueueOps(job: StoredJob): Op[] {
    const score = (100 - job.priority) * PRIORITY_SPAN + job.seq;
    return [['zadd', this.#key(job.durable ? 'queued' : 'waiting', job.model), score, job.id], ...this.#ownerOps(job, 'zadd', score)];
  }

  #dequeueOps(job: StoredJob): Op[] {
    return [['zrem', this.#key(job.durable ? 'queued' : 'waiting', job.model), job.id], ...this.#ownerOps(job, 'zrem')];
  }

  /** An owner's queued durable jobs, every model (its bound on queued jobs). */
  #ownerOps(job: StoredJob, op: 'zadd' | 'zrem', score = 0): Op[] {
    if (!job.durable || !job.owner) return [];
    return [op === 'zadd' ? ['zadd', this.#key('owned', job.owner), score, job.id] : ['zrem', this.#key('owned', job.owner), job.id]];
  }

  async queuedByOwner(owner: string): Promise<number> {
    return this.#redis.zcard(this.#key('owned', owner));
  }

  /**
   * The depth list KEDA reads holds a unit of work from submission to its end, queued or
   * running: a node killed mid-job leaves its work counted (else the queue would read empty and
   * KEDA scale to zero with that work stranded), and busy workers are not scaled away.
   */
  #depthOps(job: StoredJob, op: 'lpush' | 'lrem'): Op[] {
    return [[op, this.#key('depth', job.model), job.id]];
  }

  /**
   * Reads the record, asks `change` for the next one and its ops, and applies both atomically;
   * reads again if another node changed it meanwhile. Returns the record as it is after.
   */
  async #update(id: string, change: (job: StoredJob) => { job: StoredJob; ops: Op[] } | undefined): Promise<{ job: StoredJob; changed: boolean } | undefined> {
    for (;;) {
      const current = await this.#read(id);
      if (!current) return undefined;
      const next = change(current.job);
      if (!next) return { job: current.job, changed: false };
      const rev = await this.#redis.easelApply(this.#key('job', id), current.rev, JSON.stringify(next.job), ...next.ops.flat());
      if (rev !== -1) return { job: next.job, changed: true };
    }
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
    // Listening before anything is published: this node's listeners hear of its own work.
    await this.#ready;
    const id = randomUUID();
    const durable = n.durable ?? true;
    if (durable && n.idempotencyKey !== undefined) {
      const taken = await this.#redis.set(this.#key('idem', n.idempotencyKey), id, 'NX');
      if (taken === null) {
        const seen = await this.byIdempotencyKey(n.idempotencyKey);
        if (seen) return { job: seen, created: false };
      }
    }
    const seq = await this.#redis.incr(this.#key('seq'));
    const job: StoredJob = {
      id, seq, durable, model: n.model, version: n.version ?? null, input: encodeInput(n.input), priority: n.priority ?? 0, status: 'queued', progress: null,
      attempts: 0, error: null, outputs: [], createdAt: Date.now(), startedAt: null, completedAt: null, expiresAt: null, cancelRequested: false,
      webhook: n.webhook ?? null, webhookEvents: n.webhookEvents ? [...n.webhookEvents] : null, requestHash: n.requestHash ?? null, owner: n.owner ?? null, timings: null,
      accept: n.accept ?? null, deadline: n.deadline ?? null,
    };
    // BullMQ first: a claim that finds no record yet waits for it (see claim), while a record
    // without its BullMQ job could never be claimed. BullMQ: 1 is its highest priority.
    await this.#queue(bullQueueName(n.model, priorityClass(job.priority))).add('job', { id }, { jobId: id, priority: 101 - job.priority, removeOnComplete: true, removeOnFail: true });
    const ops: Op[] = [...this.#enqueueOps(job), ...this.#depthOps(job, 'lpush'), this.#status(job)];
    if (durable) ops.unshift(['zadd', this.#key('jobs'), seq, id]);
    await this.#redis.easelApply(this.#key('job', id), '', JSON.stringify(job), ...ops.flat());
    return { job: fromStored(job), created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    const s = await this.#read(id);
    return s && fromStored(s.job);
  }

  async list(f: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }> {
    const out: StoredJob[] = [];
    let max = f.cursor === undefined ? '+inf' : `(${f.cursor}`;
    for (;;) {
      const ids = await this.#redis.zrevrangebyscore(this.#key('jobs'), max, '-inf', 'LIMIT', 0, 200);
      if (ids.length === 0) break;
      const pipeline = this.#redis.pipeline();
      for (const id of ids) pipeline.hget(this.#key('job', id), 'data');
      for (const [, text] of (await pipeline.exec()) ?? []) {
        if (typeof text !== 'string') continue;
        const job = JSON.parse(text) as StoredJob;
        if (!matches(job, f)) continue;
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

  async withdraw(id: string, error: JobError): Promise<boolean> {
    const s = await this.#read(id);
    if (s?.job.status !== 'queued') return false;
    // BullMQ refuses to remove a job a worker holds (locked): then it was claimed, not withdrawn.
    const removed = await this.#queue(bullQueueName(s.job.model, priorityClass(s.job.priority))).remove(id).catch(() => 0);
    if (removed !== 1) return false;
    return (await this.#finish(id, 'cancelled', error)) !== undefined;
  }

  async cancel(id: string): Promise<Job | undefined> {
    if (await this.withdraw(id, { code: 'EASEL_CANCELLED', message: 'cancelled before it started' })) return this.get(id);
    const asked = await this.#update(id, (job) =>
      job.status === 'running' && !job.cancelRequested ? { job: { ...job, cancelRequested: true }, ops: [['publish', this.#key('events'), `cancel|${id}`]] } : undefined,
    );
    return asked && fromStored(asked.job);
  }

  async position(id: string): Promise<number | null> {
    const s = await this.#read(id);
    if (!s || s.job.status !== 'queued') return null;
    return this.#redis.zrank(this.#key(s.job.durable ? 'queued' : 'waiting', s.job.model), id);
  }

  async queuedCount(model: string, durable = true): Promise<number> {
    return this.#redis.zcard(this.#key(durable ? 'queued' : 'waiting', model));
  }

  async claim(models: readonly string[], policy?: ClaimPolicy): Promise<Job | undefined> {
    // Each asked model gets its BullMQ workers, whose stalled checks take over dead nodes' jobs.
    for (const model of models) for (const cls of PRIORITY_CLASSES) this.#worker(bullQueueName(model, cls));
    // The model and class whose best queued work this pool takes ranks first (either lane);
    // BullMQ hands out that queue's best.
    let best: { model: string; cls: PriorityClass; score: number } | undefined;
    for (const model of models) {
      for (const lane of ['queued', 'waiting']) {
        const found = await this.#bestTaken(this.#key(lane, model), policy);
        if (found && (!best || found.score < best.score)) best = { model, ...found };
      }
    }
    if (!best) return undefined;
    const token = randomUUID();
    const bull = (await this.#worker(bullQueueName(best.model, best.cls)).getNextJob(token, { block: false })) as BullJob | undefined;
    if (!bull?.id) return undefined;
    const id = bull.id;
    const now = Date.now();
    let expired = false;
    let notYet = false;
    const claimed = await this.#update(id, (job) => {
      if (job.status !== 'queued' && job.status !== 'running') return undefined;
      if (job.deadline !== null && job.deadline <= now) {
        expired = true;
        return undefined;
      }
      // BullMQ's best of the class may be a younger job than the one that qualified: not yet.
      if (policy && !policy.takes(priorityClass(job.priority), now - job.createdAt)) {
        notYet = true;
        return undefined;
      }
      const running: StoredJob = { ...job, status: 'running', attempts: job.attempts + 1, startedAt: now, progress: null };
      return { job: running, ops: [...this.#dequeueOps(job), this.#status(running)] };
    });
    if (!claimed) {
      // Submitted this instant (its record follows its BullMQ job), or its submitter died between.
      const young = now - bull.timestamp < 10_000;
      await (young ? bull.moveToDelayed(now + 100, token) : bull.moveToCompleted(null, token, false)).catch(() => undefined);
      return undefined;
    }
    if (!claimed.changed && notYet) {
      await bull.moveToWait(token).catch(() => undefined);
      return undefined;
    }
    if (!claimed.changed) {
      // Finished meanwhile (cancelled), or its client stopped waiting: BullMQ lets it go.
      await bull.moveToCompleted(null, token, false).catch(() => undefined);
      if (expired) await this.#finish(id, 'failed', { code: 'EASEL_TIMEOUT', message: 'no worker took the request before its response timeout' });
      return undefined;
    }
    const renew = setInterval(() => void bull.extendLock(token, this.#o.lockMs).catch(() => undefined), Math.max(50, Math.floor(this.#o.lockMs / 3)));
    renew.unref();
    this.#claimed.set(id, { bull, token, renew });
    return fromStored(claimed.job);
  }

  /** The best entry of a lane's ZSET that the policy takes now (a class it takes after a wait: once that job has waited). */
  async #bestTaken(lane: string, policy: ClaimPolicy | undefined): Promise<{ cls: PriorityClass; score: number } | undefined> {
    if (!policy) {
      // Every class taken: the lane's best, one read (a claim is on every request's path).
      const [, score] = await this.#redis.zrange(lane, '0', '0', 'WITHSCORES');
      return score === undefined ? undefined : { cls: priorityClass(100 - Math.floor(Number(score) / PRIORITY_SPAN)), score: Number(score) };
    }
    const now = Date.now();
    for (const cls of PRIORITY_CLASSES) {
      if (!policy.takes(cls, Number.POSITIVE_INFINITY)) continue;
      const [min, max] = CLASS_SCORES.get(cls)!;
      const [id, score] = await this.#redis.zrangebyscore(lane, min, `(${max}`, 'WITHSCORES', 'LIMIT', 0, 1);
      if (id === undefined || score === undefined) continue;
      if (!policy.takes(cls, 0)) {
        const createdAt = (await this.#read(id))?.job.createdAt;
        if (createdAt === undefined || !policy.takes(cls, now - createdAt)) continue;
      }
      // Classes in priority order: the first found ranks first.
      return { cls, score: Number(score) };
    }
    return undefined;
  }

  async progress(id: string, p: JobProgress, preview?: { contentType: string; data: Uint8Array }, text?: TextChunk): Promise<void> {
    // Only a running job takes progress: a late report never overwrites a finished record.
    await this.#update(id, (job) => {
      if (job.status !== 'running') return undefined;
      const next: StoredJob = { ...job, progress: p };
      return { job: next, ops: progressEvents(p, preview, text).map((e) => this.#event(next, e)) };
    });
  }

  async retrying(id: string): Promise<Job | undefined> {
    const r = await this.#update(id, (job) => {
      if (job.status !== 'running') return undefined;
      const next: StoredJob = { ...job, attempts: job.attempts + 1, progress: null };
      return { job: next, ops: [this.#status(next)] };
    });
    return r?.changed ? fromStored(r.job) : undefined;
  }

  async #finish(id: string, status: JobStatus, error: JobError | null, outputs: readonly JobOutput[] = [], result?: Payload, timings?: Readonly<Record<string, number>>): Promise<Job | undefined> {
    const now = Date.now();
    const done = await this.#update(id, (job) => {
      if (job.status !== 'queued' && job.status !== 'running') return undefined;
      const ttl = job.durable ? this.#o.jobTtlMs : KEEP_PREDICTION_MS;
      // A synchronous prediction's result: its bytes, then each of its parts (images) under keys of their own.
      const resultKey = this.#key('result', id);
      const pieces = result ? [result, ...(result.parts ?? [])].map((p, n) => ({ key: n === 0 ? resultKey : `${resultKey}:${n}`, payload: p })) : [];
      const stored = result ? pieces.map(({ key, payload: p }) => ({ key, contentType: p.contentType, bytes: p.data.byteLength })) : [...outputs];
      const next: StoredJob = { ...job, status, error, outputs: stored, completedAt: now, expiresAt: now + ttl, timings: timings ? { ...timings } : null };
      const ops: Op[] = [...this.#dequeueOps(job), ...this.#depthOps(job, 'lrem'), ['zadd', this.#key('expiry'), now + ttl, id], this.#status(next)];
      if (job.durable) ops.push(['pexpire', this.#key('events', id), ttl]);
      for (const { key, payload: p } of pieces) ops.push(['setpx', key, Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength), ttl]);
      return { job: next, ops };
    });
    return done && fromStored(done.job);
  }

  async #settle(id: string, settle: (bull: BullJob, token: string) => Promise<unknown>): Promise<void> {
    const claimed = this.#claimed.get(id);
    if (!claimed) return;
    clearInterval(claimed.renew);
    this.#claimed.delete(id);
    await settle(claimed.bull, claimed.token).catch(() => undefined);
  }

  async complete(id: string, outputs: readonly JobOutput[], result?: Payload, timings?: Readonly<Record<string, number>>): Promise<Job | undefined> {
    // The record first: it is the truth; BullMQ's copy is let go after (a crash between leaves
    // a BullMQ job whose claim finds the record finished and drops it).
    const job = await this.#finish(id, 'succeeded', null, outputs, result, timings);
    await this.#settle(id, (bull, token) => bull.moveToCompleted(null, token, false));
    return job;
  }

  async result(id: string): Promise<Payload | undefined> {
    const job = await this.get(id);
    if (!job || job.durable || job.status !== 'succeeded' || job.outputs.length === 0) return undefined;
    const pieces: Payload[] = [];
    for (const output of job.outputs) {
      const data = await this.#redis.getdelBuffer(output.key);
      if (data === null) return undefined;
      pieces.push({ contentType: output.contentType, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    }
    const [first, ...parts] = pieces;
    return parts.length > 0 ? { ...first!, parts } : first;
  }

  async fail(id: string, error: JobError, status: 'failed' | 'cancelled' = 'failed'): Promise<Job | undefined> {
    const job = await this.#finish(id, status, error);
    await this.#settle(id, (bull, token) => bull.moveToFailed(new Error(error.message), token, false));
    return job;
  }

  async release(id: string): Promise<void> {
    await this.#settle(id, (bull, token) => bull.moveToWait(token));
    await this.#requeue(id);
  }

  /** The record side of a job going back to the queue (released, or taken from a dead node). */
  async #requeue(id: string): Promise<void> {
    await this.#update(id, (job) => {
      if (job.status !== 'running') return undefined;
      const queued: StoredJob = { ...job, status: 'queued', progress: null };
      return { job: queued, ops: [...this.#enqueueOps(queued), this.#status(queued)] };
    });
  }

  protected async history(id: string, afterEventId: string): Promise<WorkEvent[]> {
    const entries = await this.#redis.xrange(this.#key('events', id), `(${afterEventId.includes('-') ? afterEventId : `${afterEventId}-0`}`, '+');
    return entries.map(([eventId, fields]) => ({ id: eventId, ...(JSON.parse(fields[1] ?? '{}') as NewWorkEvent) }));
  }

  protected async lastEventId(id: string): Promise<string> {
    const [last] = await this.#redis.xrevrange(this.#key('events', id), '+', '-', 'COUNT', 1);
    return last?.[0] ?? '0';
  }

  async expire(now: number): Promise<Job[]> {
    const ids = await this.#redis.zrangebyscore(this.#key('expiry'), '-inf', String(now));
    const expired: Job[] = [];
    for (const id of ids) {
      const s = await this.#read(id);
      // A synchronous prediction's result keys (its parts too) go with it; a job's outputs are artifacts.
      const results = s && !s.job.durable ? s.job.outputs.map((o) => o.key) : [];
      await this.#redis.multi().del(this.#key('job', id), this.#key('events', id), this.#key('result', id), ...results).zrem(this.#key('jobs'), id).zrem(this.#key('expiry'), id).exec();
      if (s?.job.durable) expired.push(fromStored(s.job));
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
