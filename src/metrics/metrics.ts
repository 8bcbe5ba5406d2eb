// The Prometheus registry and every metric Easel exports, in base units.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export interface MetricsSources {
  /** Synchronous predictions waiting per model (the work queue's non-durable lane). */
  queueLength(): Promise<{ model: string; length: number }[]>;
  liveWorkers(): { model: string; live: number }[];
  /** Jobs waiting per model (the job queue's depth). */
  queuedJobs(): Promise<{ model: string; queued: number }[]>;
}

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'easel_requests_total', help: 'Inference requests by model and HTTP status.', labelNames: ['model', 'status'] as const, registers: [this.registry] });
  readonly requestDuration = new Histogram({ name: 'easel_request_duration_seconds', help: 'Inference request latency, from receipt to response.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly queueTime = new Histogram({ name: 'easel_queue_time_seconds', help: 'Time a request waited in the queue before a worker took it.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly handlerStage = new Histogram({ name: 'easel_handler_stage_seconds', help: 'Handler time per stage (preprocess, inference, postprocess, and handler-defined stages), per batch.', labelNames: ['model', 'stage'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly jobs = new Counter({ name: 'easel_jobs_total', help: 'Jobs that reached a final status, by model and status (succeeded, failed, cancelled).', labelNames: ['model', 'status'] as const, registers: [this.registry] });
  readonly jobQueueTime = new Histogram({ name: 'easel_job_queue_time_seconds', help: 'Time from job submission to a worker starting it.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly jobRunTime = new Histogram({ name: 'easel_job_run_time_seconds', help: 'Time a job ran on a worker, to its final status.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly stepBatchSize = new Histogram({ name: 'easel_step_batch_size', help: 'Images carried by each denoising step (UNet turn) of step-level batching.', labelNames: ['model'] as const, buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32], registers: [this.registry] });
  readonly stepDuration = new Histogram({ name: 'easel_step_duration_seconds', help: 'Time of one denoising step (UNet turn) over the whole active set.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly workerRestarts = new Counter({ name: 'easel_worker_restarts_total', help: 'Worker processes restarted after dying.', labelNames: ['model'] as const, registers: [this.registry] });

  constructor(sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry, prefix: 'easel_' });
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
      name: 'easel_jobs_queued', help: 'Jobs queued per model.', labelNames: ['model'] as const, registers: [this.registry],
      async collect() {
        this.reset();
        for (const q of await sources.queuedJobs()) this.set({ model: q.model }, q.queued);
      },
    });
  }
}
