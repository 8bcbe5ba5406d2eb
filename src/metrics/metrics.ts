// The Prometheus registry and every metric Easel exports, in base units.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { gpuGauges } from './gpu.js';
import type { TurnReport } from '../handlers/handler.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export interface MetricsSources {
  /** This node's worker pool and what one of its workers costs per hour. */
  pool?: { pool: string; pricePerHour: number } | undefined;
  /** Synchronous predictions waiting per model (the work queue's non-durable lane). */
  queueLength(): Promise<{ model: string; length: number }[]>;
  liveWorkers(): { model: string; live: number; busy: number }[];
  /** Jobs waiting per model (the job queue's depth). */
  queuedJobs(): Promise<{ model: string; queued: number }[]>;
}

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'easel_requests_total', help: 'Inference requests by model and HTTP status.', labelNames: ['model', 'status'] as const, registers: [this.registry] });
  readonly requestDuration = new Histogram({ name: 'easel_request_duration_seconds', help: 'Inference request latency, from receipt to response.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly queueTime = new Histogram({ name: 'easel_queue_time_seconds', help: 'Time a request waited in the queue before a worker took it.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly stage = new Histogram({ name: 'easel_stage_seconds', help: 'Time per stage of the serving path: queue_wait and ipc (API process); text_encode, denoise, vae_decode or prefill, decode, finish (each call of a worker\'s step loop, over its whole batch); preprocess, postprocess and handler stages such as encode_image (per batch).', labelNames: ['model', 'stage'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly sessionRun = new Counter({ name: 'easel_session_run_seconds_total', help: 'Seconds workers spent inside ONNX Runtime session.run(), per model (what the stages spend outside it is serving overhead).', labelNames: ['model'] as const, registers: [this.registry] });
  readonly handlerStage = new Histogram({ name: 'easel_handler_stage_seconds', help: 'Handler time per stage (preprocess, inference, postprocess, and handler-defined stages), per batch.', labelNames: ['model', 'stage'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly jobs = new Counter({ name: 'easel_jobs_total', help: 'Jobs that reached a final status, by model and status (succeeded, failed, cancelled).', labelNames: ['model', 'status'] as const, registers: [this.registry] });
  readonly jobQueueTime = new Histogram({ name: 'easel_job_queue_time_seconds', help: 'Time from job submission to a worker starting it.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly jobRunTime = new Histogram({ name: 'easel_job_run_time_seconds', help: 'Time a job ran on a worker, to its final status.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly stepBatchSize = new Histogram({ name: 'easel_step_batch_size', help: 'Images carried by each denoising step (UNet turn) of step-level batching.', labelNames: ['model'] as const, buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32], registers: [this.registry] });
  readonly stepDuration = new Histogram({ name: 'easel_step_duration_seconds', help: 'Time of one denoising step (UNet turn) over the whole active set.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly timeToFirstToken = new Histogram({ name: 'easel_time_to_first_token_seconds', help: 'Text generation: from submission to the first text of a request.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly interTokenLatency = new Histogram({ name: 'easel_inter_token_latency_seconds', help: 'Text generation: time per generated token after the first.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly promptTokens = new Counter({ name: 'easel_prompt_tokens_total', help: 'Text generation: prompt tokens of finished requests.', labelNames: ['model'] as const, registers: [this.registry] });
  readonly generationsFinished = new Counter({ name: 'easel_generations_finished_total', help: "Text generation: sequences that finished, by finish_reason (stop: an end token or stop string; length: max tokens or the context), as vLLM's request_success_total.", labelNames: ['model', 'finish_reason'] as const, registers: [this.registry] });
  readonly generationTokens = new Counter({ name: 'easel_generation_tokens_total', help: 'Text generation: tokens generated by finished requests.', labelNames: ['model'] as const, registers: [this.registry] });
  readonly activeSequences = new Gauge({ name: 'easel_active_sequences', help: 'Images or sequences stepped by the last turn of a worker\'s step loop.', labelNames: ['model'] as const, registers: [this.registry] });
  readonly stepMemory = new Gauge({ name: 'easel_kv_cache_bytes', help: 'Text generation: bytes of KV cache a worker held at its last step.', labelNames: ['model'] as const, registers: [this.registry] });
  readonly outputs = new Counter({ name: 'easel_outputs_total', help: 'Outputs of finished runs (images; 1 per other result), by model and the pool of the node that made them: easel_cost_total ÷ this is the cost per image.', labelNames: ['model', 'pool'] as const, registers: [this.registry] });
  readonly authFailures = new Counter({ name: 'easel_auth_failures_total', help: 'Requests refused 401 for a missing or wrong API key or management token, by API (inference, management).', labelNames: ['api'] as const, registers: [this.registry] });
  readonly workerRestarts = new Counter({ name: 'easel_worker_restarts_total', help: 'Worker processes restarted after dying.', labelNames: ['model'] as const, registers: [this.registry] });
  /** What a worker's turn counts, by the names it counts them: speculative decoding (as vLLM's spec_decode metrics) and prefix caching. */
  readonly #counted = new Map<string, Counter<'model'>>([
    ['proposed', new Counter({ name: 'easel_spec_decode_draft_tokens_total', help: 'Speculative decoding: tokens the draft model proposed.', labelNames: ['model'] as const, registers: [this.registry] })],
    ['accepted', new Counter({ name: 'easel_spec_decode_accepted_tokens_total', help: 'Speculative decoding: proposed tokens the target model kept.', labelNames: ['model'] as const, registers: [this.registry] })],
    ['emitted', new Counter({ name: 'easel_spec_decode_emitted_tokens_total', help: 'Speculative decoding: tokens the verify calls gave (kept proposals plus the target\'s own).', labelNames: ['model'] as const, registers: [this.registry] })],
    ['verified', new Counter({ name: 'easel_spec_decode_verifications_total', help: 'Speculative decoding: sequences verified (one per sequence per target call); emitted ÷ this is tokens per target call.', labelNames: ['model'] as const, registers: [this.registry] })],
    // Automatic prefix caching, in prompt tokens (as vLLM's prefix_cache_queries and prefix_cache_hits).
    ['prefix_queried', new Counter({ name: 'easel_prefix_cache_queries_total', help: 'Prefix caching: prompt tokens looked up in the prefix cache at prefill.', labelNames: ['model'] as const, registers: [this.registry] })],
    ['prefix_hit', new Counter({ name: 'easel_prefix_cache_hits_total', help: 'Prefix caching: prompt tokens found in the prefix cache (their KV taken, not computed).', labelNames: ['model'] as const, registers: [this.registry] })],
  ]);

  /**
   * The event loop's worst stall of each second: work that blocks it (parsing, tokenizing) delays
   * every port's answers, /ping included. Sampled by Node's own monitor every 10 ms.
   */
  readonly eventLoopLag = new Histogram({
    name: 'easel_event_loop_lag_seconds', help: "The longest the event loop was held in each second (Node's monitorEventLoopDelay): what delays every port's answers.",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry],
  });
  #lagTimer: NodeJS.Timeout | undefined;

  #watchEventLoop(): void {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    this.#lagTimer = setInterval(() => {
      // The monitor's delays include its own 10 ms period.
      if (delay.count > 0) this.eventLoopLag.observe(Math.max(0, delay.max / 1e9 - 0.01));
      delay.reset();
    }, 1000);
    this.#lagTimer.unref();
  }

  constructor(sources: MetricsSources) {
    const counted = this.#counted;
    collectDefaultMetrics({ register: this.registry, prefix: 'easel_' });
    this.#watchEventLoop();
    new Gauge({
      name: 'easel_queue_length', help: 'Synchronous requests waiting per model.', labelNames: ['model'] as const, registers: [this.registry],
      async collect() {
        this.reset();
        for (const q of await sources.queueLength()) this.set({ model: q.model }, q.length);
      },
    });
    new Gauge({
      name: 'easel_workers_live', help: 'Worker processes ready to serve, per model.', labelNames: ['model'] as const, registers: [this.registry],
      collect() {
        this.reset();
        for (const w of sources.liveWorkers()) this.set({ model: w.model }, w.live);
      },
    });
    new Gauge({
      name: 'easel_workers_busy', help: 'Worker processes with work in hand, per model (÷ easel_workers_live: utilisation).', labelNames: ['model'] as const, registers: [this.registry],
      collect() {
        this.reset();
        for (const w of sources.liveWorkers()) this.set({ model: w.model }, w.busy);
      },
    });
    gpuGauges(this.registry);
    // Worker-seconds and their cost, per model and pool: each scrape adds the live workers' time since the last.
    const pool = sources.pool ?? { pool: 'default', pricePerHour: 0 };
    let last = performance.now();
    new Counter({
      name: 'easel_worker_seconds_total', help: 'Seconds of live worker processes, by model and the pool of their node.', labelNames: ['model', 'pool'] as const, registers: [this.registry],
      collect() {
        const now = performance.now();
        const seconds = (now - last) / 1000;
        last = now;
        for (const w of sources.liveWorkers()) {
          this.inc({ model: w.model, pool: pool.pool }, w.live * seconds);
          cost.inc({ model: w.model, pool: pool.pool }, (w.live * seconds * pool.pricePerHour) / 3600);
        }
      },
    });
    // Registered after the worker-seconds, whose collect adds to it: both say the same scrape.
    const cost = new Counter({ name: 'easel_cost_total', help: 'What this node\'s live workers cost, by model and pool: worker-seconds × pricePerHour ÷ 3600.', labelNames: ['model', 'pool'] as const, registers: [this.registry] });
    // The rates, from the counters' own totals per model.
    const rate = (name: string, help: string, of: string, per: string): Gauge<'model'> =>
      new Gauge({
        name, help, labelNames: ['model'] as const, registers: [this.registry],
        async collect() {
          this.reset();
          const totals = async (counter: string): Promise<Map<string, number>> => new Map((await counted.get(counter)!.get()).values.map((v) => [String(v.labels.model), v.value]));
          const [num, den] = [await totals(of), await totals(per)];
          for (const [model, n] of den) if (n > 0) this.set({ model }, (num.get(model) ?? 0) / n);
        },
      });
    rate('easel_spec_decode_acceptance_rate', 'Speculative decoding: accepted ÷ proposed draft tokens since start.', 'accepted', 'proposed');
    rate('easel_prefix_cache_hit_rate', 'Prefix caching: prompt tokens found cached ÷ looked up, since start.', 'prefix_hit', 'prefix_queried');
    rate('easel_spec_decode_tokens_per_target_call', 'Speculative decoding: tokens each sequence got per target model call since start (1 without speculation).', 'emitted', 'verified');
    new Gauge({
      name: 'easel_jobs_queued', help: 'Jobs queued per model.', labelNames: ['model'] as const, registers: [this.registry],
      async collect() {
        this.reset();
        for (const q of await sources.queuedJobs()) this.set({ model: q.model }, q.queued);
      },
    });
  }

  /** One turn of a worker's step loop. */
  turn(model: string, r: TurnReport): void {
    if (r.rest) {
      this.activeSequences.set({ model }, 0);
      if (r.memoryBytes !== undefined) this.stepMemory.set({ model }, 0);
      if (r.sessionSeconds) this.sessionRun.inc({ model }, r.sessionSeconds);
      return;
    }
    this.stepBatchSize.observe({ model }, r.states);
    this.stepDuration.observe({ model }, r.seconds);
    this.activeSequences.set({ model }, r.states);
    if (r.memoryBytes !== undefined) this.stepMemory.set({ model }, r.memoryBytes);
    for (const [stage, seconds] of Object.entries(r.stages ?? {})) this.stage.observe({ model, stage }, seconds);
    if (r.sessionSeconds) this.sessionRun.inc({ model }, r.sessionSeconds);
    for (const [name, n] of Object.entries(r.counters ?? {})) {
      if (n <= 0) continue;
      if (name.startsWith('finished_')) this.generationsFinished.inc({ model, finish_reason: name.slice('finished_'.length) }, n);
      else this.#counted.get(name)?.inc({ model }, n);
    }
  }
}
