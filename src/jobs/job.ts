// The job model and the contract of the one work queue every unit of work goes through: durable
// jobs (POST /v1/jobs, Prefer: respond-async) and the non-durable lane of synchronous predictions.
// Two backends implement it (embedded: SQLite + memory in-process; distributed: Redis). Routes
// and runners see only this contract.

import { PRIORITY_CLASSES, type EaselConfig, type PriorityClass } from '../config/config.js';
import type { Payload, TokenLogprob } from '../models/model-control.js';
import type { WorkEvent } from './work-event.js';

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export function isTerminal(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

export interface JobProgress {
  readonly step: number;
  readonly total: number;
}

/** A text model's next chunk: its text, where it goes in the output (the characters before it), its tokens' scores when asked. */
export interface TextChunk {
  readonly text: string;
  readonly offset: number;
  readonly logprobs?: readonly TokenLogprob[] | undefined;
}

/** A stored output: where the artifact store keeps it and what it is. */
export interface JobOutput {
  readonly key: string;
  readonly contentType: string;
  readonly bytes: number;
}

/** Why a job failed: the error's wire form (the field at fault, when there is one). */
export interface JobError {
  readonly code: string;
  readonly message: string;
  readonly field?: string | undefined;
  readonly retryAfterSeconds?: number | undefined;
}

/** A result as bytes with their media type; several outputs travel as its parts. */
export type { Payload, TokenLogprob };

export { PRIORITY_CLASSES, type PriorityClass };

export function priorityClass(priority: number): PriorityClass {
  return priority > 0 ? 'high' : priority < 0 ? 'low' : 'normal';
}

/** Which work a worker pool takes: a class at once, once it has waited long enough, or never. */
export interface ClaimPolicy {
  takes(cls: PriorityClass, waitedMs: number): boolean;
}

/** A pool's routing rules (config poolRules) as a claim policy; none when the pool has no rules (it takes everything). */
export function poolPolicy(rules: EaselConfig['poolRules'], pool: string): ClaimPolicy | undefined {
  const rule = new Map(Object.entries(rules)).get(pool);
  if (!rule) return undefined;
  const after = new Map(Object.entries(rule.after ?? {}));
  const now = new Set(rule.takes ?? PRIORITY_CLASSES.filter((c) => !after.has(c)));
  return { takes: (cls, waitedMs) => now.has(cls) || waitedMs >= (after.get(cls) ?? Number.POSITIVE_INFINITY) * 1000 };
}

export interface Job {
  readonly id: string;
  /**
   * Durable: kept (SQLite / Redis) until its TTL, outputs in the artifact store. Not durable: a
   * synchronous prediction whose client waits; its result comes back through `result()`.
   */
  readonly durable: boolean;
  readonly model: string;
  readonly version: string | null;
  readonly input: Readonly<Record<string, unknown>>;
  readonly priority: number;
  readonly status: JobStatus;
  readonly progress: JobProgress | null;
  readonly attempts: number;
  readonly error: JobError | null;
  readonly outputs: readonly JobOutput[];
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly completedAt: number | null;
  readonly expiresAt: number | null;
  readonly cancelRequested: boolean;
  readonly webhook: string | null;
  readonly webhookEvents: readonly string[] | null;
  /** A digest of the request as submitted: an idempotency key reused with another request is refused. */
  readonly requestHash: string | null;
  /** Who submitted it: the API key's name; null on a server without keys (everyone is one owner). */
  readonly owner: string | null;
  /** The client's Accept header, handed to the handler (synchronous predictions). */
  readonly accept: string | null;
  /** Epoch ms after which nobody waits for it: a worker that claims it later does not run it. */
  readonly deadline: number | null;
  /** Seconds per stage of a finished run (queue_wait, preprocess, inference, postprocess, encode_image…); null before. */
  readonly timings: Readonly<Record<string, number>> | null;
}

export interface NewJob {
  /** Defaults to true; false puts it in the non-durable lane (a synchronous prediction). */
  durable?: boolean | undefined;
  accept?: string | undefined;
  deadline?: number | undefined;
  model: string;
  version?: string | undefined;
  input: Record<string, unknown>;
  priority?: number | undefined;
  webhook?: string | undefined;
  webhookEvents?: readonly string[] | undefined;
  idempotencyKey?: string | undefined;
  requestHash?: string | undefined;
  owner?: string | null | undefined;
}

export interface JobFilter {
  status?: JobStatus | undefined;
  model?: string | undefined;
  limit: number;
  /** Opaque: the nextCursor of the previous page. */
  cursor?: string | undefined;
  /** Only this owner's jobs (null: those submitted without a key); every owner's when undefined. */
  owner?: string | null | undefined;
  /** Only jobs of these models (a key scoped to models). */
  models?: readonly string[] | undefined;
}

export interface JobBackend {
  /** Stores a queued job; with an idempotency key already seen, returns that job instead. */
  submit(job: NewJob): Promise<{ job: Job; created: boolean }>;
  get(id: string): Promise<Job | undefined>;
  /** The job submitted with this idempotency key, if any. */
  byIdempotencyKey(key: string): Promise<Job | undefined>;
  list(filter: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }>;
  /** Queued → cancelled at once; running → cancelRequested (the runner stops it at its next step). */
  cancel(id: string): Promise<Job | undefined>;
  /** Takes a job out of the queue if no worker has claimed it yet; false if it was not queued. */
  withdraw(id: string, error: JobError): Promise<boolean>;
  /** Jobs ahead of this one in its model's queue (0 = next), or null when it is not queued. */
  position(id: string): Promise<number | null>;
  /** Queued work of a model in one lane (durable jobs by default). */
  queuedCount(model: string, durable?: boolean): Promise<number>;
  /** Queued durable jobs of one owner, every model. */
  queuedByOwner(owner: string): Promise<number>;

  /**
   * Takes the highest-priority, oldest queued job of one of these models, marking it running;
   * with a policy (a worker pool's routing rules), only work the policy takes.
   */
  claim(models: readonly string[], policy?: ClaimPolicy): Promise<Job | undefined>;
  /** Progress, with a preview image, or the text a text model made since the last report (a token event). */
  progress(id: string, progress: JobProgress, preview?: { contentType: string; data: Uint8Array }, text?: TextChunk): Promise<void>;
  /**
   * A running job's worker died and the job runs again at once on this node: one more attempt,
   * its progress starts again, and a status event says so.
   */
  retrying(id: string): Promise<Job | undefined>;
  /** Succeeds a job: a durable one with its stored outputs, a non-durable one with its result. */
  complete(id: string, outputs: readonly JobOutput[], result?: Payload, timings?: Readonly<Record<string, number>>): Promise<Job | undefined>;
  /** A succeeded non-durable job's result, handed over once. */
  result(id: string): Promise<Payload | undefined>;
  fail(id: string, error: JobError, status?: 'failed' | 'cancelled'): Promise<Job | undefined>;
  /** Gives a running job back to the queue (a draining worker). */
  release(id: string): Promise<void>;

  /** Characters of text the job's token events hold (what its clients have of its output). */
  loggedTextLength(id: string): Promise<number>;
  /** A job's events (status changes, progress, previews) from now on; returns the unsubscribe function. */
  subscribe(id: string, listener: (event: WorkEvent) => void): () => void;
  /** A job's events for a streaming client, resumable after an event id (see JobEvents.follow). */
  follow(id: string, listener: (event: WorkEvent) => void, afterEventId?: string): () => void;
  /** Called when a running job is asked to stop. */
  onCancelRequested(listener: (id: string) => void): () => void;
  /** Called when a job is queued. */
  onQueued(listener: (job: Job) => void): () => void;
  /** Called when any job reaches a final status (on every node, in the distributed mode). */
  onFinished(listener: (job: Job) => void): () => void;
  /** Tells the other nodes which models this node serves, for `ttlMs` (the embedded backend has no other nodes). */
  announce(models: readonly string[], ttlMs: number): Promise<void>;
  /** Models some node has announced and not let lapse (none in the embedded backend). */
  announcedModels(): Promise<string[]>;
  /** Deletes jobs whose expiry has passed; returns them so their artifacts can be deleted. */
  expire(now: number): Promise<Job[]>;
  close(): Promise<void>;
}
