// What the HTTP layer needs from whatever runs models: the contract between `server/` and
// `workers/` (wired together by `cli/`), as plain data.
import type { ModelEntry, ModelSpec } from './model-spec.js';

/** FAILED: it died too often, too soon, and is no longer restarted (its model's `error` says why). */
export type WorkerStatus = 'STARTING' | 'READY' | 'BUSY' | 'STOPPING' | 'DEAD' | 'FAILED';

export interface WorkerDescription {
  id: string;
  pid: number | null;
  status: WorkerStatus;
  startTime: string;
  memoryUsage: number | null;
  restarts: number;
}

export interface ModelDescription {
  modelName: string;
  modelVersion: string;
  modelUrl: string;
  handler: string;
  isDefault: boolean;
  minWorkers: number;
  maxWorkers: number;
  batchSize: number;
  maxBatchDelay: number;
  responseTimeout: number;
  description?: string | undefined;
  /** none, request or step. */
  batchingMode: string;
  /** Why this version's workers were given up on (they died too often, too soon), when they were: scale it to try again. */
  error?: string | undefined;
  /** Speculative decoding in effect: the draft model, tokens it proposes per round (adaptive: per sequence, from k), the batch size above which steps decode plainly (null: none). */
  speculative?: { draft: string; k: number; adaptive: boolean; maxBatch: number | null } | undefined;
  /** What the handler found out about the model (e.g. limits on batching). */
  notes: string[];
  workers: WorkerDescription[];
  jobQueueStatus: { remainingCapacity: number; pendingRequests: number };
}

export interface RegisterOptions {
  url: string;
  initialWorkers?: number | undefined;
  synchronous: boolean;
}

export interface Health {
  healthy: boolean;
  /** capacity: requests this node's live workers of the version take at once; failed: why its workers were given up on. */
  models: { name: string; version: string; liveWorkers: number; busyWorkers: number; minWorkers: number; capacity: number; failed?: string | undefined }[];
}

/** How far a request is (steps, tokens), with an optional preview: one shape from the handler to the queue. */
export interface Progress {
  step: number;
  total: number;
  preview?: Payload | undefined;
  /** Text generation: the text made since the last report (a stream's next chunk). */
  text?: string | undefined;
  /** With logprobs asked: the tokens made since the last report, each with its log-probability and alternatives. */
  logprobs?: readonly TokenLogprob[] | undefined;
  /**
   * Fields that let a retry go on from this report instead of starting over (a text model: the
   * tokens made and the characters sent so far), merged into the request's input if its worker
   * dies: what the client has is never sent twice. An array field accumulates over the reports
   * (each sends what is new); any other field replaces the last one's.
   */
  resume?: Readonly<Record<string, unknown>> | undefined;
}

/** A generated token's log-probability and its likeliest alternatives, as the wire carries them. */
export interface TokenLogprob {
  readonly token: string;
  readonly token_id: number;
  readonly logprob: number | null;
  readonly top_logprobs: readonly { token: string; token_id: number; logprob: number }[] | null;
}

/** A result as bytes with their media type (an image, JSON). */
export interface Payload {
  readonly contentType: string;
  readonly data: Uint8Array;
  /**
   * A result of several outputs (images), each as bytes: they cross processes and queues as
   * binary, and `data` is the JSON that describes them. Where a client asked for one JSON body,
   * the HTTP layer puts them in it as base64 (`responseBody`).
   */
  readonly parts?: readonly Payload[] | undefined;
}

export interface PredictOutcome {
  result: Payload;
  /** Seconds per handler stage (preprocess, inference, postprocess, and the handler's own). */
  timings: Record<string, number>;
  queueSeconds: number;
}

export interface PredictOptions {
  /** Aborted when the caller gives up: the worker is told to cancel. */
  signal: AbortSignal;
  /** The client's Accept header, handed to the handler. */
  accept?: string | undefined;
  /** Higher runs first (jobs pass their priority). */
  priority?: number | undefined;
  /** Called with the handler's progress reports while the request runs. */
  onProgress?: ((progress: Progress) => void) | undefined;
  /** Runs it has had already (a job taken over from a node that died): they count against the crash budget. */
  attempts?: number | undefined;
  /** Its worker died and it runs again, going on from its last progress report. */
  onRetry?: (() => void) | undefined;
}

/** A model's input and output tensors: name, element type (ONNX Runtime's: float32, int64…) and shape (-1 or a name: dynamic). */
export interface TensorSignature {
  inputs: { name: string; type: string; shape: (number | string)[] }[];
  outputs: { name: string; type: string; shape: (number | string)[] }[];
}

/**
 * What a client may ask of a model, public (GET /v1/models): its task, and its request fields'
 * defaults and limits as admission applies them. A custom handler's are its own: none here.
 */
export interface ModelParameters {
  readonly task: string | null;
  readonly parameters: Readonly<Record<string, unknown>>;
}

/** A text model's tokenizer as admission uses it (vLLM's /tokenize and /detokenize, token-id prompts). */
export interface TextTools {
  readonly contextLength: number;
  /** A prompt's tokens (with the tokenizer's own special tokens unless told not to), or a chat's, its template applied; as admission makes them. */
  tokenize(o: { prompt?: string | undefined; messages?: readonly { role: string; content: string }[] | undefined; addSpecialTokens?: boolean | undefined }): number[];
  detokenize(ids: readonly number[]): string;
}

export interface ModelControl {
  register(entry: ModelEntry, options: RegisterOptions): Promise<ModelDescription>;
  unregister(name: string, version?: string): Promise<void>;
  scale(name: string, version: string | undefined, minWorkers: number | undefined, maxWorkers: number | undefined, synchronous: boolean): Promise<void>;
  setDefault(name: string, version: string): void;
  list(): { modelName: string; modelUrl: string }[];
  describe(name: string, version?: string | 'all'): ModelDescription[];
  spec(name: string, version?: string): ModelSpec;
  /**
   * Admission, in this (the API) process: the model's handler parses a request's fields into the
   * request it will run, or throws a 400 naming the field. Only admitted requests are predicted.
   */
  admit(name: string, version: string | undefined, input: Readonly<Record<string, unknown>>): Record<string, unknown>;
  /** The model's task and request parameters, as admission applies them. */
  parameters(name: string, version?: string): ModelParameters;
  /** A text model's tokenizer; undefined for other models. */
  textTools(name: string, version?: string): TextTools | undefined;
  /** A tensor model's inputs and outputs, as a live worker's session has them; undefined before one is up. */
  signature(name: string, version?: string): TensorSignature | undefined;
  predict(name: string, version: string | undefined, input: Record<string, unknown>, options: PredictOptions): Promise<PredictOutcome>;
  health(): Health;
}
