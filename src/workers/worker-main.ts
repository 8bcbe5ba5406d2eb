// The worker process: loads one model's handler and runs the batches the server sends it.
// ONNX Runtime's session.run() blocks this process's event loop, which is why it lives here.
import { pino } from 'pino';
import { EaselError, isEaselError, errors } from '../errors/easel-error.js';
import type { Handler, InferenceRequest, RequestContext, RequestHandle, StageTimers } from '../handlers/handler.js';
import { loadHandler } from '../handlers/registry.js';
import { takeRunSeconds } from '../runtime/onnx-runtime.js';
import { StepLoop } from '../scheduling/step-loop.js';
import type { ChildCommand, ParentCommand, Report, RequestOutcome, WorkRequest } from './protocol.js';

let handler: Handler | undefined;
let logger = pino({ name: 'easel-worker' });
const controllers = new Map<string, AbortController>();
const write = (m: ChildCommand): void => {
  // The server gone (killed): nothing to tell; the 'disconnect' handler ends this process.
  if (process.connected) process.send?.(m, undefined, {}, () => undefined);
};
// Reports wait: a turn's progress of every request and its own report leave as one message, and
// turns less than the model's batching.streamIntervalMs apart share one (a pipe write that wakes
// the server costs ~100 µs on a small VM, a fifth of a 1M-parameter model's decode step; vLLM's
// --stream-interval is the same trade). Reports leave at the end of what the event loop is doing,
// before the next model call (ONNX Runtime's run starts from a setImmediate queued after this
// one), once the interval since the last message has passed; a request's first report (its first
// token or step) does not wait. Every other message sends what is held first, so a request's
// progress never arrives after its result.
let streamIntervalMs = 0;
let held: Report[] = [];
let sentAt = -Infinity;
let immediate = false;
let timer: NodeJS.Timeout | undefined;
const flush = (): void => {
  clearTimeout(timer);
  timer = undefined;
  immediate = false;
  if (held.length === 0) return;
  const items = held;
  held = [];
  sentAt = performance.now();
  write({ type: 'reports', items });
};
const report = (r: Report): void => {
  held.push(r);
  if (immediate) return;
  const wait = r.type === 'progress' && r.step <= 1 ? 0 : sentAt + streamIntervalMs - performance.now();
  if (wait > 0) {
    timer ??= setTimeout(flush, wait);
    return;
  }
  immediate = true;
  setImmediate(flush);
};
const send = (m: ChildCommand): void => {
  flush();
  write(m);
};

process.on('message', (raw: ParentCommand) => {
  void onCommand(raw).catch((err: unknown) => {
    logger.error({ err }, 'worker command failed');
  });
});
process.on('disconnect', () => process.exit(0));

// SIGTERM (a node draining, a spot interruption): finish the batch in hand, deliver it, exit.
// The supervisor starts a replacement; requests not yet sent to this worker wait in the queue.
// Several batches run at once in step mode (they share the handler's step loop).
const running = new Set<Promise<unknown>>();
let draining = false;
process.once('SIGTERM', () => {
  draining = true;
  logger.info({ batches: running.size }, 'SIGTERM: finishing the batches in hand, then exiting');
  void Promise.allSettled([...running]).finally(() => process.exit(0));
});

async function onCommand(m: ParentCommand): Promise<void> {
  switch (m.type) {
    case 'init': {
      logger = pino({ name: 'easel-worker', level: m.logLevel }).child({ worker: m.workerId, model: m.spec.name });
      streamIntervalMs = m.spec.batching.streamIntervalMs;
      try {
        handler = await loadHandler(m.spec, m.modelDir, m.allowCustomHandlers);
        const spec = m.spec;
        await handler.initialize({
          modelDir: m.modelDir, draftDir: m.draftDir, spec, logger,
          // In step mode the loop holds up to the batch size per group; otherwise the batch this
          // worker was sent runs whole.
          stepLoop: (model) => new StepLoop(model, { maxBatchSize: m.batching.mode === 'step' ? m.batching.stepBatchSize : undefined, maxMemoryBytes: m.batching.maxMemoryBytes, onTurn: (turn) => report({ type: 'step', ...turn, sessionSeconds: takeRunSeconds() }) }),
        });
        // The warm-up's session time is not a request's.
        takeRunSeconds();
        send({ type: 'ready', notes: handler.notes?.() ?? [], signature: handler.signature?.() });
      } catch (err) {
        logger.error({ err }, 'handler failed to initialize');
        send({ type: 'init-failed', error: toSerialized(err) });
      }
      return;
    }
    case 'run': {
      if (draining) {
        // Too late to start: hand the batch back so another worker runs it.
        const error = { code: 'EASEL_SHUTTING_DOWN', message: 'the worker is shutting down' };
        send({ type: 'done', batchId: m.batchId, outcomes: m.requests.map((r) => ({ id: r.id, ok: false as const, error })), timings: {} });
        return;
      }
      const batch = runBatch(m.requests).then((result) => send({ type: 'done', batchId: m.batchId, ...result }));
      running.add(batch);
      await batch.finally(() => running.delete(batch));
      return;
    }
    case 'cancel':
      controllers.get(m.id)?.abort(errors.cancelled());
      return;
    case 'shutdown':
      await handler?.dispose().catch(() => undefined);
      process.exit(0);
  }
}

async function runBatch(requests: WorkRequest[]): Promise<{ outcomes: RequestOutcome[]; timings: Record<string, number> }> {
  const timings: Record<string, number> = {};
  const timers = stageTimers(timings);
  const handles: RequestHandle[] = requests.map((r) => {
    const c = new AbortController();
    controllers.set(r.id, c);
    return { id: r.id, signal: c.signal, progress: (u) => report({ type: 'progress', id: r.id, ...u }) };
  });
  try {
    return { outcomes: await runHandler(requests, handles, timers), timings };
  } catch (err) {
    if (requests.length > 1) {
      // One bad request must not fail the others: run each alone.
      const outcomes: RequestOutcome[] = [];
      for (const [i, r] of requests.entries()) {
        try {
          outcomes.push(...(await runHandler([r], [handles[i]!], timers)));
        } catch (e) {
          outcomes.push({ id: r.id, ok: false, error: toSerialized(e) });
        }
      }
      return { outcomes, timings };
    }
    return { outcomes: [{ id: requests[0]!.id, ok: false, error: toSerialized(err) }], timings };
  } finally {
    for (const r of requests) controllers.delete(r.id);
  }
}

async function runHandler(requests: WorkRequest[], handles: RequestHandle[], timers: StageTimers): Promise<RequestOutcome[]> {
  if (!handler) throw errors.noWorkers('worker has no handler loaded');
  const h = handler;
  const ctx: RequestContext = { requests: handles, logger, timers };
  const reqs: InferenceRequest[] = requests.map((r) => ({ id: r.id, input: r.input, accept: r.accept }));
  const batch = await timers.timeAsync('preprocess', async () => h.preprocess(reqs, ctx));
  const outputs = await timers.timeAsync('inference', () => h.inference(batch, ctx));
  const results = await timers.timeAsync('postprocess', async () => h.postprocess(outputs, ctx));
  if (results.length !== requests.length) {
    throw new EaselError('EASEL_HANDLER_FAILED', `handler returned ${results.length} results for ${requests.length} requests`);
  }
  return results.map((r, i) => (isEaselError(r) ? { id: requests[i]!.id, ok: false, error: r.toJSON() } : { id: requests[i]!.id, ok: true, contentType: r.contentType, data: r.data, parts: r.parts }));
}

function stageTimers(into: Record<string, number>): StageTimers {
  const add = (stage: string, t0: bigint): void => {
    into[stage] = (into[stage] ?? 0) + Number(process.hrtime.bigint() - t0) / 1e9;
  };
  return {
    time(stage, fn) {
      const t0 = process.hrtime.bigint();
      try {
        return fn();
      } finally {
        add(stage, t0);
      }
    },
    async timeAsync(stage, fn) {
      const t0 = process.hrtime.bigint();
      try {
        return await fn();
      } finally {
        add(stage, t0);
      }
    },
  };
}

function toSerialized(err: unknown): { code: string; message: string; field?: string } {
  if (isEaselError(err)) return err.toJSON();
  logger.error({ err }, 'handler error');
  return { code: 'EASEL_HANDLER_FAILED', message: `the handler failed: ${(err as Error)?.message ?? String(err)}` };
}
