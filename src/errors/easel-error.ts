// Easel's one error type and its code table. Every error a client can see has a code here;
// the HTTP status and whether a retry can help live with the code, so no call site repeats them
// and retry policies read the table, never a list of code strings.

export const ERROR_CODES = {
  EASEL_BAD_REQUEST: { status: 400, retryable: false, description: 'The request is malformed: bad JSON, a wrong type, a missing field.' },
  EASEL_INVALID_PARAMETER: { status: 400, retryable: false, description: 'A field or query parameter is out of its allowed range.' },
  EASEL_URL_REFUSED: { status: 400, retryable: false, description: 'A URL the server would connect to (webhook, model URL) is not http(s), does not resolve, or points at an internal address that is not allow-listed.' },
  EASEL_UNAUTHORIZED: { status: 401, retryable: false, description: 'A bearer token is required and was missing or wrong.' },
  EASEL_FORBIDDEN: { status: 403, retryable: false, description: 'The operation is not allowed by configuration (URL allow-list, custom handlers).' },
  EASEL_NOT_FOUND: { status: 404, retryable: false, description: 'No such route.' },
  EASEL_MODEL_NOT_FOUND: { status: 404, retryable: false, description: 'No model, or no such version of it, is registered.' },
  EASEL_METHOD_NOT_ALLOWED: { status: 405, retryable: false, description: 'The route exists but not for this HTTP method.' },
  EASEL_JOB_NOT_FOUND: { status: 404, retryable: false, description: 'No job with this id (never submitted, or expired after the job TTL).' },
  EASEL_OUTPUT_NOT_FOUND: { status: 404, retryable: false, description: 'The job has no output with this index (not finished, failed, or expired).' },
  EASEL_MODEL_EXISTS: { status: 409, retryable: false, description: 'A model with this name and version is already registered.' },
  EASEL_JOB_FINISHED: { status: 409, retryable: false, description: 'The job has already finished, so it cannot be cancelled.' },
  EASEL_IDEMPOTENCY_KEY_REUSED: { status: 422, retryable: false, description: 'The Idempotency-Key was already used for a request with a different body (IETF idempotency-key draft).' },
  EASEL_INPUT_TOO_LARGE: { status: 413, retryable: false, description: "A job's input, as it would be stored, exceeds maxJobInputBytes." },
  EASEL_BODY_TOO_LARGE: { status: 413, retryable: false, description: 'The request body exceeds maxBodyBytes.' },
  EASEL_URI_TOO_LONG: { status: 414, retryable: false, description: 'The request URL is longer than the server accepts.' },
  EASEL_UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false, description: 'The Content-Type is not one the route accepts.' },
  EASEL_REQUEST_TIMEOUT: { status: 408, retryable: true, description: 'The client did not send the whole request (headers and body) within requestTimeoutMs.' },
  EASEL_UPGRADE_REQUIRED: { status: 426, retryable: false, description: 'The route speaks WebSocket; the request did not ask to upgrade.' },
  EASEL_HEADERS_TOO_LARGE: { status: 431, retryable: false, description: 'The request headers are larger than the server accepts.' },
  EASEL_ARCHIVE_INVALID: { status: 400, retryable: false, description: 'A model archive is corrupt, unsafe (path traversal, links out) or too large.' },
  EASEL_MODEL_INVALID: { status: 400, retryable: false, description: 'A model directory or its easel.yaml / model-config.yaml is invalid.' },
  EASEL_CANCELLED: { status: 499, retryable: false, description: 'The request was cancelled before it finished.' },
  EASEL_INTERNAL: { status: 500, retryable: false, description: 'An unexpected error; details are logged, not returned.' },
  EASEL_HANDLER_FAILED: { status: 500, retryable: false, description: "The model's handler raised an error while processing the request." },
  EASEL_WORKER_DIED: { status: 502, retryable: true, description: 'The worker process died while running the request, and the retry failed too.' },
  EASEL_RATE_LIMITED: { status: 429, retryable: true, description: "The API key (or client address) passed its requests per minute; retry after the Retry-After delay." },
  EASEL_TOO_MANY_JOBS: { status: 429, retryable: true, description: 'The API key has as many queued jobs as one key may (maxQueuedJobsPerKey); retry when some have started.' },
  EASEL_TOO_MANY_STREAMS: { status: 429, retryable: true, description: 'The API key (or client address) holds as many open event streams (SSE, WebSocket) as one client may; close one first.' },
  EASEL_QUEUE_FULL: { status: 503, retryable: true, description: "The model's queue is at its limit; retry after the Retry-After delay." },
  EASEL_QUEUE_TIMEOUT: { status: 503, retryable: true, description: "The request waited longer than the model's queueTimeoutMs for a worker; retry after the Retry-After delay." },
  EASEL_NO_WORKERS: { status: 503, retryable: true, requeue: true, description: 'The model has no live worker and none could be started.' },
  EASEL_SHUTTING_DOWN: { status: 503, retryable: true, requeue: true, description: 'The server is draining and accepts no new requests.' },
  EASEL_TIMEOUT: { status: 504, retryable: true, description: "The request exceeded the model's responseTimeoutMs." },
} as const satisfies Record<string, { status: number; retryable: boolean; requeue?: true; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface EaselErrorOptions {
  cause?: unknown;
  /** The request field or parameter at fault, when there is one. */
  field?: string;
  /** Seconds a client should wait before retrying (503s). */
  retryAfterSeconds?: number;
}

export class EaselError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: EaselErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'EaselError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.field = options.field;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  /** Whether trying the same request again can succeed (the table says, per code). */
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  /** Not the work's fault (no worker here, a node draining): queued work goes back to the queue. */
  get requeue(): boolean {
    return 'requeue' in ERROR_CODES[this.code];
  }

  /** The wire form: what clients and worker IPC see. */
  toJSON(): SerializedError {
    return {
      code: this.code,
      message: this.message,
      ...(this.field !== undefined ? { field: this.field } : {}),
      ...(this.retryAfterSeconds !== undefined ? { retryAfterSeconds: this.retryAfterSeconds } : {}),
    };
  }

  static fromJSON(e: SerializedError): EaselError {
    const code = Object.hasOwn(ERROR_CODES, e.code) ? (e.code as ErrorCode) : 'EASEL_INTERNAL';
    return new EaselError(code, e.message, {
      ...(e.field !== undefined ? { field: e.field } : {}),
      ...(e.retryAfterSeconds !== undefined ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
    });
  }
}

export interface SerializedError {
  code: string;
  message: string;
  field?: string;
  retryAfterSeconds?: number;
}

/** A client error for one field: "steps must be 1–100, got 500". */
export function invalidField(field: string, message: string): EaselError {
  return new EaselError('EASEL_INVALID_PARAMETER', message, { field });
}

/**
 * Constructors for the errors raised in more than one place: one message template per code
 * (as Fastify's createError), so call sites say what happened, not how to word it.
 */
export const errors = {
  /** `what`: requests, jobs. */
  shuttingDown: (what = 'requests', retryAfterSeconds?: number): EaselError =>
    new EaselError('EASEL_SHUTTING_DOWN', `the server is shutting down and accepts no new ${what}`, retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  queueFull: (queue: string, limit: number, unit: string, retryAfterSeconds: number): EaselError =>
    new EaselError('EASEL_QUEUE_FULL', `the ${queue} is full (${limit} ${unit}); retry later`, { retryAfterSeconds }),
  queueTimeout: (model: string, waitedMs: number): EaselError =>
    new EaselError('EASEL_QUEUE_TIMEOUT', `the request waited ${waitedMs} ms for a worker of ${model} (queueTimeoutMs); retry later`, { retryAfterSeconds: 1 }),
  timeout: (model: string, ms: number): EaselError => new EaselError('EASEL_TIMEOUT', `${model} did not answer within ${ms} ms (responseTimeoutMs)`),
  /** `detail`: "the client went away", "after 3 of 20 steps". */
  cancelled: (detail?: string): EaselError => new EaselError('EASEL_CANCELLED', detail === undefined ? 'request cancelled' : `request cancelled: ${detail}`),
  modelNotFound: (detail: string, field?: string): EaselError => new EaselError('EASEL_MODEL_NOT_FOUND', detail, field === undefined ? {} : { field }),
  noWorkers: (detail: string, retryAfterSeconds?: number): EaselError => new EaselError('EASEL_NO_WORKERS', detail, retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  workerDied: (detail: string, attempts: number): EaselError =>
    new EaselError('EASEL_WORKER_DIED', `the worker running this request died (${detail}); it ran ${attempts} ${attempts === 1 ? 'time' : 'times'}, each ended by its worker dying, the most allowed (--max-attempts ${attempts}); the request was not completed`),
  jobNotFound: (id: string): EaselError => new EaselError('EASEL_JOB_NOT_FOUND', `no job ${id} (never submitted, or expired)`),
} as const;

export function isEaselError(err: unknown): err is EaselError {
  return err instanceof EaselError;
}
