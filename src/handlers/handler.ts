// The handler contract (TorchServe-shaped): initialize → preprocess → inference → postprocess,
// over a batch of requests, with per-request cancellation, progress and stage timers.
import type { EaselError } from '../errors/easel-error.js';
import type { ModelSpec } from '../models/model-spec.js';

export interface InferenceRequest {
  readonly id: string;
  /** The request's fields: JSON object fields, `data` for a raw body or an uploaded file. */
  readonly input: Readonly<Record<string, unknown>>;
  /** The client's Accept header, for handlers that can answer in more than one form. */
  readonly accept?: string | undefined;
}

export interface HandlerResult {
  readonly contentType: string;
  readonly data: Uint8Array;
}

/** A request's result, or its own error (a cancelled request in a batch fails alone). */
export type HandlerOutcome = HandlerResult | EaselError;

export interface ProgressUpdate {
  step: number;
  total: number;
  preview?: HandlerResult;
}

/** One request's live handle inside a batch. */
export interface RequestHandle {
  readonly id: string;
  readonly signal: AbortSignal;
  progress(update: ProgressUpdate): void;
}

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** Stage timing, TorchServe's `@timed`: `timers.time('tokenize', () => ...)`. */
export interface StageTimers {
  time<T>(stage: string, fn: () => T): T;
  timeAsync<T>(stage: string, fn: () => Promise<T>): Promise<T>;
}

export interface RequestContext {
  /** Index-aligned with the batch given to preprocess. */
  readonly requests: readonly RequestHandle[];
  readonly logger: Logger;
  readonly timers: StageTimers;
}

export interface HandlerContext {
  readonly modelDir: string;
  readonly spec: ModelSpec;
  readonly logger: Logger;
  /** Reports one model step (a UNet turn): how many requests' images it carried and how long it took. */
  readonly reportStep?: ((images: number, seconds: number) => void) | undefined;
}

export interface Handler<Batch = unknown, Out = unknown> {
  initialize(ctx: HandlerContext): Promise<void>;
  /** Validates (throwing EaselError naming the field) and prepares the batch. */
  preprocess(requests: readonly InferenceRequest[], ctx: RequestContext): Batch | Promise<Batch>;
  /** One output per request, in order. */
  inference(batch: Batch, ctx: RequestContext): Promise<Out[]>;
  postprocess(outputs: Out[], ctx: RequestContext): HandlerOutcome[] | Promise<HandlerOutcome[]>;
  /** What the handler learned about its model that users should know (shown by GET /models/{m}). */
  notes?(): string[];
  dispose(): Promise<void>;
}

export type HandlerFactory = () => Handler;

export function jsonResult(value: unknown): HandlerResult {
  return { contentType: 'application/json', data: new TextEncoder().encode(JSON.stringify(value)) };
}
