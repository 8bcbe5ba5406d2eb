// The job model and the contract every job backend implements (embedded: SQLite in-process;
// distributed: Redis). Routes and runners see only this contract.

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export function isTerminal(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

export interface JobProgress {
  readonly step: number;
  readonly total: number;
}

/** A stored output: where the artifact store keeps it and what it is. */
export interface JobOutput {
  readonly key: string;
  readonly contentType: string;
  readonly bytes: number;
}

export interface Job {
  readonly id: string;
  readonly model: string;
  readonly version: string | null;
  readonly input: Readonly<Record<string, unknown>>;
  readonly priority: number;
  readonly status: JobStatus;
  readonly progress: JobProgress | null;
  readonly attempts: number;
  readonly error: { readonly code: string; readonly message: string } | null;
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
}

export interface NewJob {
  model: string;
  version?: string | undefined;
  input: Record<string, unknown>;
  priority?: number | undefined;
  webhook?: string | undefined;
  webhookEvents?: readonly string[] | undefined;
  idempotencyKey?: string | undefined;
  requestHash?: string | undefined;
}

export interface JobFilter {
  status?: JobStatus | undefined;
  model?: string | undefined;
  limit: number;
  /** Opaque: the nextCursor of the previous page. */
  cursor?: string | undefined;
}

export type JobEvent =
  | { readonly type: 'status'; readonly job: Job }
  | { readonly type: 'progress'; readonly jobId: string; readonly progress: JobProgress }
  | { readonly type: 'preview'; readonly jobId: string; readonly contentType: string; readonly data: Uint8Array };

export interface JobBackend {
  /** Stores a queued job; with an idempotency key already seen, returns that job instead. */
  submit(job: NewJob): Promise<{ job: Job; created: boolean }>;
  get(id: string): Promise<Job | undefined>;
  /** The job submitted with this idempotency key, if any. */
  byIdempotencyKey(key: string): Promise<Job | undefined>;
  list(filter: JobFilter): Promise<{ jobs: Job[]; nextCursor: string | null }>;
  /** Queued → cancelled at once; running → cancelRequested (the runner stops it at its next step). */
  cancel(id: string): Promise<Job | undefined>;
  /** Jobs ahead of this one in its model's queue (0 = next), or null when it is not queued. */
  position(id: string): Promise<number | null>;
  queuedCount(model: string): Promise<number>;

  /** Takes the highest-priority, oldest queued job of one of these models, marking it running. */
  claim(models: readonly string[]): Promise<Job | undefined>;
  progress(id: string, progress: JobProgress, preview?: { contentType: string; data: Uint8Array }): Promise<void>;
  complete(id: string, outputs: readonly JobOutput[]): Promise<Job | undefined>;
  fail(id: string, error: { code: string; message: string }, status?: 'failed' | 'cancelled'): Promise<Job | undefined>;
  /** Gives a running job back to the queue (a draining worker). */
  release(id: string): Promise<void>;

  /** Job events (status changes, progress, previews); returns the unsubscribe function. */
  subscribe(id: string, listener: (event: JobEvent) => void): () => void;
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
