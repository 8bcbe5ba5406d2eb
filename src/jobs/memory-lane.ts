// The embedded backend's non-durable lane: synchronous predictions, held in memory while their
// clients wait (a restart loses them together with their clients). Ordered as durable jobs are:
// higher priority first, arrival order within one.
import { randomUUID } from 'node:crypto';
import type { Job, JobOutput, JobProgress, JobStatus, NewJob, Payload, JobError } from './job.js';

interface Item {
  job: Job;
  seq: number;
  events: number;
  result?: Payload | undefined;
}

/** How long a finished prediction's result waits to be picked up. */
const KEEP_FINISHED_MS = 60_000;

export class MemoryLane {
  readonly #items = new Map<string, Item>();
  readonly #queued: Item[] = [];
  #seq = 0;

  has(id: string): boolean {
    return this.#items.has(id);
  }

  get(id: string): Job | undefined {
    return this.#items.get(id)?.job;
  }

  submit(n: NewJob): Job {
    const job: Job = {
      id: randomUUID(), durable: false, model: n.model, version: n.version ?? null, input: n.input, priority: n.priority ?? 0, status: 'queued', progress: null,
      attempts: 0, error: null, outputs: [], createdAt: Date.now(), startedAt: null, completedAt: null, expiresAt: null, cancelRequested: false,
      webhook: null, webhookEvents: null, requestHash: n.requestHash ?? null, owner: n.owner ?? null, accept: n.accept ?? null, deadline: n.deadline ?? null, timings: null,
    };
    const item: Item = { job, seq: ++this.#seq, events: 0 };
    this.#items.set(job.id, item);
    const at = this.#queued.findIndex((other) => other.job.priority < job.priority);
    this.#queued.splice(at < 0 ? this.#queued.length : at, 0, item);
    return job;
  }

  nextEventId(id: string): number {
    const item = this.#items.get(id);
    return item ? ++item.events : 0;
  }

  lastEventId(id: string): number {
    return this.#items.get(id)?.events ?? 0;
  }

  /** The best queued item of these models, without taking it: [priority, createdAt] to compare lanes. */
  peek(models: readonly string[]): Job | undefined {
    return this.#queued.find((item) => models.includes(item.job.model))?.job;
  }

  claim(id: string): Job | undefined {
    const item = this.#items.get(id);
    if (!item || item.job.status !== 'queued') return undefined;
    this.#unqueue(item);
    return this.#set(item, { status: 'running', attempts: item.job.attempts + 1, startedAt: Date.now(), progress: null });
  }

  position(id: string): number | null {
    const item = this.#items.get(id);
    if (!item || item.job.status !== 'queued') return null;
    return this.#queued.filter((other) => other.job.model === item.job.model).indexOf(item);
  }

  queuedCount(model: string): number {
    let n = 0;
    for (const item of this.#queued) if (item.job.model === model) n++;
    return n;
  }

  progress(id: string, progress: JobProgress): void {
    const item = this.#items.get(id);
    if (item?.job.status === 'running') this.#set(item, { progress });
  }

  /** A running item whose worker died runs again at once: one more attempt. */
  retrying(id: string): Job | undefined {
    const item = this.#items.get(id);
    return item?.job.status === 'running' ? this.#set(item, { attempts: item.job.attempts + 1, progress: null }) : undefined;
  }

  requestCancel(id: string): Job | undefined {
    const item = this.#items.get(id);
    return item && this.#set(item, { cancelRequested: true });
  }

  /** Ends a queued or running item; undefined when it had already ended. */
  finish(id: string, status: JobStatus, error: JobError | null, outputs: readonly JobOutput[], result?: Payload): Job | undefined {
    const item = this.#items.get(id);
    if (!item || (item.job.status !== 'queued' && item.job.status !== 'running')) return undefined;
    this.#unqueue(item);
    item.result = result;
    const now = Date.now();
    return this.#set(item, { status, error, outputs: [...outputs], completedAt: now, expiresAt: now + KEEP_FINISHED_MS });
  }

  release(id: string): Job | undefined {
    const item = this.#items.get(id);
    if (!item || item.job.status !== 'running') return undefined;
    // Back at the head of its priority: it was taken first.
    const at = this.#queued.findIndex((other) => other.job.priority <= item.job.priority);
    this.#queued.splice(at < 0 ? this.#queued.length : at, 0, item);
    return this.#set(item, { status: 'queued', progress: null });
  }

  takeResult(id: string): Payload | undefined {
    const item = this.#items.get(id);
    if (!item?.result) return undefined;
    this.#items.delete(id);
    return item.result;
  }

  expire(now: number): void {
    for (const [id, item] of this.#items) if (item.job.expiresAt !== null && item.job.expiresAt <= now) this.#items.delete(id);
  }

  #unqueue(item: Item): void {
    const i = this.#queued.indexOf(item);
    if (i >= 0) this.#queued.splice(i, 1);
  }

  #set(item: Item, change: Partial<Job>): Job {
    item.job = { ...item.job, ...change };
    return item.job;
  }
}
