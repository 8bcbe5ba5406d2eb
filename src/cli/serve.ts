// `easel serve`: loads the configured models, starts workers and the three HTTP listeners, and
// shuts down gracefully on SIGTERM/SIGINT.
import { existsSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import type { EaselConfig } from '../config/config.js';
import { InferenceQueue } from '../jobs/inference-queue.js';
import { SqliteJobBackend } from '../jobs/sqlite-job-backend.js';
import { WebhookNotifier } from '../jobs/webhook-notifier.js';
import { Metrics } from '../metrics/metrics.js';
import { ModelStore } from '../models/model-store.js';
import { createServers } from '../server/servers.js';
import { LocalArtifactStore } from '../storage/artifact-store.js';
import { JobRunner } from '../workers/job-runner.js';
import { ModelManager } from '../workers/model-manager.js';
import { ThroughputEstimate } from '../workers/throughput-estimate.js';

export interface RunningServer {
  ports: { inference: number; management: number; metrics: number };
  close(): Promise<void>;
}

export async function serve(config: EaselConfig, options: { handleSignals?: boolean } = {}): Promise<RunningServer> {
  const logger = pino({ name: 'easel', level: config.logLevel });
  await mkdir(config.dataDir, { recursive: true });
  const queue = new InferenceQueue();
  // The gauges read the manager only when scraped, after it exists.
  const metrics = new Metrics({
    queueLength: () => manager.health().models.map((m) => ({ model: m.name, length: queue.length(`${m.name}:${m.version}`) })),
    liveWorkers: () => manager.health().models.map((m) => ({ model: m.name, live: m.liveWorkers })),
    queuedJobs: () => Promise.all([...new Set(manager.health().models.map((m) => m.name))].map(async (model) => ({ model, queued: await jobs.queuedCount(model) }))),
  });
  const manager = new ModelManager({
    queue, logger, allowCustomHandlers: config.allowCustomHandlers, logLevel: config.logLevel,
    defaultMaxQueueLength: config.maxQueueLength, restartBackoffMs: config.workerRestartBackoffMs, shutdownGraceMs: config.shutdownGraceMs,
    observer: {
      stage: (model, stage, seconds) => metrics.handlerStage.observe({ model, stage }, seconds),
      queueTime: (model, seconds) => metrics.queueTime.observe({ model }, seconds),
      workerRestart: (model) => metrics.workerRestarts.inc({ model }),
    },
  });
  const store = new ModelStore({ storeDir: config.modelStore, dataDir: config.dataDir, allowedUrls: config.allowedUrls, maxArchiveBytes: config.maxArchiveBytes });
  let draining = false;
  // Jobs: the embedded backend (SQLite in the data directory) and local artifacts.
  const jobs = new SqliteJobBackend({ file: path.join(config.dataDir, 'jobs.db'), jobTtlMs: config.jobTtlMs });
  const artifacts = new LocalArtifactStore(path.join(config.dataDir, 'artifacts'));
  const throughput = new ThroughputEstimate();
  const webhooks = new WebhookNotifier({ backend: jobs, logger, secret: config.webhookSecret });
  const runner = new JobRunner({
    backend: jobs, control: manager, artifacts, logger,
    onStarted: (job) => webhooks.track(job),
    onFinished: (job, seconds) => {
      if (job.status === 'succeeded') throughput.record(job.model, seconds);
      metrics.jobs.inc({ model: job.model, status: job.status });
      if (job.startedAt !== null) metrics.jobQueueTime.observe({ model: job.model }, (job.startedAt - job.createdAt) / 1000);
      metrics.jobRunTime.observe({ model: job.model }, seconds);
    },
  });
  const expiry = setInterval(() => {
    void jobs
      .expire(Date.now())
      .then((expired) => Promise.all(expired.map((j) => artifacts.deletePrefix(j.id))))
      .catch((err: unknown) => logger.error({ err }, 'expiring jobs failed'));
  }, 60_000);
  expiry.unref();
  const servers = await createServers({
    control: manager, store, metrics, logger, maxBodyBytes: config.maxBodyBytes, managementToken: config.managementToken, isDraining: () => draining,
    jobs: { backend: jobs, artifacts, control: manager, maxQueuedJobs: config.maxQueuedJobs, secondsPerJob: (m) => throughput.secondsPerJob(m), isDraining: () => draining },
  });

  await Promise.all([
    servers.inference.listen({ host: config.host, port: config.port }),
    servers.management.listen({ host: config.managementHost, port: config.managementPort }),
    servers.metrics.listen({ host: config.metricsHost, port: config.metricsPort }),
  ]);
  const port = (s: typeof servers.inference): number => (s.server.address() as { port: number }).port;
  const ports = { inference: port(servers.inference), management: port(servers.management), metrics: port(servers.metrics) };
  logger.info({ ports }, 'easel listening');

  for (const [name, url] of startupModels(config)) {
    try {
      const entry = await store.resolve(url, name ? { name } : {}, true);
      await manager.register(entry, { url, synchronous: false });
      logger.info({ model: entry.spec.name, version: entry.spec.version, handler: entry.spec.handler }, 'model registered');
    } catch (err) {
      logger.error({ model: name, url, err }, 'model failed to load; the server goes on without it');
    }
  }
  runner.start();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      draining = true;
      clearInterval(expiry);
      await runner.close();
      webhooks.close();
      queue.close();
      const deadline = Date.now() + config.shutdownGraceMs;
      while (queue.inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const s of [servers.inference, servers.management, servers.metrics]) await s.close().catch((err: unknown) => logger.error({ err }, 'closing a listener failed'));
      await manager.close().catch((err: unknown) => logger.error({ err }, 'stopping workers failed'));
      await jobs.close();
      logger.info('easel stopped');
    })());

  if (options.handleSignals !== false) {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        logger.info({ signal: sig }, 'shutting down');
        void close().then(() => process.exit(0));
      });
    }
  }
  return { ports, close };
}

/** The models to load at start: --models (name → location), or everything in the store (named by their own spec). */
function startupModels(config: EaselConfig): [string | undefined, string][] {
  const named = Object.entries(config.models).map(([name, p]): [string | undefined, string] => {
    const fromCwd = path.resolve(p);
    return [name, existsSync(fromCwd) ? fromCwd : path.resolve(config.modelStore, p)];
  });
  if (named.length > 0 || !config.loadAllModels || !existsSync(config.modelStore)) return named;
  return readdirSync(config.modelStore, { withFileTypes: true })
    .filter((d) => !d.name.startsWith('.') && (d.isDirectory() || /\.(easel|tar\.gz|tgz|zip)$/.test(d.name)))
    .map((d): [undefined, string] => [undefined, path.resolve(config.modelStore, d.name)]);
}
