// Wires the job system for `easel serve` and `easel worker`: the backend the config names
// (embedded SQLite, or Redis for the distributed mode), the artifact store, the runner that
// feeds local workers, webhooks, expiry, and (Redis) the announcement of the models served here.
import path from 'node:path';
import type { Logger } from 'pino';
import type { EaselConfig } from '../config/config.js';
import { poolPolicy, type JobBackend } from '../jobs/job.js';
import { SqliteJobBackend } from '../jobs/sqlite-job-backend.js';
import { WebhookNotifier } from '../jobs/webhook-notifier.js';
import type { Metrics } from '../metrics/metrics.js';
import { anchoredPatterns, type OutboundPolicy } from '../net/outbound-guard.js';
import type { ModelControl } from '../models/model-control.js';
import { LocalArtifactStore, type ArtifactStore } from '../storage/artifact-store.js';
import { JobRunner } from '../workers/job-runner.js';
import { ThroughputEstimate } from '../workers/throughput-estimate.js';

export interface JobSystem {
  backend: JobBackend;
  artifacts: ArtifactStore;
  runner: JobRunner;
  throughput: ThroughputEstimate;
  /** Whether a model is served by some node (here, or a worker announced in Redis). */
  modelKnown(model: string): Promise<boolean>;
  /** Models served here or (distributed mode) by any live node. */
  models(): Promise<string[]>;
  /** Stops claiming work; the backend stays open until `close`. */
  stop(): Promise<void>;
  close(): Promise<void>;
}

const ANNOUNCE_EVERY_MS = 5_000;

/** Which webhook receivers jobs may name: public addresses, and the operator's allow-listed hosts. */
export function webhookPolicy(config: EaselConfig): OutboundPolicy {
  return { allowedHosts: anchoredPatterns(config.webhookAllowedHosts) };
}

/**
 * The Redis backend (BullMQ, ioredis) and the S3 store (the AWS SDK) are imported only when the
 * config names them: the embedded mode's API process does not carry them (at rest, 126 -> 104-108
 * MB resident with tiny-llama served).
 */
export async function createJobSystem(config: EaselConfig, control: ModelControl, logger: Logger, metrics?: Metrics): Promise<JobSystem> {
  const redis = config.queue.startsWith('redis://') || config.queue.startsWith('rediss://');
  const backend: JobBackend = redis
    ? new (await import('../jobs/redis-job-backend.js')).RedisJobBackend({ url: config.queue, jobTtlMs: config.jobTtlMs, lockMs: config.jobLockMs })
    : new SqliteJobBackend({ file: path.join(config.dataDir, 'jobs.db'), jobTtlMs: config.jobTtlMs });
  const artifacts: ArtifactStore = config.artifactUrl
    ? new (await import('../storage/s3-artifact-store.js')).S3ArtifactStore({ url: config.artifactUrl, endpoint: config.s3Endpoint })
    : new LocalArtifactStore(config.artifactDir ?? path.join(config.dataDir, 'artifacts'));
  const throughput = new ThroughputEstimate();
  const webhooks = new WebhookNotifier({ backend, logger, secret: config.webhookSecret, policy: webhookPolicy(config) });
  const runner = new JobRunner({
    backend, control, artifacts, logger, maxAttempts: config.maxAttempts,
    onStarted: (job) => webhooks.track(job),
    onTokens: (model, t) => {
      if (t.firstTokenSeconds !== undefined) metrics?.timeToFirstToken.observe({ model }, t.firstTokenSeconds);
      if (t.interTokenSeconds !== undefined) metrics?.interTokenLatency.observe({ model }, t.interTokenSeconds);
      if (t.promptTokens !== undefined) metrics?.promptTokens.inc({ model }, t.promptTokens);
      if (t.generatedTokens !== undefined) metrics?.generationTokens.inc({ model }, t.generatedTokens);
    },
    onQueueWait: (model, seconds) => metrics?.stage.observe({ model, stage: 'queue_wait' }, seconds),
    onOutputs: (model, n) => metrics?.outputs.inc({ model, pool: config.pool }, n),
    policy: poolPolicy(config.poolRules, config.pool),
    onFinished: (job, seconds) => {
      metrics?.jobs.inc({ model: job.model, status: job.status });
      if (job.startedAt !== null) metrics?.jobQueueTime.observe({ model: job.model }, (job.startedAt - job.createdAt) / 1000);
      metrics?.jobRunTime.observe({ model: job.model }, seconds);
    },
  });
  // Estimates learn from every finished job, wherever it ran (all nodes, in the distributed mode).
  const offFinished = backend.onFinished((job) => {
    if (job.status === 'succeeded' && job.startedAt !== null && job.completedAt !== null) throughput.record(job.model, (job.completedAt - job.startedAt) / 1000);
  });
  const localModels = (): string[] => [...new Set(control.health().models.map((m) => m.name))];
  const timers = [
    setInterval(() => {
      void backend
        .expire(Date.now())
        .then((expired) => Promise.all(expired.map((j) => artifacts.deletePrefix(j.id))))
        .catch((err: unknown) => logger.error({ err }, 'expiring jobs failed'));
    }, 60_000),
    setInterval(() => {
      void backend.announce(localModels(), ANNOUNCE_EVERY_MS * 3).catch((err: unknown) => logger.warn({ err }, 'announcing models failed'));
    }, ANNOUNCE_EVERY_MS),
  ];
  for (const t of timers) t.unref();
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      for (const t of timers) clearInterval(t);
      offFinished();
      await runner.close();
      webhooks.close();
    })());
  const models = async (): Promise<string[]> => [...new Set([...localModels(), ...(await backend.announcedModels())])];
  return {
    backend, artifacts, runner, throughput, models,
    async modelKnown(model) {
      return (await models()).includes(model);
    },
    stop,
    async close() {
      await stop();
      await backend.close();
      artifacts.close?.();
    },
  };
}

/** Starts the runner, and tells the other nodes at once which models this one serves. */
export async function startJobSystem(jobs: JobSystem, control: ModelControl): Promise<void> {
  jobs.runner.start();
  await jobs.backend.announce([...new Set(control.health().models.map((m) => m.name))], ANNOUNCE_EVERY_MS * 3);
}
