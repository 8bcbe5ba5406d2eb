// How a node stops, for `easel serve` and `easel worker` alike: stop claiming work, let the work
// in hand finish within the grace period, close the listeners, stop the worker processes (a
// draining worker hands back what it has not started), settle the runner, close the stores.
// Every step runs even when one fails; SIGTERM/SIGINT start it, a second signal exits at once.
import type { Logger } from 'pino';
import type { ModelManager } from '../workers/model-manager.js';
import type { RequestBatcher } from '../scheduling/request-batcher.js';
import type { JobSystem } from './job-system.js';

/** After the grace period, how long stopping workers and closing stores may take before the process exits anyway. */
const SHUTDOWN_MARGIN_MS = 2_000;

export interface NodeParts {
  jobs: JobSystem;
  batcher: RequestBatcher;
  manager: ModelManager;
  /** The HTTP listeners (none on a worker node). */
  listeners: { close(): Promise<unknown> }[];
  graceMs: number;
  logger: Logger;
  /** Called first: the node refuses new work from now on. */
  onDraining?(): void;
}

/** The node's memoized close. */
export function nodeCloser(p: NodeParts, stoppedMessage: string): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const step = async (name: string, fn: () => Promise<unknown> | unknown): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      p.logger.error({ err }, `${name} failed`);
    }
  };
  return () =>
    (closing ??= (async () => {
      p.onDraining?.();
      await step('stopping the job runner', () => p.jobs.stop());
      p.batcher.close();
      const deadline = Date.now() + p.graceMs;
      while (p.batcher.inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const l of p.listeners) await step('closing a listener', () => l.close());
      await step('stopping workers', () => p.manager.close());
      // Work still running here is handed back by the runner as its workers stop.
      await step('settling the runner', () => p.jobs.runner.drained());
      await step('closing the job store', () => p.jobs.close());
      p.logger.info(stoppedMessage);
    })());
}

/** SIGTERM/SIGINT close the node and exit 0; past the grace period it exits 1; a second signal exits 130. */
export function exitOnSignals(close: () => Promise<void>, graceMs: number, logger: Logger): void {
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) {
      // A second signal: the operator will not wait.
      logger.warn({ signal: sig }, 'second signal: exiting now');
      process.exit(130);
    }
    signalled = true;
    logger.info({ signal: sig, graceMs }, 'shutting down');
    // Whatever still runs after the grace period (and a moment to stop workers) is abandoned.
    setTimeout(() => {
      logger.warn({ graceMs }, 'shutdown grace period over: exiting');
      process.exit(1);
    }, graceMs + SHUTDOWN_MARGIN_MS).unref();
    void close().then(() => process.exit(0));
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, onSignal);
}
