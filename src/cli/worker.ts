// `easel worker`: a worker node of the distributed mode. It loads models, runs their worker
// processes and takes jobs from the shared Redis queue; no HTTP. On SIGTERM it stops taking
// work, lets the running work finish within the grace period, hands back the rest, and exits
// (src/cli/shutdown.ts, as `easel serve`).
import { mkdir } from 'node:fs/promises';
import { pino } from 'pino';
import type { EaselConfig } from '../config/config.js';
import { RequestBatcher } from '../scheduling/request-batcher.js';
import { TASKS } from '../handlers/admission.js';
import { ModelStore } from '../models/model-store.js';
import { ModelManager } from '../workers/model-manager.js';
import { workerProfile } from '../workers/worker-process.js';
import { createMetricsServer, listen } from '../server/servers.js';
import { createJobSystem, startJobSystem } from './job-system.js';
import { nodeMetrics } from './node-metrics.js';
import { registerStartupModels } from './serve.js';
import { exitOnSignals, nodeCloser } from './shutdown.js';

export async function work(config: EaselConfig): Promise<{ close(): Promise<void> }> {
  const logger = pino({ name: 'easel-worker-node', level: config.logLevel });
  if (config.queue === 'embedded') throw new Error('easel worker needs --queue redis://host:port: the queue it shares with the API nodes');
  await mkdir(config.dataDir, { recursive: true });
  const queue = new RequestBatcher();
  // Its own metrics port: step batches, time in ONNX Runtime, its GPUs — what only a worker knows.
  const { metrics, observer } = nodeMetrics(() => jobs, () => manager, config);
  const manager = new ModelManager({
    queue, logger, allowCustomHandlers: config.allowCustomHandlers, logLevel: config.logLevel, profile: workerProfile(config),
    defaultMaxQueueLength: config.maxQueueLength, restartBackoffMs: config.workerRestartBackoffMs, shutdownGraceMs: config.shutdownGraceMs, maxAttempts: config.maxAttempts,
    observer,
  });
  const store = new ModelStore({ storeDir: config.modelStore, dataDir: config.dataDir, allowedUrls: config.allowedUrls, maxArchiveBytes: config.maxArchiveBytes, tasks: TASKS });
  const jobs = await createJobSystem(config, manager, logger, metrics);
  const metricsServer = await createMetricsServer({ metrics, logger, maxBodyBytes: config.maxBodyBytes, requestTimeoutMs: config.requestTimeoutMs, json: { maxJsonDepth: config.maxJsonDepth, maxJsonKeys: config.maxJsonKeys } });
  // Any free port unless one is given: one worker per GPU on a machine, beside an easel serve.
  const metricsPort = await listen(metricsServer, config.metricsHost, config.metricsPort ?? 0, '--metrics-port');
  await registerStartupModels(config, store, manager, logger);
  await startJobSystem(jobs, manager);
  logger.info({ queue: config.queue, models: manager.health().models.map((m) => m.name), ports: { metrics: metricsPort } }, 'easel worker ready');

  const close = nodeCloser({ jobs, batcher: queue, manager, listeners: [metricsServer], graceMs: config.shutdownGraceMs, logger }, 'easel worker stopped');
  exitOnSignals(close, config.shutdownGraceMs, logger);
  return { close };
}
