// The supervisor: for each registered model version, keeps its worker processes alive (restart
// with backoff), pulls batches for them from the inference queue, retries a request once when
// its worker dies, and answers the management API's questions.
import { EaselError } from '../errors/easel-error.js';
import type { InferenceQueue, Outcome, QueuedRequest } from '../jobs/inference-queue.js';
import type { Health, ModelControl, ModelDescription, PredictOptions, RegisterOptions, WorkerDescription, WorkerStatus } from '../models/model-control.js';
import { batchingMode, requestsPerWorker, stepBatchSize, type ModelEntry, type ModelSpec } from '../models/model-spec.js';
import type { Logger } from '../handlers/handler.js';
import { batchKey, checkHandler, requestParser, type RequestParser } from '../handlers/admission.js';
import { WorkerDiedError, WorkerProcess } from './worker-process.js';

/** Tries per request: the first run, and one retry on another worker if the first one's died. */
const MAX_ATTEMPTS = 2;

export interface ManagerObserver {
  stage(model: string, stage: string, seconds: number): void;
  queueTime(model: string, seconds: number): void;
  workerRestart(model: string): void;
  /** One model step (UNet turn) over `images` requests' images. */
  step?(model: string, images: number, seconds: number): void;
}

export interface ModelManagerOptions {
  queue: InferenceQueue;
  logger: Logger;
  allowCustomHandlers: boolean;
  logLevel: string;
  defaultMaxQueueLength: number;
  restartBackoffMs: readonly number[];
  shutdownGraceMs: number;
  observer?: ManagerObserver;
}

class Slot {
  proc: WorkerProcess | undefined;
  status: WorkerStatus = 'STARTING';
  restarts = 0;
  failures = 0;
  /** Batches in flight on this worker (more than one in step mode). */
  busy = 0;
  readonly stop = new AbortController();
  loop: Promise<void> = Promise.resolve();
  constructor(readonly id: string) {}
}

class ModelVersion {
  readonly slots: Slot[] = [];
  readonly lane: string;
  #nextSlot = 0;
  #readyWaiters: ((failure?: unknown) => void)[] = [];

  constructor(
    public entry: ModelEntry,
    readonly url: string,
    readonly parse: RequestParser,
    private readonly m: ModelManagerOptions,
  ) {
    this.lane = `${entry.spec.name}:${entry.spec.version}`;
  }

  get spec(): ModelSpec {
    return this.entry.spec;
  }

  liveWorkers(): number {
    return this.slots.filter((s) => s.proc?.ready).length;
  }

  /** Starts or stops slots to reach `n` workers. */
  async resize(n: number, synchronous: boolean): Promise<void> {
    while (this.slots.length < n) {
      const slot = new Slot(`${this.lane}#${++this.#nextSlot}`);
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

  describe(isDefault: boolean, maxQueueLength: number): ModelDescription {
    const s = this.spec;
    const pending = this.m.queue.length(this.lane);
    return {
      modelName: s.name, modelVersion: s.version, modelUrl: this.url, handler: s.handler, isDefault,
      minWorkers: s.minWorkers, maxWorkers: s.maxWorkers,
      // Step mode: the UNet batch per resolution in effect (8 when easel.yaml sets none).
      batchSize: batchingMode(s) === 'step' ? stepBatchSize(s) : s.batching.batchSize,
      maxBatchDelay: s.batching.maxBatchDelayMs, responseTimeout: Math.round(s.responseTimeoutMs / 1000),
      description: s.description,
      batchingMode: batchingMode(s),
      notes: this.slots.find((slot) => slot.proc?.ready)?.proc?.notes ?? [],
      workers: this.slots.map((slot): WorkerDescription => ({
        id: slot.id, pid: slot.proc?.pid ?? null, status: slot.proc?.alive ? slot.status : slot.status === 'STOPPING' ? 'STOPPING' : slot.failures > 0 ? 'DEAD' : 'STARTING',
        startTime: (slot.proc?.startTime ?? new Date()).toISOString(), memoryUsage: slot.proc?.memoryBytes() ?? null, restarts: slot.restarts,
      })),
      jobQueueStatus: { remainingCapacity: Math.max(0, maxQueueLength - pending), pendingRequests: pending },
    };
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
      const proc = new WorkerProcess({ id: slot.id, entry: this.entry, allowCustomHandlers: this.m.allowCustomHandlers, logLevel: this.m.logLevel, onProgress: (id, progress) => this.m.queue.progress(id, progress), onStep: (images, seconds) => this.m.observer?.step?.(this.spec.name, images, seconds) });
      slot.proc = proc;
      slot.status = 'STARTING';
      try {
        await proc.start();
        slot.status = 'READY';
        slot.failures = 0;
        log.info({ worker: slot.id, pid: proc.pid }, 'worker ready');
        this.#notifyReady();
        await this.#serve(slot, proc);
      } catch (err) {
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
      slot.restarts++;
      this.m.observer?.workerRestart(this.spec.name);
      const backoff = this.m.restartBackoffMs[Math.min(slot.failures++, this.m.restartBackoffMs.length - 1)]!;
      log.warn({ worker: slot.id, backoffMs: backoff }, 'worker died; restarting');
      this.#notifyReady();
      await sleep(backoff, slot.stop.signal);
    }
    slot.status = 'STOPPING';
  }

  /**
   * Feeds one worker. `none`/`request`: one batch at a time (up to batchSize requests, waiting up
   * to maxBatchDelayMs for them). `step`: up to the active-set size in flight at once, sent as
   * they arrive, so the handler's step loop admits them at its next step.
   */
  async #serve(slot: Slot, proc: WorkerProcess): Promise<void> {
    const { maxBatchDelayMs } = this.spec.batching;
    const mode = batchingMode(this.spec);
    const active = requestsPerWorker(this.spec);
    const inFlight = new Set<Promise<void>>();
    const stop = AbortSignal.any([slot.stop.signal, proc.exitSignal]);
    while (!stop.aborted && proc.alive) {
      if (mode === 'step' && inFlight.size >= active) {
        await Promise.race(inFlight);
        continue;
      }
      const items = await this.m.queue.take(this.lane, mode === 'step' ? active - inFlight.size : active, mode === 'step' ? 0 : maxBatchDelayMs, stop);
      if (items.length === 0) continue;
      if (mode !== 'step') {
        await this.#runItems(slot, proc, items);
        continue;
      }
      // Each request on its own: it joins the step loop now and is answered when it is done,
      // not when the slowest of those taken with it is.
      for (const item of items) {
        const run = this.#runItems(slot, proc, [item]);
        inFlight.add(run);
        void run.finally(() => inFlight.delete(run));
      }
    }
    await Promise.allSettled(inFlight);
  }

  async #runItems(slot: Slot, proc: WorkerProcess, items: QueuedRequest[]): Promise<void> {
    slot.status = 'BUSY';
    slot.busy += 1;
    const cancels = items.map((item) => {
      const onAbort = (): void => proc.cancel(item.id);
      item.signal.addEventListener('abort', onAbort, { once: true });
      return () => item.signal.removeEventListener('abort', onAbort);
    });
    try {
      const { outcomes, timings } = await proc.run(items.map((i) => ({ id: i.id, input: { ...i.input }, accept: i.accept })));
      for (const [stage, seconds] of Object.entries(timings)) this.m.observer?.stage(this.spec.name, stage, seconds);
      let handedBack = false;
      for (const item of items) {
        const o = outcomes.find((x) => x.id === item.id);
        this.#observeQueue(item);
        if (!o) this.m.queue.fail(item, new EaselError('EASEL_HANDLER_FAILED', 'the worker returned no result for the request'));
        else if (o.ok) this.m.queue.complete(item, { contentType: o.contentType, data: o.data }, timings);
        else if (o.error.code === 'EASEL_SHUTTING_DOWN') {
          // A draining worker (SIGTERM) gave it back untouched: it waits for the next worker.
          this.m.queue.retry(item, Number.POSITIVE_INFINITY);
          handedBack = true;
        } else this.m.queue.fail(item, EaselError.fromJSON(o.error));
      }
      if (handedBack) await proc.exited;
    } catch (err) {
      if (!(err instanceof WorkerDiedError)) throw err;
      // The slot's loop sees the dead process and restarts it; the requests get one more try.
      for (const item of items) {
        if (!this.m.queue.retry(item, MAX_ATTEMPTS)) {
          this.m.queue.fail(item, new EaselError('EASEL_WORKER_DIED', `the worker running this request died (${err.detail}) on ${item.attempts} attempts; the request was not completed`));
        }
      }
    } finally {
      for (const c of cancels) c();
      slot.busy -= 1;
      if (proc.alive && slot.busy === 0) slot.status = 'READY';
    }
  }

  #observeQueue(item: QueuedRequest): void {
    this.m.observer?.queueTime(this.spec.name, ((item.startedAt ?? item.enqueuedAt) - item.enqueuedAt) / 1000);
  }
}

export class ModelManager implements ModelControl {
  readonly #models = new Map<string, { versions: Map<string, ModelVersion>; defaultVersion: string }>();
  #closing: Promise<void> | undefined;

  constructor(private readonly o: ModelManagerOptions) {}

  async register(entry: ModelEntry, options: RegisterOptions): Promise<ModelDescription> {
    const { name, version } = entry.spec;
    const model = this.#models.get(name);
    if (model?.versions.has(version)) throw new EaselError('EASEL_MODEL_EXISTS', `model ${name} version ${version} is already registered`);
    // Refused up front what every worker would refuse at start (and restart forever).
    checkHandler(entry.spec, this.o.allowCustomHandlers);
    // Builds the handler's admission rules: an easel.yaml that cannot make a valid request is refused here.
    const mv = new ModelVersion(entry, options.url, requestParser(entry.spec, entry.dir), this.o);
    if (model) model.versions.set(version, mv);
    else this.#models.set(name, { versions: new Map([[version, mv]]), defaultVersion: version });
    const workers = options.initialWorkers ?? entry.spec.minWorkers;
    if (options.initialWorkers !== undefined && options.initialWorkers > entry.spec.minWorkers) {
      mv.entry = { ...entry, spec: { ...entry.spec, minWorkers: workers, maxWorkers: Math.max(entry.spec.maxWorkers, workers) } };
    }
    try {
      await mv.resize(workers, options.synchronous);
    } catch (err) {
      // A synchronous registration whose workers cannot start is refused, not left half-done.
      await this.unregister(name, version).catch(() => undefined);
      throw err;
    }
    return mv.describe(this.#isDefault(name, version), this.#maxQueue(mv.spec));
  }

  async unregister(name: string, version?: string): Promise<void> {
    const model = this.#model(name);
    const v = version ?? model.defaultVersion;
    const mv = this.#version(name, v);
    model.versions.delete(v);
    if (model.versions.size === 0) this.#models.delete(name);
    else if (model.defaultVersion === v) model.defaultVersion = [...model.versions.keys()][0]!;
    this.o.queue.drain(mv.lane, new EaselError('EASEL_MODEL_NOT_FOUND', `model ${name} version ${v} was unregistered`));
    await mv.close();
  }

  async scale(name: string, version: string | undefined, minWorkers: number | undefined, maxWorkers: number | undefined, synchronous: boolean): Promise<void> {
    const mv = this.#version(name, version);
    const min = minWorkers ?? mv.spec.minWorkers;
    const max = Math.max(maxWorkers ?? mv.spec.maxWorkers, min);
    if (maxWorkers !== undefined && maxWorkers < min) throw new EaselError('EASEL_INVALID_PARAMETER', `max_worker (${maxWorkers}) must be >= min_worker (${min})`, { field: 'max_worker' });
    mv.entry = { ...mv.entry, spec: { ...mv.spec, minWorkers: min, maxWorkers: max } };
    await mv.resize(min, synchronous);
  }

  setDefault(name: string, version: string): void {
    this.#version(name, version);
    this.#model(name).defaultVersion = version;
  }

  list(): { modelName: string; modelUrl: string }[] {
    return [...this.#models.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, m]) => ({ modelName: name, modelUrl: m.versions.get(m.defaultVersion)!.url }));
  }

  describe(name: string, version?: string): ModelDescription[] {
    const model = this.#model(name);
    const versions = version === 'all' ? [...model.versions.values()] : [this.#version(name, version)];
    return versions.map((mv) => mv.describe(this.#isDefault(name, mv.spec.version), this.#maxQueue(mv.spec)));
  }

  spec(name: string, version?: string): ModelSpec {
    return this.#version(name, version).spec;
  }

  admit(name: string, version: string | undefined, input: Readonly<Record<string, unknown>>): Record<string, unknown> {
    return this.#version(name, version).parse(input);
  }

  predict(name: string, version: string | undefined, input: Record<string, unknown>, options: PredictOptions): Promise<Outcome> {
    const mv = this.#version(name, version);
    if (mv.slots.length === 0) {
      return Promise.reject(new EaselError('EASEL_NO_WORKERS', `model ${name} has no workers; scale it up with PUT /models/${name}?min_worker=1`, { retryAfterSeconds: 5 }));
    }
    // Admission limits (queue length, queue timeout) were applied by the work queue: what is
    // claimed for this node's workers waits here only for a free worker.
    return this.o.queue.submit(mv.lane, input, { timeoutMs: mv.spec.responseTimeoutMs, maxQueueLength: Number.POSITIVE_INFINITY, ...options,
      batchKey: batchingMode(mv.spec) === 'request' ? batchKey(mv.spec, input) : undefined,
    });
  }

  health(): Health {
    const models = [...this.#models.values()].flatMap((m) =>
      [...m.versions.values()].map((mv) => ({ name: mv.spec.name, version: mv.spec.version, liveWorkers: mv.liveWorkers(), minWorkers: mv.spec.minWorkers })),
    );
    return { healthy: models.every((m) => m.liveWorkers >= m.minWorkers), models };
  }

  /** Stops every worker (each gets the shutdown grace period). Memoized. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      const all = [...this.#models.values()].flatMap((m) => [...m.versions.values()]);
      this.#models.clear();
      await Promise.all(all.map((mv) => mv.close()));
    })());
  }

  #maxQueue(spec: ModelSpec): number {
    return spec.maxQueueLength ?? this.o.defaultMaxQueueLength;
  }

  #isDefault(name: string, version: string): boolean {
    return this.#models.get(name)?.defaultVersion === version;
  }

  #model(name: string): { versions: Map<string, ModelVersion>; defaultVersion: string } {
    const m = this.#models.get(name);
    if (!m) throw new EaselError('EASEL_MODEL_NOT_FOUND', `model "${name}" is not registered`);
    return m;
  }

  #version(name: string, version?: string): ModelVersion {
    const m = this.#model(name);
    const v = version ?? m.defaultVersion;
    const mv = m.versions.get(v);
    if (!mv) throw new EaselError('EASEL_MODEL_NOT_FOUND', `model "${name}" has no version "${v}"; registered versions: ${[...m.versions.keys()].join(', ')}`);
    return mv;
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
