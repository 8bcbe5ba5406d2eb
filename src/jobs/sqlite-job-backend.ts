// The embedded work queue: durable jobs in a SQLite file in the data directory (better-sqlite3),
// synchronous predictions in a memory lane beside them, events on an in-process emitter. Jobs
// running when the process died are queued again on open.
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { decodeInput, encodeInput } from './input-codec.js';
import { JobEvents } from './job-events.js';
import { isTerminal, type ClaimPolicy, type Job, type JobBackend, type JobFilter, type JobOutput, type JobProgress, type JobStatus, type NewJob, type Payload, type JobError, type TextChunk } from './job.js';
import { MemoryLane } from './memory-lane.js';
import { progressEvents, statusEvent, type NewWorkEvent, type WorkEvent } from './work-event.js';

interface Row {
  seq: number;
  id: string;
  model: string;
  version: string | null;
  input: string;
  priority: number;
  status: JobStatus;
  step: number | null;
  total: number | null;
  attempts: number;
  error_code: string | null;
  error_message: string | null;
  outputs: string;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  expires_at: number | null;
  cancel_requested: number;
  webhook: string | null;
  webhook_events: string | null;
  request_hash: string | null;
  timings: string | null;
  owner: string | null;
}

function toJob(r: Row): Job {
  return {
    id: r.id,
    durable: true,
    model: r.model,
    version: r.version,
    input: decodeInput(r.input),
    priority: r.priority,
    status: r.status,
    progress: r.total === null ? null : { step: r.step ?? 0, total: r.total },
    attempts: r.attempts,
    error: r.error_code === null ? null : { code: r.error_code, message: r.error_message ?? '' },
    outputs: JSON.parse(r.outputs) as JobOutput[],
    createdAt: r.created_at,
    startedAt: r.started_at,
    completedAt: r.completed_at,
    expiresAt: r.expires_at,
    cancelRequested: r.cancel_requested === 1,
    webhook: r.webhook,
    webhookEvents: r.webhook_events === null ? null : (JSON.parse(r.webhook_events) as string[]),
    requestHash: r.request_hash,
    owner: r.owner,
    timings: r.timings === null ? null : (JSON.parse(r.timings) as Record<string, number>),
    accept: null,
    deadline: null,
  };
}

export interface SqliteJobBackendOptions {
  /** The database file (`:memory:` for tests). */
  file: string;
  /** How long finished jobs and their outputs are kept. */
  jobTtlMs: number;
}

export class SqliteJobBackend extends JobEvents implements JobBackend {
  readonly #db: Database.Database;
  readonly #ttlMs: number;
  readonly #memory = new MemoryLane();
  readonly #statements = new Map<string, Database.Statement>();
  /**
   * Models that may have queued durable jobs: every change to queued passes #announce (and the
   * recovery at open), and a claim that finds none clears them, so a claim of a synchronous
   * prediction asks SQLite nothing while no durable job waits.
   */
  readonly #durableQueued = new Set<string>();

  constructor(o: SqliteJobBackendOptions) {
    super();
    this.#ttlMs = o.jobTtlMs;
    this.#db = new Database(o.file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        version TEXT,
        input TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        step INTEGER,
        total INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        error_code TEXT,
        error_message TEXT,
        outputs TEXT NOT NULL DEFAULT '[]',
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        completed_at INTEGER,
        expires_at INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        webhook TEXT,
        webhook_events TEXT,
        idempotency_key TEXT UNIQUE,
        request_hash TEXT,
        timings TEXT,
        owner TEXT
      );
      CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (model, status, priority DESC, seq);
      CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at);
      CREATE TABLE IF NOT EXISTS job_events (
        job_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (job_id, n)
      ) WITHOUT ROWID;
    `);
    // A database written before request_hash existed gains the column.
    const columns = this.#stmt('PRAGMA table_info(jobs)').all() as { name: string }[];
    if (!columns.some((c) => c.name === 'request_hash')) this.#db.exec('ALTER TABLE jobs ADD COLUMN request_hash TEXT');
    // …and timings, when it was written before they existed.
    if (!columns.some((c) => c.name === 'timings')) this.#db.exec('ALTER TABLE jobs ADD COLUMN timings TEXT');
    // …and owners.
    if (!columns.some((c) => c.name === 'owner')) this.#db.exec('ALTER TABLE jobs ADD COLUMN owner TEXT');
    this.#db.exec('CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, status)');
    // A job that was running when the process died runs again.
    this.#stmt(`UPDATE jobs SET status = 'queued', step = NULL, total = NULL WHERE status = 'running'`).run();
    for (const { model } of this.#stmt(`SELECT DISTINCT model FROM jobs WHERE status = 'queued'`).all() as { model: string }[]) this.#durableQueued.add(model);
  }

  /** Statements are compiled once (better-sqlite3's prepare costs tens of µs per call). */
  #stmt(sql: string): Database.Statement {
    let stmt = this.#statements.get(sql);
    if (!stmt) this.#statements.set(sql, (stmt = this.#db.prepare(sql)));
    return stmt;
  }

  #row(id: string): Row | undefined {
    return this.#stmt('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
  }

  /**
   * Runs a state change and stores its status event in one transaction (a durable job), then
   * tells the listeners. `write` returns how many rows it changed: none, no event.
   */
  #change(id: string, write: () => number): Job | undefined {
    let event: WorkEvent | undefined;
    let job: Job | undefined;
    this.#db.transaction(() => {
      if (write() === 0) return;
      job = this.#current(id);
      if (job) event = this.#record(id, statusEvent(job));
    })();
    if (job && event) this.#announce(job, event);
    return job ?? this.#current(id);
  }

  /** Tells the listeners about a status change of a held (non-durable) item. */
  #heldChanged(job: Job | undefined): Job | undefined {
    // Only the waiting request listens: its status and error are all it needs (no public view).
    if (job) this.#announce(job, this.#record(job.id, { type: 'status', data: { id: job.id, status: job.status, error: job.error } }));
    return job;
  }

  #announce(job: Job, event: WorkEvent): void {
    if (job.durable && job.status === 'queued') this.#durableQueued.add(job.model);
    this.emitJob(job.id, event);
    if (job.status === 'queued') this.emitQueued(job);
    if (isTerminal(job.status)) this.emitFinished(job);
  }

  #current(id: string): Job | undefined {
    const held = this.#memory.get(id);
    if (held) return held;
    const row = this.#row(id);
    return row && toJob(row);
  }

  /** Gives an event its id; a durable job's is stored for replay. */
  #record(id: string, e: NewWorkEvent): WorkEvent {
    if (this.#memory.has(id)) return { id: String(this.#memory.nextEventId(id)), ...e };
    const { n } = this.#stmt('INSERT INTO job_events (job_id, n, type, data) SELECT ?, COALESCE(MAX(n), 0) + 1, ?, ? FROM job_events WHERE job_id = ? RETURNING n')
      .get(id, e.type, JSON.stringify(e.data), id) as { n: number };
    return { id: String(n), ...e };
  }

  protected async history(id: string, afterEventId: string): Promise<WorkEvent[]> {
    const rows = this.#stmt('SELECT n, type, data FROM job_events WHERE job_id = ? AND n > ? ORDER BY n').all(id, Number(afterEventId.split('-')[0])) as { n: number; type: WorkEvent['type']; data: string }[];
    return rows.map((r) => ({ id: String(r.n), type: r.type, data: JSON.parse(r.data) as Record<string, unknown> }));
  }

  protected async lastEventId(id: string): Promise<string> {
    if (this.#memory.has(id)) return String(this.#memory.lastEventId(id));
    const row = this.#stmt('SELECT MAX(n) AS n FROM job_events WHERE job_id = ?').get(id) as { n: number | null };
    return String(row.n ?? 0);
  }

  // One process: no other node to tell or to hear from.
  async announce(): Promise<void> {}

  async announcedModels(): Promise<string[]> {
    return [];
  }

  async byIdempotencyKey(key: string): Promise<Job | undefined> {
    const row = this.#stmt('SELECT * FROM jobs WHERE idempotency_key = ?').get(key) as Row | undefined;
    return row && toJob(row);
  }

  async submit(n: NewJob): Promise<{ job: Job; created: boolean }> {
    if (n.durable === false) return { job: this.#heldChanged(this.#memory.submit(n))!, created: true };
    const seen = n.idempotencyKey === undefined ? undefined : await this.byIdempotencyKey(n.idempotencyKey);
    if (seen) return { job: seen, created: false };
    const id = randomUUID();
    const job = this.#change(id, () =>
      this.#stmt(
          `INSERT INTO jobs (id, model, version, input, priority, status, created_at, webhook, webhook_events, idempotency_key, request_hash, owner)
           VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)`,
        )
        .run(id, n.model, n.version ?? null, encodeInput(n.input), n.priority ?? 0, Date.now(), n.webhook ?? null, n.webhookEvents ? JSON.stringify(n.webhookEvents) : null, n.idempotencyKey ?? null, n.requestHash ?? null, n.owner ?? null).changes,
    );
    return { job: job!, created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    return this.#current(id);
  }

  async list(f: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.status) {
      where.push('status = ?');
      args.push(f.status);
    }
    if (f.model) {
      where.push('model = ?');
      args.push(f.model);
    }
    if (f.models) {
      where.push(`model IN (${f.models.map(() => '?').join(',') || 'NULL'})`);
      args.push(...f.models);
    }
    if (f.owner !== undefined) {
      where.push('owner IS ?');
      args.push(f.owner);
    }
    if (f.cursor) {
      where.push('seq < ?');
      args.push(Number(f.cursor));
    }
    const sql = `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    const rows = this.#stmt(sql).all(...args, f.limit + 1) as Row[];
    const page = rows.slice(0, f.limit);
    return { jobs: page.map(toJob), nextCursor: rows.length > f.limit ? String(page[page.length - 1]!.seq) : null };
  }

  async cancel(id: string): Promise<Job | undefined> {
    const held = this.#memory.get(id);
    if (held?.status === 'queued') {
      this.#finish(id, 'cancelled', { code: 'EASEL_CANCELLED', message: 'cancelled before it started' });
    } else if (held?.status === 'running' && !held.cancelRequested) {
      this.#memory.requestCancel(id);
      this.emitCancel(id);
    }
    if (held) return this.get(id);
    const row = this.#row(id);
    if (!row) return undefined;
    if (row.status === 'queued') {
      this.#finish(id, 'cancelled', { code: 'EASEL_CANCELLED', message: 'cancelled before it started' });
    } else if (row.status === 'running' && row.cancel_requested === 0) {
      this.#stmt('UPDATE jobs SET cancel_requested = 1 WHERE id = ?').run(id);
      this.emitCancel(id);
    }
    return this.get(id);
  }

  async withdraw(id: string, error: JobError): Promise<boolean> {
    // One thread: nothing can claim it between the check and the change.
    if ((await this.get(id))?.status !== 'queued') return false;
    this.#finish(id, 'cancelled', error);
    return true;
  }

  async position(id: string): Promise<number | null> {
    if (this.#memory.has(id)) return this.#memory.position(id);
    const row = this.#row(id);
    if (!row || row.status !== 'queued') return null;
    const ahead = this.#db
      .prepare(`SELECT COUNT(*) AS n FROM jobs WHERE model = ? AND status = 'queued' AND (priority > ? OR (priority = ? AND seq < ?))`)
      .get(row.model, row.priority, row.priority, row.seq) as { n: number };
    return ahead.n;
  }

  async queuedByOwner(owner: string): Promise<number> {
    return (this.#stmt(`SELECT COUNT(*) AS n FROM jobs WHERE owner = ? AND status = 'queued'`).get(owner) as { n: number }).n;
  }

  async queuedCount(model: string, durable = true): Promise<number> {
    if (!durable) return this.#memory.queuedCount(model);
    return (this.#stmt(`SELECT COUNT(*) AS n FROM jobs WHERE model = ? AND status = 'queued'`).get(model) as { n: number }).n;
  }

  // One node, one pool: the embedded backend has no routing between pools.
  async claim(models: readonly string[], _policy?: ClaimPolicy): Promise<Job | undefined> {
    if (models.length === 0) return undefined;
    for (;;) {
      // The two lanes' best, compared as one queue: priority, then arrival.
      const row = this.#bestDurable(models);
      const held = this.#memory.peek(models);
      if (held && (!row || held.priority > row.priority || (held.priority === row.priority && held.createdAt <= row.created_at))) {
        if (held.deadline !== null && held.deadline <= Date.now()) {
          // Its client has stopped waiting: not worth a worker's time.
          this.#finish(held.id, 'failed', { code: 'EASEL_TIMEOUT', message: 'no worker took the request before its response timeout' });
          continue;
        }
        return this.#heldChanged(this.#memory.claim(held.id));
      }
      if (!row) return undefined;
      return this.#change(row.id, () => this.#stmt(`UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, step = NULL, total = NULL WHERE id = ?`).run(Date.now(), row.id).changes);
    }
  }

  /** The best queued durable job of these models; SQLite is asked only about models that may have one. */
  #bestDurable(models: readonly string[]): { id: string; priority: number; created_at: number } | undefined {
    const maybe = models.filter((m) => this.#durableQueued.has(m));
    if (maybe.length === 0) return undefined;
    const row = this.#stmt(`SELECT id, priority, created_at FROM jobs WHERE status = 'queued' AND model IN (${maybe.map(() => '?').join(',')}) ORDER BY priority DESC, seq LIMIT 1`)
      .get(...maybe) as { id: string; priority: number; created_at: number } | undefined;
    if (!row) for (const m of maybe) this.#durableQueued.delete(m);
    return row;
  }

  async progress(id: string, p: JobProgress, preview?: { contentType: string; data: Uint8Array }, text?: TextChunk): Promise<void> {
    const events = progressEvents(p, preview, text);
    if (this.#memory.has(id)) {
      // A held prediction (a streamed one's tokens): its events live in memory, no transaction.
      this.#memory.progress(id, p);
      for (const e of events) this.emitJob(id, this.#record(id, e));
      return;
    }
    this.#stmt(`UPDATE jobs SET step = ?, total = ? WHERE id = ? AND status = 'running'`).run(p.step, p.total, id);
    for (const e of this.#db.transaction(() => events.map((e) => this.#record(id, e)))()) this.emitJob(id, e);
  }

  async retrying(id: string): Promise<Job | undefined> {
    if (this.#memory.has(id)) return this.#heldChanged(this.#memory.retrying(id));
    let changed = 0;
    const job = this.#change(id, () => (changed = this.#stmt(`UPDATE jobs SET attempts = attempts + 1, step = NULL, total = NULL WHERE id = ? AND status = 'running'`).run(id).changes));
    return changed > 0 ? job : undefined;
  }

  #finish(id: string, status: JobStatus, error: JobError | null, outputs: readonly JobOutput[] = [], result?: Payload, timings?: Readonly<Record<string, number>>): Job | undefined {
    if (this.#memory.has(id)) return this.#heldChanged(this.#memory.finish(id, status, error, outputs, result)) ?? this.#memory.get(id);
    const now = Date.now();
    return this.#change(id, () =>
      this.#stmt(
          `UPDATE jobs SET status = ?, error_code = ?, error_message = ?, outputs = ?, completed_at = ?, expires_at = ?, timings = ?
           WHERE id = ? AND status IN ('queued', 'running')`,
        )
        .run(status, error?.code ?? null, error?.message ?? null, JSON.stringify(outputs), now, now + this.#ttlMs, timings ? JSON.stringify(timings) : null, id).changes,
    );
  }

  async complete(id: string, outputs: readonly JobOutput[], result?: Payload, timings?: Readonly<Record<string, number>>): Promise<Job | undefined> {
    return this.#finish(id, 'succeeded', null, outputs, result, timings);
  }

  async result(id: string): Promise<Payload | undefined> {
    return this.#memory.takeResult(id);
  }

  async fail(id: string, error: JobError, status: 'failed' | 'cancelled' = 'failed'): Promise<Job | undefined> {
    return this.#finish(id, status, error);
  }

  async release(id: string): Promise<void> {
    if (this.#memory.has(id)) {
      this.#heldChanged(this.#memory.release(id));
      return;
    }
    this.#change(id, () => this.#stmt(`UPDATE jobs SET status = 'queued', step = NULL, total = NULL WHERE id = ? AND status = 'running'`).run(id).changes);
  }

  async expire(now: number): Promise<Job[]> {
    this.#memory.expire(now);
    const rows = this.#stmt('SELECT * FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?').all(now) as Row[];
    if (rows.length > 0) {
      this.#db.transaction(() => {
        const dropEvents = this.#stmt('DELETE FROM job_events WHERE job_id = ?');
        for (const r of rows) dropEvents.run(r.id);
        this.#stmt('DELETE FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?').run(now);
      })();
    }
    return rows.map(toJob);
  }

  async close(): Promise<void> {
    this.removeAllListeners();
    if (this.#db.open) this.#db.close();
  }
}
