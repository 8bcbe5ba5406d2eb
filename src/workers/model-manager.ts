// The model registry of one node: each registered model version has a supervisor (its worker
// processes) and a dispatcher (feeding them from the request batcher); the manager answers the
// management API's questions and predicts through the batcher (ModelControl).
import { EaselError, errors } from '../errors/easel-error.js';
import type { RequestBatcher } from '../scheduling/request-batcher.js';
import type { Health, ModelControl, ModelDescription, ModelParameters, PredictOptions, PredictOutcome, RegisterOptions, TextTools, WorkerDescription } from '../models/model-control.js';
import type { ModelEntry, ModelSpec } from '../models/model-spec.js';
import { batchingPlan, type BatchingPlan } from '../scheduling/batching.js';
import type { Logger, TensorSignature, TurnReport } from '../handlers/handler.js';
import { admission, batchKey, checkHandler, type Admission } from '../handlers/admission.js';
import { Dispatcher, type DispatchObserver } from './dispatcher.js';
import { Supervisor, type Slot } from './supervisor.js';
import type { WorkerProfile } from './worker-process.js';

export interface ManagerObserver extends DispatchObserver {
  workerRestart(model: string): void;
  /** One step of a worker's step loop (a UNet turn, a decoder call) over `states` images or sequences; the model's memory for them. */
  step?(model: string, report: TurnReport): void;
}

export interface ModelManagerOptions {
  queue: RequestBatcher;
  logger: Logger;
  allowCustomHandlers: boolean;
  logLevel: string;
  /** Workers write their CPU and ONNX Runtime profiles (serve --profile-dir, --profile-cpu-only). */
  profile?: WorkerProfile | undefined;
  defaultMaxQueueLength: number;
  restartBackoffMs: readonly number[];
  shutdownGraceMs: number;
  /** Runs of a request whose workers die under it (--max-attempts). */
  maxAttempts: number;
  observer?: ManagerObserver;
}

/** One registered model version: its admission parser, batching plan, supervisor and dispatcher. */
class ModelVersion {
  readonly lane: string;
  readonly supervisor: Supervisor;
  readonly dispatcher: Dispatcher;

  constructor(
    public entry: ModelEntry,
    readonly url: string,
    readonly admission: Admission,
    private readonly m: ModelManagerOptions,
  ) {
    this.lane = `${entry.spec.name}:${entry.spec.version}`;
    const model = entry.spec.name;
    const observer = m.observer;
    this.dispatcher = new Dispatcher(model, this.lane, m.queue, () => this.plan, m.maxAttempts, observer);
    this.supervisor = new Supervisor(this.lane, () => this.entry, () => this.plan, {
      logger: m.logger, allowCustomHandlers: m.allowCustomHandlers, logLevel: m.logLevel, profile: m.profile, restartBackoffMs: m.restartBackoffMs, shutdownGraceMs: m.shutdownGraceMs,
      onRestart: () => observer?.workerRestart(model),
      onProgress: (id, progress) => m.queue.progress(id, progress),
      onStep: (report) => observer?.step?.(model, report),
      serve: (proc, load, stop) => this.dispatcher.serve(proc, load, stop),
    });
  }

  get spec(): ModelSpec {
    return this.entry.spec;
  }

  get plan(): BatchingPlan {
    return batchingPlan(this.entry.spec);
  }

  get slots(): Slot[] {
    return this.supervisor.slots;
  }

  liveWorkers(): number {
    return this.supervisor.liveWorkers();
  }

  busyWorkers(): number {
    return this.supervisor.busyWorkers();
  }

  resize(n: number, synchronous: boolean): Promise<void> {
    return this.supervisor.resize(n, synchronous);
  }

  close(): Promise<void> {
    return this.supervisor.close();
  }

  describe(isDefault: boolean, maxQueueLength: number): ModelDescription {
    const s = this.spec;
    const plan = this.plan;
    const pending = this.m.queue.length(this.lane);
    return {
      modelName: s.name, modelVersion: s.version, modelUrl: this.url, handler: s.handler, isDefault,
      minWorkers: s.minWorkers, maxWorkers: s.maxWorkers,
      // Step mode: the UNet batch per resolution in effect (8 when easel.yaml sets none).
      batchSize: plan.mode === 'step' ? plan.stepBatchSize : plan.batchSize,
      maxBatchDelay: s.batching.maxBatchDelayMs, responseTimeout: Math.round(s.responseTimeoutMs / 1000),
      description: s.description,
      batchingMode: plan.mode,
      // Speculative decoding's settings (a draft model, tokens proposed per round), when set.
      ...(s.speculative ? { speculative: { draft: s.speculative.draft, k: s.speculative.k, adaptive: s.speculative.adaptive, maxBatch: s.speculative.maxBatch ?? null } } : {}),
      notes: this.slots.find((slot) => slot.proc?.ready)?.proc?.notes ?? [],
      ...(this.supervisor.failure() ? { error: this.supervisor.failure() } : {}),
      workers: this.slots.map((slot): WorkerDescription => ({
        id: slot.id, pid: slot.proc?.pid ?? null, status: slot.proc?.alive ? slot.shownStatus : slot.status === 'STOPPING' || slot.status === 'FAILED' ? slot.status : slot.failures > 0 ? 'DEAD' : 'STARTING',
        startTime: (slot.proc?.startTime ?? new Date()).toISOString(), memoryUsage: slot.proc?.memoryBytes() ?? null, restarts: slot.restarts,
      })),
      jobQueueStatus: { remainingCapacity: Math.max(0, maxQueueLength - pending), pendingRequests: pending },
    };
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
    const mv = new ModelVersion(entry, options.url, admission(entry), this.o);
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
    this.o.queue.drain(mv.lane, errors.modelNotFound(`model ${name} version ${v} was unregistered`));
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
    return this.#version(name, version).admission.parse(input);
  }

  signature(name: string, version?: string): TensorSignature | undefined {
    return this.#version(name, version).slots.find((slot) => slot.proc?.ready)?.proc?.signature;
  }

  parameters(name: string, version?: string): ModelParameters {
    const { task, parameters } = this.#version(name, version).admission;
    return { task, parameters };
  }

  textTools(name: string, version?: string): TextTools | undefined {
    return this.#version(name, version).admission.text;
  }

  predict(name: string, version: string | undefined, input: Record<string, unknown>, options: PredictOptions): Promise<PredictOutcome> {
    const mv = this.#version(name, version);
    if (mv.slots.length === 0) {
      return Promise.reject(errors.noWorkers(`model ${name} has no workers; scale it up with PUT /models/${name}?min_worker=1`, 5));
    }
    // Admission limits (queue length, queue timeout) were applied by the work queue: what is
    // claimed for this node's workers waits here only for a free worker.
    return this.o.queue.submit(mv.lane, input, { timeoutMs: mv.spec.responseTimeoutMs, ...options,
      batchKey: mv.plan.mode === 'request' ? batchKey(mv.spec, input) : undefined,
    });
  }

  health(): Health {
    const models = [...this.#models.values()].flatMap((m) =>
      [...m.versions.values()].map((mv) => ({ name: mv.spec.name, version: mv.spec.version, liveWorkers: mv.liveWorkers(), busyWorkers: mv.busyWorkers(), minWorkers: mv.spec.minWorkers, capacity: mv.liveWorkers() * Math.max(1, mv.plan.requestsPerWorker), ...(mv.supervisor.failure() ? { failed: mv.supervisor.failure() } : {}) })),
    );
    // A model whose workers were given up on does not hold the others hostage; with nothing else served, the node is not healthy.
    const serving = models.filter((m) => m.failed === undefined);
    return { healthy: serving.every((m) => m.liveWorkers >= m.minWorkers) && (serving.length > 0 || models.length === 0), models };
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
    if (!m) throw errors.modelNotFound(`model "${name}" is not registered`);
    return m;
  }

  #version(name: string, version?: string): ModelVersion {
    const m = this.#model(name);
    const v = version ?? m.defaultVersion;
    const mv = m.versions.get(v);
    if (!mv) throw errors.modelNotFound(`model "${name}" has no version "${v}"; registered versions: ${[...m.versions.keys()].join(', ')}`);
    return mv;
  }
}

