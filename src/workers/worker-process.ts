// The server's handle on one worker process: starts it, sends it batches, and notices when it
// dies (every pending batch then rejects with WorkerDiedError).
import type { Progress } from '../models/model-control.js';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EaselError } from '../errors/easel-error.js';
import type { TensorSignature, TurnReport } from '../handlers/handler.js';
import { graphBytes } from '../runtime/graph-bytes.js';
import { ORT_PROFILE_ENV } from '../runtime/profile-env.js';
import type { ModelEntry } from '../models/model-spec.js';
import type { BatchingPlan } from '../scheduling/batching.js';
import type { ChildCommand, ParentCommand, Report, RequestOutcome, WorkRequest } from './protocol.js';

export class WorkerDiedError extends Error {
  constructor(readonly detail: string) {
    super(`worker process died: ${detail}`);
  }
}

export interface WorkerProfile {
  dir: string;
  onnxRuntime: boolean;
}

/**
 * Below this many bytes of ONNX graphs in its folder, a model's workers run V8 with
 * `--single-threaded-gc`. A worker's garbage is mostly onnxruntime-node's: it copies every output
 * of every run into a fresh ArrayBuffer (even outputs given preallocated), a decoder's whole KV
 * cache each step, and V8 answers that much outside-the-heap memory with a mark of the heap every
 * few tens of milliseconds. For a small model the copies are small and the steps short: marking
 * on V8's helper threads takes a core from ONNX Runtime and the API process, and on the worker's
 * own thread it costs less (tiny-llama served at 16 streams, 2-core VM: 2.4-3.3k -> 3.2-4.0k
 * tokens/s, interleaved rounds). For a large one the copies are large (the 102M-parameter bench
 * model's cache at 16 rows: ~50 MB a step) and marking on one thread falls behind them: it served
 * 27 % faster (462 vs 364 tokens/s, int8) but held 877 MB against 577, so large models keep V8's
 * concurrent marking. Both measured before a worker stopped loading admission's modules (its heap
 * ~11.6 -> ~8 MB; full marks under load much rarer since), not again. The copies could go when
 * onnxruntime-node returns preallocated outputs as they are (microsoft/onnxruntime#32346, open):
 * the decoder passes none today, since they would be copied too.
 */
export const SINGLE_THREADED_GC_BELOW_BYTES = 32 * 1024 * 1024;

/** The V8 flags of a model's worker processes: by the bytes of the ONNX graphs in its folder (SINGLE_THREADED_GC_BELOW_BYTES). */
export function workerV8Flags(modelDir: string): string[] {
  const graphs = readdirSync(modelDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.onnx'));
  // A link that leads nowhere counts nothing (the worker's own load reports it).
  const bytes = graphs.reduce((n, f) => n + graphBytes(path.join(modelDir, f)), 0);
  return bytes < SINGLE_THREADED_GC_BELOW_BYTES ? ['--single-threaded-gc'] : [];
}

/** The workers' profiling from the config (--profile-dir, --profile-cpu-only), or none. */
export function workerProfile(config: { profileDir?: string | undefined; profileCpuOnly: boolean }): WorkerProfile | undefined {
  return config.profileDir === undefined ? undefined : { dir: config.profileDir, onnxRuntime: !config.profileCpuOnly };
}

export interface WorkerProcessOptions {
  id: string;
  entry: ModelEntry;
  batching: BatchingPlan;
  allowCustomHandlers: boolean;
  logLevel: string;
  /** Profile this worker: V8's CPU profile and (unless not asked) ONNX Runtime's, written into the folder when it stops. */
  profile?: WorkerProfile | undefined;
  onProgress?: (id: string, progress: Progress) => void;
  /** A step of the worker's step loop (a UNet turn, a decoder call) ran over this many images or sequences. */
  onStep?: (report: TurnReport) => void;
}

/**
 * Workers still running when this process exits (a shutdown past its grace period, a second
 * signal) are killed with it: one stuck in a long ONNX Runtime call cannot notice that its
 * server is gone, and would keep a core busy until the call returns.
 */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

const isTs = import.meta.url.endsWith('.ts');
const ENTRY = fileURLToPath(new URL(isTs ? './worker-main.ts' : './worker-main.js', import.meta.url));

export class WorkerProcess {
  readonly id: string;
  readonly startTime = new Date();
  readonly exited: Promise<void>;
  readonly #child: ChildProcess;
  readonly #exitController = new AbortController();
  readonly #batches = new Map<number, { resolve(v: { outcomes: RequestOutcome[]; timings: Record<string, number> }): void; reject(e: unknown): void }>();
  #nextBatch = 1;
  #ready = false;

  /** The handler's notes about its model, and its tensors where it has them, from the ready message. */
  notes: string[] = [];
  signature: TensorSignature | undefined;

  constructor(private readonly o: WorkerProcessOptions) {
    this.id = o.id;
    // A folder per model: V8 names each profile CPU.<date>.<time>.<pid>…cpuprofile.
    const profileDir = o.profile && path.resolve(o.profile.dir, o.entry.spec.name);
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    this.#child = fork(ENTRY, [], {
      serialization: 'advanced',
      execArgv: [...(isTs ? ['--import', 'tsx'] : []), ...workerV8Flags(o.entry.dir), ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
      // ONNX Runtime's profiles go beside it (OnnxSession reads this in the worker).
      env: profileDir && o.profile?.onnxRuntime ? { ...process.env, [ORT_PROFILE_ENV]: profileDir } : process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    live.add(this.#child);
    this.exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        live.delete(this.#child);
        const err = new WorkerDiedError(signal ? `killed by ${signal}` : `exited with code ${code}`);
        this.#exitController.abort(err);
        for (const b of this.#batches.values()) b.reject(err);
        this.#batches.clear();
        resolve();
      });
    });
    this.#child.on('message', (m: ChildCommand) => this.#onMessage(m));
  }

  get pid(): number | null {
    return this.#child.pid ?? null;
  }

  get alive(): boolean {
    return !this.#exitController.signal.aborted;
  }

  get ready(): boolean {
    return this.#ready && this.alive;
  }

  /** Aborts when the process exits. */
  get exitSignal(): AbortSignal {
    return this.#exitController.signal;
  }

  /** Loads the handler; rejects with the handler's error or WorkerDiedError. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: ChildCommand): void => {
        if (m.type === 'ready') {
          this.#ready = true;
          this.notes = m.notes ?? [];
          this.signature = m.signature;
          done();
          resolve();
        } else if (m.type === 'init-failed') {
          done();
          this.kill();
          reject(EaselError.fromJSON(m.error));
        }
      };
      const onExit = (): void => {
        done();
        reject(this.#exitController.signal.reason);
      };
      const done = (): void => {
        this.#child.off('message', onMessage);
        this.#exitController.signal.removeEventListener('abort', onExit);
      };
      this.#child.on('message', onMessage);
      this.#exitController.signal.addEventListener('abort', onExit, { once: true });
      this.#send({ type: 'init', workerId: this.id, modelDir: this.o.entry.dir, draftDir: this.o.entry.draftDir, spec: this.o.entry.spec, batching: this.o.batching, allowCustomHandlers: this.o.allowCustomHandlers, logLevel: this.o.logLevel });
    });
  }

  run(requests: WorkRequest[]): Promise<{ outcomes: RequestOutcome[]; timings: Record<string, number> }> {
    if (!this.alive) return Promise.reject(this.#exitController.signal.reason);
    const batchId = this.#nextBatch++;
    return new Promise((resolve, reject) => {
      this.#batches.set(batchId, { resolve, reject });
      this.#send({ type: 'run', batchId, requests });
    });
  }

  cancel(id: string): void {
    this.#send({ type: 'cancel', id });
  }

  /** Asks the worker to dispose its handler and exit; kills it after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (!this.alive) return;
    this.#send({ type: 'shutdown' });
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.alive) this.#child.kill('SIGKILL');
  }

  /** Resident memory in bytes, from /proc (null where unavailable). */
  memoryBytes(): number | null {
    try {
      const pages = Number(readFileSync(`/proc/${this.#child.pid}/statm`, 'utf8').split(' ')[1]);
      return pages * 4096;
    } catch {
      return null;
    }
  }

  #onMessage(m: ChildCommand): void {
    if (m.type === 'done') {
      const b = this.#batches.get(m.batchId);
      this.#batches.delete(m.batchId);
      b?.resolve({ outcomes: m.outcomes, timings: m.timings });
    } else if (m.type === 'reports') {
      for (const r of m.items) this.#onReport(r);
    }
  }

  #onReport(r: Report): void {
    if (r.type === 'progress') {
      // The report as the handler made it: a field added to Progress travels without a change here.
      const { type: _type, id, ...progress } = r;
      this.o.onProgress?.(id, progress);
    } else {
      const { type: _, ...turn } = r;
      this.o.onStep?.(turn);
    }
  }

  #send(m: ParentCommand): void {
    if (this.#child.connected) this.#child.send(m);
  }
}
