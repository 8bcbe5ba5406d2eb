// `easel serve`: loads the configured models, starts workers and the three HTTP listeners, and
// shuts down gracefully on SIGTERM/SIGINT.
import { existsSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { SERVE_METRICS_PORT, type EaselConfig } from '../config/config.js';
import { RequestBatcher } from '../scheduling/request-batcher.js';
import { admission, checkHandler, TASKS, type Admission } from '../handlers/admission.js';
import { ApiKeys } from '../server/api-keys.js';
import { ModelStore } from '../models/model-store.js';
import { DEFAULT_RESPONSE_TIMEOUT_MS } from '../models/model-spec.js';
import { createServers, listen } from '../server/servers.js';
import { ModelManager } from '../workers/model-manager.js';
import { workerProfile } from '../workers/worker-process.js';
import { createJobSystem, startJobSystem, webhookPolicy } from './job-system.js';
import { nodeMetrics } from './node-metrics.js';
import { exitOnSignals, nodeCloser } from './shutdown.js';

export interface RunningServer {
  ports: { inference: number; management: number; metrics: number };
  close(): Promise<void>;
}

export async function serve(config: EaselConfig, options: { handleSignals?: boolean } = {}): Promise<RunningServer> {
  const logger = pino({ name: 'easel', level: config.logLevel });
  await mkdir(config.dataDir, { recursive: true });
  const queue = new RequestBatcher();
  // The gauges read the manager only when scraped, after it exists.
  const { metrics, observer } = nodeMetrics(() => jobs, () => manager, config);
  const manager = new ModelManager({
    queue, logger, allowCustomHandlers: config.allowCustomHandlers, logLevel: config.logLevel, profile: workerProfile(config),
    defaultMaxQueueLength: config.maxQueueLength, restartBackoffMs: config.workerRestartBackoffMs, shutdownGraceMs: config.shutdownGraceMs, maxAttempts: config.maxAttempts,
    observer,
  });
  const store = new ModelStore({ storeDir: config.modelStore, dataDir: config.dataDir, allowedUrls: config.allowedUrls, maxArchiveBytes: config.maxArchiveBytes, tasks: TASKS });
  let draining = false;
  const jobs = await createJobSystem(config, manager, logger, metrics);
  // An API-only node knows the models of its config without a worker anywhere (scale from zero:
  // their work waits in the queue KEDA watches), and those workers announce.
  const elsewhere = config.localWorkers ? undefined : await remoteAdmission(config, store, logger);
  const servers = await createServers({
    control: manager, store, metrics, logger, maxBodyBytes: config.maxBodyBytes, requestTimeoutMs: config.requestTimeoutMs, maxConnections: config.maxConnections, managementToken: config.managementToken, isDraining: () => draining,
    apiKeys: ApiKeys.load(config.apiKeysFile, config.apiKeys), corsOrigins: config.corsOrigins,
    maxAuthFailuresPerMinute: config.maxAuthFailuresPerMinute, rateLimit: { perMinute: config.rateLimitPerMinute, redisUrl: config.queue === 'embedded' ? undefined : config.queue },
    json: { maxJsonDepth: config.maxJsonDepth, maxJsonKeys: config.maxJsonKeys },
    defaultMaxQueueLength: config.maxQueueLength, defaultResponseTimeoutMs: DEFAULT_RESPONSE_TIMEOUT_MS,
    jobs: {
      backend: jobs.backend, artifacts: jobs.artifacts, control: manager, maxQueuedJobs: config.maxQueuedJobs,
      modelKnown: async (m) => elsewhere?.admission(m) !== undefined || (await jobs.modelKnown(m)),
      models: async () => [...new Set([...(elsewhere?.models ?? []), ...(await jobs.models())])],
      webhookPolicy: webhookPolicy(config), sseHeartbeatMs: config.sseHeartbeatMs, maxStreamsPerClient: config.maxStreamsPerClient, maxJobInputBytes: config.maxJobInputBytes, maxQueuedJobsPerKey: config.maxQueuedJobsPerKey,
      secondsPerJob: (m) => jobs.throughput.secondsPerJob(m), isDraining: () => draining,
      elsewhere: elsewhere?.admission,
    },
  });

  const [inference, management, metricsPort] = await Promise.all([
    listen(servers.inference, config.host, config.port, '--port'),
    listen(servers.management, config.managementHost, config.managementPort, '--management-port'),
    listen(servers.metrics, config.metricsHost, config.metricsPort ?? SERVE_METRICS_PORT, '--metrics-port'),
  ]);
  const ports = { inference, management, metrics: metricsPort };
  logger.info({ ports }, 'easel listening');

  if (config.localWorkers) await registerStartupModels(config, store, manager, logger);
  await startJobSystem(jobs, manager);

  const close = nodeCloser(
    { jobs, batcher: queue, manager, listeners: [servers.inference, servers.management, servers.metrics], graceMs: config.shutdownGraceMs, logger, onDraining: () => (draining = true) },
    'easel stopped',
  );
  if (options.handleSignals !== false) exitOnSignals(close, config.shutdownGraceMs, logger);
  return { ports, close };
}

/** Registers the startup models; one that fails to load is logged and skipped. */
export async function registerStartupModels(config: EaselConfig, store: ModelStore, manager: ModelManager, logger: Logger): Promise<void> {
  for (const [name, url] of startupModels(config)) {
    try {
      const entry = await store.resolve(url, name ? { name } : {}, true);
      // Clients see where the model came from, not this machine's paths.
      const shown = path.relative(path.resolve(config.modelStore), url);
      await manager.register(entry, { url: shown.startsWith('..') || path.isAbsolute(shown) ? path.basename(url) : shown, synchronous: false });
      logger.info({ model: entry.spec.name, version: entry.spec.version, handler: entry.spec.handler }, 'model registered');
    } catch (err) {
      const e = err as { message?: string; field?: string };
      logger.error({ model: name, dir: url, field: e.field, reason: e.message }, `model at ${url} refused: ${e.message ?? String(err)}; the server goes on without it`);
    }
  }
}

/**
 * An API-only node runs no model, but knows the models of its config (the store, or --models):
 * it admits their jobs with their handlers' parse, as a node that runs them would, and describes them.
 */
async function remoteAdmission(config: EaselConfig, store: ModelStore, logger: Logger): Promise<{ models: string[]; admission(model: string): Admission | undefined }> {
  const admissions = new Map<string, Admission>();
  for (const [name, url] of startupModels(config)) {
    try {
      const entry = await store.resolve(url, name ? { name } : {}, true);
      checkHandler(entry.spec, config.allowCustomHandlers);
      admissions.set(entry.spec.name, admission(entry));
    } catch (err) {
      logger.warn({ model: name, dir: url, reason: (err as Error).message }, 'no admission rules for this model here; its jobs are checked by the worker node');
    }
  }
  return { models: [...admissions.keys()], admission: (model) => admissions.get(model) };
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
