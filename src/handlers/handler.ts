// The handler contract (TorchServe-shaped): initialize → preprocess → inference → postprocess,
// over a batch of requests, with per-request cancellation, progress and stage timers.
import type { EaselError } from '../errors/easel-error.js';
import type { Payload, Progress, TensorSignature } from '../models/model-control.js';

export type { TensorSignature };
import type { ModelSpec } from '../models/model-spec.js';

export interface InferenceRequest {
  readonly id: string;
  /** The request's fields: JSON object fields, `data` for a raw body or an uploaded file. */
  readonly input: Readonly<Record<string, unknown>>;
  /** The client's Accept header, for handlers that can answer in more than one form. */
  readonly accept?: string | undefined;
}

/** A result's bytes and media type. */
export type HandlerResult = Payload;

/** A request's result, or its own error (a cancelled request in a batch fails alone). */
export type HandlerOutcome = HandlerResult | EaselError;

export type ProgressUpdate = Progress;

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

/**
 * A handler's step API, for iteration-level batching (the diffusion step loop, an LM's decode
 * loop): how to begin runs, step every active state in shared calls, and finish the done ones.
 * The scheduling layer drives it; the handler never forms batches itself.
 */
export interface StepModel<Req, State, Out> {
  /** Begins these runs together (text encoding, prefill); one state per request. */
  begin(requests: readonly Req[]): Promise<State[]>;
  /** One step for every state that is not finished, in as few model calls as the model allows. */
  step(states: readonly State[]): Promise<void>;
  isFinished(state: State): boolean;
  /** Ends these finished runs together (VAE decode, detokenize); one output per state. */
  finish(states: readonly State[]): Promise<Out[]>;
  /** Requests of one group can share a model call (a resolution); maxBatchSize bounds each group. */
  group(request: Req): string;
  /** How far a state is, for progress and cancel messages. */
  progress(state: State): { step: number; total: number };
  /** How many steps a request will take. */
  length(request: Req): number;
  /** Bytes the model holds for its active states (an LM's KV cache), when it knows. */
  memoryBytes?(): number;
  /** What begin, step and finish are, as stages of easel_stage_seconds (text_encode, denoise, vae_decode); begin, step, finish by default. */
  readonly stages?: { readonly begin: string; readonly step: string; readonly finish: string };
  /** Named counts since the last turn, for the metrics (speculative decoding's proposed and accepted tokens). */
  counters?(): Readonly<Record<string, number>> | undefined;
  /** The most memory a request can come to need (its KV cache at full length), for a memory budget. */
  memoryFor?(request: Req): number;
}

/** What one turn of a worker's step loop did, for the metrics. */
export interface TurnReport {
  /** States stepped. */
  readonly states: number;
  /** How long the turn's model calls took. */
  readonly seconds: number;
  /** The model's memory for its active states, when it knows. */
  readonly memoryBytes?: number | undefined;
  readonly counters?: Readonly<Record<string, number>> | undefined;
  /** Seconds the worker spent inside ONNX Runtime's session.run() since its last report. */
  readonly sessionSeconds?: number | undefined;
  /** Seconds of each model call of the turn, by the model's stage names (begin, the step, finish). */
  readonly stages?: Readonly<Record<string, number>> | undefined;
  /** The loop went idle: nothing active, nothing waiting (the gauges of active work return to 0). */
  readonly rest?: boolean | undefined;
}

export interface StepRunOptions<State> {
  signal?: AbortSignal | undefined;
  /** After each step of this run (all its states stepped once). */
  onStep?: ((states: readonly State[]) => void | Promise<void>) | undefined;
  /** After this run's states are begun, before the turn's step (an LM's prefill has chosen each first token). */
  onBegin?: ((states: readonly State[]) => void | Promise<void>) | undefined;
}

/** Runs requests through the worker's step loop; a cancelled run rejects with EASEL_CANCELLED. */
export interface StepRunner<Req, State, Out> {
  run(requests: readonly Req[], options?: StepRunOptions<State>): Promise<Out[]>;
}

export interface HandlerContext {
  readonly modelDir: string;
  /** The speculative draft model's directory (spec.speculative), found by the model store. */
  readonly draftDir?: string | undefined;
  readonly spec: ModelSpec;
  readonly logger: Logger;
  /**
   * The worker's step loop over the handler's step API, batched as the model's batching mode
   * says (in step mode, up to its batch size per group; otherwise each batch the worker was
   * sent runs whole).
   */
  stepLoop<Req, State, Out>(model: StepModel<Req, State, Out>): StepRunner<Req, State, Out>;
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
  /** The graph's named tensors, where requests are tensors (the tensor handler): KServe v2's model metadata. */
  signature?(): TensorSignature;
  dispose(): Promise<void>;
}

export function jsonResult(value: unknown): HandlerResult {
  return { contentType: 'application/json', data: new TextEncoder().encode(JSON.stringify(value)) };
}
