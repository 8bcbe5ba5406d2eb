// Runs queued work on the local workers: claims work of both lanes (durable jobs, synchronous
// predictions) for the models that have live workers, up to what their live workers take at
// once, sends each through the model's worker queue, stores a job's outputs (a prediction's
// result goes back through the queue) and reports progress, previews, cancellation and the outcome.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { errors, isEaselError } from '../errors/easel-error.js';
import type { ClaimPolicy, Job, JobBackend, JobOutput, TextChunk } from '../jobs/job.js';
import { TextJoin } from '../jobs/work-event.js';
import type { ModelControl } from '../models/model-control.js';
import { artifactKey, type ArtifactStore } from '../storage/artifact-store.js';

export interface JobRunnerOptions {
  backend: JobBackend;
  control: ModelControl;
  artifacts: ArtifactStore;
  logger: Logger;
  /** How often to look for work besides the queued/finished events (ms). */
  pollMs?: number;
  /** A job was claimed and is about to run (webhooks' `start`). */
  onStarted?: (job: Job) => void;
  /** A job ended (for metrics and throughput estimates). */
  onFinished?: (job: Job, runSeconds: number) => void;
  /** Text generation: the first text of a run (seconds since submission), a later chunk (seconds per token since the last), and a run's token counts at its end. */
  onTokens?: (model: string, o: { firstTokenSeconds?: number; interTokenSeconds?: number; promptTokens?: number; generatedTokens?: number }) => void;
  /** A run's wait for a worker: from submission to its batch starting (easel_stage_seconds queue_wait). */
  onQueueWait?: (model: string, seconds: number) => void;
  /** A run succeeded with this many outputs (images; 1 for another result). */
  onOutputs?: (model: string, n: number) => void;
  /** This node's pool's routing rules: which work it claims. */
  policy?: ClaimPolicy | undefined;
  /** Runs a job gets when workers or worker nodes die under it (--max-attempts). */
  maxAttempts: number;
}

/** A seed in [0, 2^31) from a job's id. */
function seedOf(id: string): number {
  return createHash('sha256').update(id).digest().readUInt32BE(0) >>> 1;
}

export class JobRunner {
  readonly #o: JobRunnerOptions;
  readonly #running = new Map<string, { job: Job; controller: AbortController }>();
  readonly #inFlight = new Map<string, number>();
  readonly #unsubscribe: (() => void)[] = [];
  readonly #runs = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #pumping = false;
  #again = false;
  #closing = false;

  constructor(o: JobRunnerOptions) {
    this.#o = o;
  }

  start(): void {
    this.#unsubscribe.push(
      this.#o.backend.onQueued(() => this.wake()),
      this.#o.backend.onCancelRequested((id) => this.#running.get(id)?.controller.abort()),
    );
    this.#timer = setInterval(() => this.wake(), this.#o.pollMs ?? 500);
    this.#timer.unref();
    this.wake();
  }

  /** Looks for work now (new job queued, a worker came up, a job finished). */
  wake(): void {
    if (this.#closing) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pump()
      .catch((err: unknown) => this.#o.logger.error({ err }, 'job runner failed to claim work'))
      .finally(() => {
        this.#pumping = false;
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  /** How much work of each model can run at once here: what its live workers take. */
  #capacity(): Map<string, number> {
    const capacity = new Map<string, number>();
    for (const m of this.#o.control.health().models) capacity.set(m.name, (capacity.get(m.name) ?? 0) + m.capacity);
    return capacity;
  }

  async #pump(): Promise<void> {
    const capacity = this.#capacity();
    for (;;) {
      const free = [...capacity].filter(([model, n]) => (this.#inFlight.get(model) ?? 0) < n).map(([model]) => model);
      if (free.length === 0 || this.#closing) return;
      const job = await this.#o.backend.claim(free, this.#o.policy);
      if (!job) return;
      this.#inFlight.set(job.model, (this.#inFlight.get(job.model) ?? 0) + 1);
      const run = this.#run(job).catch((err: unknown) => this.#o.logger.error({ err, job: job.id }, 'job bookkeeping failed'));
      this.#runs.add(run);
      void run.finally(() => this.#runs.delete(run));
    }
  }

  async #run(job: Job): Promise<void> {
    const { backend, control, artifacts, logger } = this.#o;
    const controller = new AbortController();
    this.#running.set(job.id, { job, controller });
    if (job.cancelRequested) controller.abort();
    if (job.durable) this.#o.onStarted?.(job);
    const started = performance.now();
    if (job.durable) logger.info({ job: job.id, model: job.model, attempt: job.attempts }, 'job started');
    else logger.debug({ request: job.id, model: job.model, attempt: job.attempts }, 'prediction started');
    let finished: Job | undefined;
    let lastText: number | undefined;
    let lastStep = 0;
    let promptTokens = 0;
    try {
      // Taken over from nodes that died under it (their locks lapsed) as often as it may run.
      if (job.attempts > this.#o.maxAttempts) throw errors.workerDied('the nodes running it stopped renewing its lock', job.attempts - 1);
      // Admitted where it was submitted when that node knew the model; parsing again is idempotent
      // and covers jobs queued by an API node that does not load the model (distributed mode).
      let request = control.admit(job.model, job.version ?? undefined, job.input);
      // Queued unadmitted (by a node that does not know the model): a seed the admission drew here
      // would differ on a node that takes the job over. One from the job's id is the same everywhere.
      if (job.input.seed == null && typeof request.seed === 'number') request = control.admit(job.model, job.version ?? undefined, { ...job.input, seed: seedOf(job.id) });
      promptTokens = Array.isArray(request.prompt_tokens) ? request.prompt_tokens.length : 0;
      // Its text so far, as chunks placed by their offset: a job taken over from a dead node starts
      // again and logs only what comes after its stored text (a retry on this node goes on from its
      // last report instead: the offsets run on).
      let offset = 0;
      // Reports are written in the order they came (a Redis write may otherwise overtake the one before).
      let recorded: Promise<unknown> = Promise.resolve();
      const record = (write: () => Promise<unknown>, failure: string): void => {
        recorded = recorded.then(write).catch((err: unknown) => logger.warn({ err, job: job.id }, failure));
      };
      const join = new TextJoin(job.durable && job.attempts > 1 ? await backend.loggedTextLength(job.id) : 0);
      const chunk = (text: string, logprobs: TextChunk['logprobs']): TextChunk | undefined => {
        const at = offset;
        offset += text.length;
        return join.next({ text, offset: at, logprobs });
      };
      const outcome = await control.predict(job.model, job.version ?? undefined, request, {
        signal: controller.signal,
        priority: job.priority,
        accept: job.accept ?? undefined,
        attempts: job.attempts - 1,
        // Its worker died and it runs again here: the job says so (one more attempt, progress from the start).
        onRetry: () => record(() => backend.retrying(job.id), 'recording a retry failed'),
        // A synchronous prediction's progress matters only when it streams (text as it is made).
        onProgress: (p) => {
          if (p.text !== undefined) {
            const now = Date.now();
            if (lastText === undefined) this.#o.onTokens?.(job.model, { firstTokenSeconds: (now - job.createdAt) / 1000 });
            else if (p.step > lastStep) this.#o.onTokens?.(job.model, { interTokenSeconds: (now - lastText) / 1000 / (p.step - lastStep) });
            lastText = now;
            lastStep = p.step;
          }
          if (!job.durable && p.text === undefined) return;
          const text = p.text === undefined ? undefined : chunk(p.text, p.logprobs);
          if (p.text !== undefined && text === undefined) return;
          record(() => backend.progress(job.id, { step: p.step, total: p.total }, p.preview, text), 'recording progress failed');
        },
      });
      await recorded;
      // In the queue until claimed, then in the worker's batcher until its batch started.
      const queueWait = Math.max(0, (job.startedAt ?? Date.now()) - job.createdAt) / 1000 + outcome.queueSeconds;
      this.#o.onQueueWait?.(job.model, queueWait);
      this.#o.onOutputs?.(job.model, outcome.result.parts?.length ?? 1);
      if (!job.durable) {
        finished = await backend.complete(job.id, [], outcome.result);
        return;
      }
      const outputs: JobOutput[] = [];
      for (const [n, part] of (outcome.result.parts ?? [outcome.result]).entries()) {
        const key = artifactKey(job.id, n, part.contentType);
        await artifacts.put(key, part.data, part.contentType);
        outputs.push({ key, contentType: part.contentType, bytes: part.data.byteLength });
      }
      // Its stages: waiting for a worker, and its batch's time in the worker.
      finished = await backend.complete(job.id, outputs, undefined, { queue_wait: queueWait, ...outcome.timings });
    } catch (err) {
      const code = isEaselError(err) ? err.code : 'EASEL_INTERNAL';
      if (controller.signal.aborted || code === 'EASEL_CANCELLED') {
        const at = (await backend.get(job.id))?.progress;
        finished = await backend.fail(job.id, { code: 'EASEL_CANCELLED', message: at ? `cancelled after ${at.step} of ${at.total} steps` : 'cancelled' }, 'cancelled');
      } else if (this.#closing || (isEaselError(err) && err.requeue)) {
        // Not the job's fault: it goes back to the queue for this or another worker.
        await backend.release(job.id);
      } else {
        if (!isEaselError(err)) logger.error({ err, job: job.id }, 'job failed unexpectedly');
        finished = await backend.fail(job.id, isEaselError(err) ? err.toJSON() : { code, message: 'the job failed; details are in the server log' });
      }
    } finally {
      // A run's tokens count whether it finished, failed or was cancelled: they were made.
      if (lastText !== undefined) this.#o.onTokens?.(job.model, { promptTokens, generatedTokens: lastStep });
      this.#running.delete(job.id);
      this.#inFlight.set(job.model, (this.#inFlight.get(job.model) ?? 1) - 1);
      if (finished?.durable) this.#o.onFinished?.(finished, (performance.now() - started) / 1000);
      this.wake();
    }
  }

  /** Resolves when every job this runner started has been settled (finished or handed back). */
  async drained(): Promise<void> {
    while (this.#runs.size > 0) await Promise.allSettled([...this.#runs]);
  }

  /** Stops claiming; jobs still running when the server stops are handed back to the queue. */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#timer);
    for (const off of this.#unsubscribe.splice(0)) off();
  }
}
