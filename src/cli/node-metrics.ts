// The metrics of a node (an API node, or a worker node of the distributed mode): the gauges read
// the work queue and the model manager when scraped; the manager's observer feeds the rest.
import type { JobSystem } from './job-system.js';
import { Metrics } from '../metrics/metrics.js';
import type { ModelManager, ModelManagerOptions } from '../workers/model-manager.js';

export function nodeMetrics(jobs: () => JobSystem, manager: () => ModelManager, pool: { pool: string; pricePerHour: number }): { metrics: Metrics; observer: NonNullable<ModelManagerOptions['observer']> } {
  const metrics = new Metrics({
    pool,
    queueLength: async () => Promise.all((await jobs().models()).map(async (model) => ({ model, length: await jobs().backend.queuedCount(model, false) }))),
    liveWorkers: () => manager().health().models.map((m) => ({ model: m.name, live: m.liveWorkers, busy: m.busyWorkers })),
    queuedJobs: async () => Promise.all((await jobs().models()).map(async (model) => ({ model, queued: await jobs().backend.queuedCount(model) }))),
  });
  const observer: NonNullable<ModelManagerOptions['observer']> = {
    stage: (model, stage, seconds) => {
      metrics.handlerStage.observe({ model, stage }, seconds);
      // "inference" spans a batch's whole stay in the step loop: its turns are stages of their own.
      if (stage !== 'inference') metrics.stage.observe({ model, stage }, seconds);
    },
    hop: (model, seconds) => metrics.stage.observe({ model, stage: 'ipc' }, seconds),
    queueTime: (model, seconds) => metrics.queueTime.observe({ model }, seconds),
    workerRestart: (model) => metrics.workerRestarts.inc({ model }),
    step: (model, report) => metrics.turn(model, report),
  };
  return { metrics, observer };
}
