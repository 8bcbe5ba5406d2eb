// Request-level batching on one node: work claimed from the work queue for this node's workers
// waits here, one lane per model version, until a worker pulls a batch: up to a size, within a
// delay (TorchServe's batchSize / maxBatchDelay), of requests with the first one's compatibility
// key. Admission limits (queue length, queue timeout) belong to the work queue, not here.
import { randomUUID } from 'node:crypto';
import type { EaselError} from '../errors/easel-error.js';
import { errors } from '../errors/easel-error.js';

import type { Payload, PredictOutcome as Outcome, Progress as QueueProgress } from '../models/model-control.js';

export interface QueuedRequest {
  readonly id: string;
  readonly lane: string;
  /** What the worker runs: the admitted request, and on a retry where the last attempt's reports left it. */
  input: Readonly<Record<string, unknown>>;
  readonly accept?: string | undefined;
  readonly onProgress?: ((progress: QueueProgress) => void) | undefined;
  readonly onRetry?: (() => void) | undefined;
  readonly priority: number;
  readonly batchKey?: string | undefined;
  readonly enqueuedAt: number;
  /** Aborted when the client goes away or the response timeout passes. */
  readonly signal: AbortSignal;
  attempts: number;
  startedAt?: number;
}

interface Pending extends QueuedRequest {
  resolve(o: Outcome): void;
  reject(e: unknown): void;
  settled: boolean;
  /** The latest report's resume point (Progress.resume). */
  resume?: Readonly<Record<string, unknown>> | undefined;
}

export interface SubmitOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  accept?: string | undefined;
  onProgress?: ((progress: QueueProgress) => void) | undefined;
  /** Higher first; equal priorities in arrival order. */
  priority?: number | undefined;
  /** Requests batch together only with the same key (the handler's compatibility key). */
  batchKey?: string | undefined;
  /** Runs it has had already, elsewhere: they count against the retries. */
  attempts?: number | undefined;
  /** Called when its worker died and it goes back to the head of its lane. */
  onRetry?: (() => void) | undefined;
}

interface Waiter {
  wake(): void;
}

export class RequestBatcher {
  readonly #lanes = new Map<string, Pending[]>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #running = new Map<string, Pending>();
  #closed = false;

  /** Enqueues a request and resolves with its outcome (or rejects with an EaselError). */
  submit(lane: string, input: Readonly<Record<string, unknown>>, o: SubmitOptions): Promise<Outcome> {
    if (this.#closed) return Promise.reject(errors.shuttingDown());
    const queue = this.#lane(lane);
    const controller = new AbortController();
    return new Promise<Outcome>((resolve, reject) => {
      const item: Pending = {
        id: randomUUID(), lane, input, accept: o.accept, onProgress: o.onProgress, onRetry: o.onRetry, priority: o.priority ?? 0, batchKey: o.batchKey, enqueuedAt: Date.now(), signal: controller.signal, attempts: o.attempts ?? 0, settled: false,
        resolve: (v) => { if (!item.settled) { item.settled = true; cleanup(); resolve(v); } },
        reject: (e) => { if (!item.settled) { item.settled = true; cleanup(); reject(e); } },
      };
      const timer = setTimeout(() => {
        controller.abort(errors.timeout(lane, o.timeoutMs));
        this.#drop(item);
        item.reject(controller.signal.reason);
      }, o.timeoutMs);
      const onClientAbort = (): void => {
        controller.abort(errors.cancelled('the client went away'));
        this.#drop(item);
        item.reject(controller.signal.reason);
      };
      o.signal?.addEventListener('abort', onClientAbort, { once: true });
      const cleanup = (): void => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onClientAbort);
        this.#running.delete(item.id);
      };
      // After every request of the same or higher priority: FIFO within a priority.
      const at = queue.findIndex((other) => other.priority < item.priority);
      queue.splice(at < 0 ? queue.length : at, 0, item);
      this.#wake(lane);
    });
  }

  /**
   * Waits for at least one request on the lane, then up to `maxDelayMs` for the batch to
   * fill to `max`. Resolves with [] only when `signal` aborts: a closed queue still hands out
   * what it had accepted.
   */
  async take(lane: string, max: number, maxDelayMs: number, signal: AbortSignal): Promise<QueuedRequest[]> {
    const queue = this.#lane(lane);
    while (queue.length === 0) {
      if (signal.aborted) return [];
      await this.#wait(lane, signal, undefined);
    }
    // The batch forms around the first request: only requests with its batch key join it.
    const compatible = (): Pending[] => {
      const key = queue[0]?.batchKey;
      return queue.filter((item) => item.batchKey === key);
    };
    if (compatible().length < max && maxDelayMs > 0) {
      const deadline = Date.now() + maxDelayMs;
      while (queue.length > 0 && compatible().length < max && Date.now() < deadline && !signal.aborted) await this.#wait(lane, signal, deadline - Date.now());
    }
    const batch = compatible().slice(0, max);
    for (const item of batch) queue.splice(queue.indexOf(item), 1);
    const now = Date.now();
    for (const item of batch) {
      item.attempts++;
      item.startedAt = now;
      this.#running.set(item.id, item);
    }
    return batch;
  }

  /** Hands a running request's progress report to its submitter. */
  progress(id: string, progress: QueueProgress): void {
    const item = this.#running.get(id);
    if (!item) return;
    // Recorded before the report goes on: the resume point always matches what the submitter got.
    if (progress.resume) {
      const merged: Record<string, unknown> = { ...item.resume };
      for (const [k, v] of Object.entries(progress.resume)) merged[k] = Array.isArray(v) && Array.isArray(merged[k]) ? [...(merged[k] as unknown[]), ...v] : v;
      item.resume = merged;
    }
    item.onProgress?.(progress);
  }

  complete(item: QueuedRequest, result: Payload, timings: Record<string, number>): void {
    const p = item as Pending;
    p.resolve({ result, timings, queueSeconds: ((p.startedAt ?? p.enqueuedAt) - p.enqueuedAt) / 1000 });
  }

  fail(item: QueuedRequest, error: unknown): void {
    (item as Pending).reject(error);
  }

  /** Puts a request whose worker died back at the head of its lane; false when it has had its retries. */
  retry(item: QueuedRequest, maxAttempts: number): boolean {
    const p = item as Pending;
    this.#running.delete(p.id);
    if (p.settled) return true;
    if (p.attempts >= maxAttempts) return false;
    // Resume, don't repeat: the next attempt goes on from the last report its submitter got.
    if (p.resume) p.input = { ...p.input, ...p.resume };
    this.#lane(p.lane).unshift(p);
    this.#wake(p.lane);
    p.onRetry?.();
    return true;
  }

  length(lane: string): number {
    return this.#lanes.get(lane)?.length ?? 0;
  }

  inFlight(): number {
    let n = this.#running.size;
    for (const q of this.#lanes.values()) n += q.length;
    return n;
  }

  /** Fails every waiting request of a lane (its model was unregistered). */
  drain(lane: string, error: EaselError): void {
    const queue = this.#lanes.get(lane) ?? [];
    this.#lanes.delete(lane);
    for (const item of queue) item.reject(error);
    this.#wake(lane);
  }

  /** Stops accepting new requests; those already accepted still run. */
  close(): void {
    this.#closed = true;
  }

  #lane(lane: string): Pending[] {
    let q = this.#lanes.get(lane);
    if (!q) this.#lanes.set(lane, (q = []));
    return q;
  }

  #drop(item: Pending): void {
    const q = this.#lanes.get(item.lane);
    const i = q?.indexOf(item) ?? -1;
    if (q && i >= 0) q.splice(i, 1);
  }

  #wake(lane: string): void {
    for (const w of this.#waiters.get(lane) ?? []) w.wake();
  }

  #wait(lane: string, signal: AbortSignal, ms: number | undefined): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(lane);
      if (!set) this.#waiters.set(lane, (set = new Set()));
      const waiter: Waiter = { wake: () => done() };
      const timer = ms !== undefined ? setTimeout(() => done(), Math.max(0, ms)) : undefined;
      const done = (): void => {
        if (timer) clearTimeout(timer);
        set.delete(waiter);
        signal.removeEventListener('abort', done);
        resolve();
      };
      set.add(waiter);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
