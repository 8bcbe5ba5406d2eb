// How a model's requests are batched, from its spec and what its handler declares: the mode,
// the batch sizes, and how many requests one worker holds at once. Computed once here for the
// dispatcher, the runner's capacity and the worker's step loop.
import { handlerBatching, type BatchingMode } from '../handlers/admission.js';
import type { ModelSpec } from '../models/model-spec.js';

/** The batch of one group (resolution) for step-level batching when easel.yaml gives no batchSize. */
const DEFAULT_STEP_BATCH = 8;
/**
 * In step mode a worker holds this many batches' worth of requests, so that requests of two
 * resolutions (or a batch and the next arrivals) can each fill their model call; the rest wait
 * in the queue, where priorities and other workers still reach them.
 */
const STEP_INTAKE = 2;

export interface BatchingPlan {
  readonly mode: BatchingMode;
  /** Request mode: the most requests in one batch; none mode: 1. */
  readonly batchSize: number;
  readonly maxBatchDelayMs: number;
  /** Step mode: the memory budget of the active set (bytes), when easel.yaml sets one. */
  readonly maxMemoryBytes?: number | undefined;
  /** Step mode: the most states of one group in one model call (batchSize; 8 when unset). */
  readonly stepBatchSize: number;
  /** How many requests one worker takes at once: in step mode its active set, else the batch size. */
  readonly requestsPerWorker: number;
}

export function batchingPlan(spec: ModelSpec): BatchingPlan {
  const { batchSize, maxBatchDelayMs } = spec.batching;
  const mode = spec.batching.mode ?? handlerBatching(spec.handler).preferred ?? (batchSize > 1 ? 'request' : 'none');
  const stepBatchSize = batchSize === 1 ? DEFAULT_STEP_BATCH : batchSize;
  return { mode, batchSize, maxBatchDelayMs, stepBatchSize, requestsPerWorker: mode === 'step' ? STEP_INTAKE * stepBatchSize : batchSize, maxMemoryBytes: spec.batching.maxMemoryBytes };
}
