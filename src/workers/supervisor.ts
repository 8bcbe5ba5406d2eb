// The supervisor of one model version's worker processes: starts them, keeps them alive
// (restart with backoff), scales them to a count, and stops them with a grace period. While a
// process is live it lends it to the dispatcher, which feeds it work.
import type { Logger, TurnReport } from '../handlers/handler.js';
import type { Progress, WorkerStatus } from '../models/model-control.js';
import type { ModelEntry } from '../models/model-spec.js';
import type { BatchingPlan } from '../scheduling/batching.js';
import type { WorkerLoad } from './dispatcher.js';
import { WorkerDiedError, WorkerProcess, type WorkerProfile } from './worker-process.js';

export interface SupervisorOptions {
  logger: Logger;
  allowCustomHandlers: boolean;
  logLevel: string;
  profile?: WorkerProfile | undefined;
  restartBackoffMs: readonly number[];
  shutdownGraceMs: number;
  onRestart?(): void;
  onProgress?(requestId: string, progress: Progress): void;
  /** A step of the worker's step loop ran over this many states. */
  onStep?(report: TurnReport): void;
  /** Feeds a live worker until it dies or `stop` aborts (the dispatcher). */
  serve(proc: WorkerProcess, load: WorkerLoad, stop: AbortSignal): Promise<void>;
}

/**
 * A worker that dies this many times in a row, each time within FAST_FAILURE_MS of its start and
 * before it made anything (a model that cannot load, or crashes at once on every batch), is given
 * up on: no more restarts. One killed at work (it had reported progress) starts the count again;
 * the requests it held have their own budget (--max-attempts).
 */
const MAX_FAST_FAILURES = 5;
const FAST_FAILURE_MS = 60_000;

export class Slot implements WorkerLoad {
  proc: WorkerProcess | undefined;
  status: WorkerStatus = 'STARTING';
  restarts = 0;
  failures = 0;
  /** Deaths in a row that came soon after the start; why the last one died. */
  fastFailures = 0;
  lastError: string | undefined;
  busy = 0;
  readonly stop = new AbortController();
  loop: Promise<void> = Promise.resolve();
  constructor(readonly id: string) {}

  /** READY while idle, BUSY while the dispatcher has work on it. */
  get shownStatus(): WorkerStatus {
    if (this.status === 'READY' && this.busy > 0) return 'BUSY';
    return this.status;
  }
}

export class Supervisor {
  readonly slots: Slot[] = [];
  #nextSlot = 0;
  #readyWaiters: ((failure?: unknown) => void)[] = [];

  constructor(
    private readonly name: string,
    private entry: () => ModelEntry,
    private readonly plan: () => BatchingPlan,
    private readonly m: SupervisorOptions,
  ) {}

  liveWorkers(): number {
    return this.slots.filter((s) => s.proc?.ready).length;
  }

  /** Why the workers were given up on, when every one of them was (none live or starting). */
  failure(): string | undefined {
    if (this.slots.length === 0 || !this.slots.every((s) => s.status === 'FAILED')) return undefined;
    return `its workers died ${MAX_FAST_FAILURES} times in a row within ${FAST_FAILURE_MS / 1000} s of starting and are no longer restarted: ${this.slots[0]!.lastError ?? 'no reason given'}`;
  }

  /** Live workers with a batch in hand. */
  busyWorkers(): number {
    return this.slots.filter((s) => s.proc?.ready && s.busy > 0).length;
  }

  /** Starts or stops slots to reach `n` workers. */
  async resize(n: number, synchronous: boolean): Promise<void> {
    // Workers given up on are replaced: scaling is how an operator asks to try again.
    for (let i = this.slots.length - 1; i >= 0; i--) if (this.slots[i]!.status === 'FAILED') this.slots.splice(i, 1);
    while (this.slots.length < n) {
      const slot = new Slot(`${this.name}#${++this.#nextSlot}`);
      this.slots.push(slot);
      slot.loop = this.#run(slot);
    }
    const removed = this.slots.splice(n);
    const stopping = removed.map((s) => this.#stopSlot(s));
    if (synchronous) {
      await Promise.all(stopping);
      await this.#waitReady(n);
    }
  }

  async close(): Promise<void> {
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => this.#stopSlot(s)));
  }

  /** Resolves when `n` workers are live; rejects with the handler's error if a worker fails to start. */
  #waitReady(n: number): Promise<void> {
    if (this.liveWorkers() >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (failure?: unknown): void => {
        if (failure !== undefined) reject(failure);
        else if (this.liveWorkers() >= n) resolve();
        else this.#readyWaiters.push(check);
      };
      this.#readyWaiters.push(check);
    });
  }

  #notifyReady(failure?: unknown): void {
    const waiters = this.#readyWaiters.splice(0);
    for (const w of waiters) w(failure);
  }

  async #stopSlot(slot: Slot): Promise<void> {
    slot.status = 'STOPPING';
    slot.stop.abort();
    await slot.loop;
  }

  /** One worker's life: start, pull batches, run them; on death, restart after a backoff. */
  async #run(slot: Slot): Promise<void> {
    const log = this.m.logger;
    while (!slot.stop.signal.aborted) {
      const started = Date.now();
      // Whether it made anything (a progress report, a step) before it died: a worker killed at
      // work is not a crash loop.
      let worked = false;
      const proc = new WorkerProcess({
        id: slot.id, entry: this.entry(), batching: this.plan(), allowCustomHandlers: this.m.allowCustomHandlers, logLevel: this.m.logLevel, profile: this.m.profile,
        onProgress: (id, progress) => {
          worked = true;
          this.m.onProgress?.(id, progress);
        },
        onStep: (report) => {
          worked = true;
          this.m.onStep?.(report);
        },
      });
      slot.proc = proc;
      slot.status = 'STARTING';
      try {
        await proc.start();
        slot.status = 'READY';
        slot.failures = 0;
        log.info({ worker: slot.id, pid: proc.pid }, 'worker ready');
        this.#notifyReady();
        await this.m.serve(proc, slot, slot.stop.signal);
      } catch (err) {
        slot.lastError = (err as Error).message;
        if (!(err instanceof WorkerDiedError)) {
          log.error({ worker: slot.id, err }, 'worker failed to start');
          this.#notifyReady(err);
        }
      }
      if (slot.stop.signal.aborted) {
        await proc.stop(this.m.shutdownGraceMs);
        break;
      }
      proc.kill();
      await proc.exited;
      slot.status = 'DEAD';
      slot.fastFailures = worked ? 0 : Date.now() - started < FAST_FAILURE_MS ? slot.fastFailures + 1 : 1;
      if (slot.fastFailures >= MAX_FAST_FAILURES) {
        slot.status = 'FAILED';
        log.error({ worker: slot.id, failures: slot.fastFailures, reason: slot.lastError }, 'worker keeps dying; no longer restarted (scale the model to try again)');
        this.#notifyReady(new Error(slot.lastError ?? 'the worker keeps dying'));
        return;
      }
      slot.restarts++;
      this.m.onRestart?.();
      const backoff = this.m.restartBackoffMs[Math.min(slot.failures++, this.m.restartBackoffMs.length - 1)]!;
      log.warn({ worker: slot.id, backoffMs: backoff }, 'worker died; restarting');
      this.#notifyReady();
      await sleep(backoff, slot.stop.signal);
    }
    slot.status = 'STOPPING';
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
