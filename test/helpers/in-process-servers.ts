// Easel's three listeners built in this process, for tests through Fastify's inject(): no socket,
// no worker processes; the work queue is the real embedded one (in memory).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { SqliteJobBackend } from '../../src/jobs/sqlite-job-backend.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { ModelStore } from '../../src/models/model-store.js';
import { RequestBatcher } from '../../src/scheduling/request-batcher.js';
import { createServers, type Servers, type ServersOptions } from '../../src/server/servers.js';
import { LocalArtifactStore } from '../../src/storage/artifact-store.js';
import { ModelManager } from '../../src/workers/model-manager.js';

export interface InProcess {
  servers: Servers;
  queue: SqliteJobBackend;
  manager: ModelManager;
  close(): Promise<void>;
}

export async function inProcessServers(overrides: Partial<ServersOptions> = {}): Promise<InProcess> {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-routes-'));
  const queue = new SqliteJobBackend({ file: ':memory:', jobTtlMs: 60_000 });
  const logger = pino({ level: 'silent' });
  const manager = new ModelManager({ queue: new RequestBatcher(), logger, allowCustomHandlers: false, logLevel: 'silent', defaultMaxQueueLength: 10, restartBackoffMs: [100], shutdownGraceMs: 100, maxAttempts: 3 });
  const metrics = new Metrics({ queueLength: async () => [], liveWorkers: () => [], queuedJobs: async () => [] });
  const servers = await createServers({
    control: manager, store: new ModelStore({ storeDir: dir, dataDir: dir, allowedUrls: [], maxArchiveBytes: 1 << 20 }), metrics, logger,
    maxBodyBytes: 1 << 20, requestTimeoutMs: 60_000, maxConnections: 0, json: { maxJsonDepth: 32, maxJsonKeys: 1000 }, isDraining: () => false, defaultMaxQueueLength: 10, defaultResponseTimeoutMs: 1000,
    apiKeys: null, maxAuthFailuresPerMinute: 20, rateLimit: { perMinute: 0 }, corsOrigins: [],
    jobs: {
      backend: queue, artifacts: new LocalArtifactStore(path.join(dir, 'artifacts')), control: manager, maxQueuedJobs: 10, modelKnown: async () => false, models: async () => [],
      secondsPerJob: () => undefined, isDraining: () => false, webhookPolicy: { allowedHosts: [] }, sseHeartbeatMs: 15_000, maxStreamsPerClient: 100, maxJobInputBytes: 8 << 20, maxQueuedJobsPerKey: 1000,
    },
    ...overrides,
  });
  return {
    servers, queue, manager,
    async close() {
      for (const s of [servers.inference, servers.management, servers.metrics]) await s.close();
      await manager.close();
      await queue.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
