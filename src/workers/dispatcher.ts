// The dispatcher of one model version on this node: feeds each live worker process from the
// request batcher as the model's batching plan says, sends cancellations, hands results and
// failures back, and runs a request again when its worker dies (up to maxAttempts runs).
import { EaselError, errors } from '../errors/easel-error.js';
import type { BatchingPlan } from '../scheduling/batching.js';
import type { QueuedRequest, RequestBatcher } from '../scheduling/request-batcher.js';
import { WorkerDiedError, type WorkerProcess } from './worker-process.js';

export interface DispatchObserver {
  stage(model: string, stage: string, seconds: number): void;
  queueTime(model: string, seconds: number): void;
  /** A batch's trip to its worker and back, less the worker's own time on it (IPC, serialization). */
  hop?(model: string, seconds: number): void;
}

/** What the dispatcher tells the supervisor about a worker it feeds. */
export interface WorkerLoad {
  /** Batches in flight on this worker (more than one in step mode). */
  busy: number;
}

export class Dispatcher {
  constructor(
    private readonly model: string,
    private readonly lane: string,
    private readonly batcher: RequestBatcher,
    private readonly plan: () => BatchingPlan,
    /** Runs per request when workers die under it (the crash budget, --max-attempts). */
    private readonly maxAttempts: number,
    private readonly observer?: DispatchObserver,
  ) {}

  /**
   * Feeds one worker until it dies or `stop` aborts. `none`/`request`: one batch at a time (up
   * to batchSize requests, waiting up to maxBatchDelayMs for them). `step`: up to the active-set
   * size in flight at once, sent as they arrive, so the handler's step loop admits them at its
   * next step.
   */
  async serve(proc: WorkerProcess, load: WorkerLoad, stopSignal: AbortSignal): Promise<void> {
    const { mode, maxBatchDelayMs, requestsPerWorker: active } = this.plan();
    const inFlight = new Set<Promise<void>>();
    const stop = AbortSignal.any([stopSignal, proc.exitSignal]);
    while (!stop.aborted && proc.alive) {
      if (mode === 'step' && inFlight.size >= active) {
        await Promise.race(inFlight);
        continue;
      }
      const items = await this.batcher.take(this.lane, mode === 'step' ? active - inFlight.size : active, mode === 'step' ? 0 : maxBatchDelayMs, stop);
      if (items.length === 0) continue;
      if (mode !== 'step') {
        await this.#run(proc, load, items);
        continue;
      }
      // Each request on its own: it joins the step loop now and is answered when it is done,
      // not when the slowest of those taken with it is.
      for (const item of items) {
        const run = this.#run(proc, load, [item]);
        inFlight.add(run);
        void run.finally(() => inFlight.delete(run));
      }
    }
    await Promise.allSettled(inFlight);
  }

  async #run(proc: WorkerProcess, load: WorkerLoad, items: QueuedRequest[]): Promise<void> {
    load.busy += 1;
    const cancels = items.map((item) => {
      const onAbort = (): void => proc.cancel(item.id);
      item.signal.addEventListener('abort', onAbort, { once: true });
      return () => item.signal.removeEventListener('abort', onAbort);
    });
    try {
      const t0 = performance.now();
      const { outcomes, timings } = await proc.run(items.map((i) => ({ id: i.id, input: { ...i.input }, accept: i.accept })));
      for (const [stage, seconds] of Object.entries(timings)) this.observer?.stage(this.model, stage, seconds);
      // The hop there and back: the round trip less what the worker spent on the batch.
      const inWorker = ['preprocess', 'inference', 'postprocess'].reduce((n, s) => n + (timings[s] ?? 0), 0);
      this.observer?.hop?.(this.model, Math.max(0, (performance.now() - t0) / 1000 - inWorker));
      let handedBack = false;
      for (const item of items) {
        const o = outcomes.find((x) => x.id === item.id);
        this.observer?.queueTime(this.model, ((item.startedAt ?? item.enqueuedAt) - item.enqueuedAt) / 1000);
        if (!o) this.batcher.fail(item, new EaselError('EASEL_HANDLER_FAILED', 'the worker returned no result for the request'));
        else if (o.ok) this.batcher.complete(item, { contentType: o.contentType, data: o.data, parts: o.parts }, timings);
        else if (o.error.code === 'EASEL_SHUTTING_DOWN') {
          // A draining worker (SIGTERM) gave it back untouched: it waits for the next worker.
          this.batcher.retry(item, Number.POSITIVE_INFINITY);
          handedBack = true;
        } else this.batcher.fail(item, EaselError.fromJSON(o.error));
      }
      if (handedBack) await proc.exited;
    } catch (err) {
      if (!(err instanceof WorkerDiedError)) throw err;
      // The supervisor sees the dead process and restarts it; the requests run again until their budget is spent.
      for (const item of items) {
        if (!this.batcher.retry(item, this.maxAttempts)) {
          this.batcher.fail(item, errors.workerDied(err.detail, item.attempts));
        }
      }
    } finally {
      for (const c of cancels) c();
      load.busy -= 1;
    }
  }
}
