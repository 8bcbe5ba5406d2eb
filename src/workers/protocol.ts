// The typed messages between the server (parent) and a worker process (child), over Node's
// IPC channel with structured-clone serialization (so image bytes travel as Uint8Array).
import type { SerializedError } from '../errors/easel-error.js';
import type { TensorSignature, TurnReport } from '../handlers/handler.js';
import type { Payload, Progress } from '../models/model-control.js';
import type { ModelSpec } from '../models/model-spec.js';
import type { BatchingPlan } from '../scheduling/batching.js';

export interface WorkRequest {
  id: string;
  input: Record<string, unknown>;
  accept?: string | undefined;
}

export type ParentCommand =
  | { type: 'init'; workerId: string; modelDir: string; draftDir?: string | undefined; spec: ModelSpec; batching: BatchingPlan; allowCustomHandlers: boolean; logLevel: string }
  | { type: 'run'; batchId: number; requests: WorkRequest[] }
  | { type: 'cancel'; id: string }
  | { type: 'shutdown' };

export type RequestOutcome =
  | { id: string; ok: true; contentType: string; data: Uint8Array; parts?: readonly Payload[] | undefined }
  | { id: string; ok: false; error: SerializedError };

/** What a step loop's turn tells: each request's progress, and the turn's own report. */
export type Report = ({ type: 'progress'; id: string } & Progress) | ({ type: 'step' } & TurnReport);

export type ChildCommand =
  | { type: 'ready'; notes?: string[]; signature?: TensorSignature | undefined }
  | { type: 'init-failed'; error: SerializedError }
  // A turn's reports travel together: one IPC message per turn, not one per request and token.
  | { type: 'reports'; items: Report[] }
  | { type: 'done'; batchId: number; outcomes: RequestOutcome[]; timings: Record<string, number> };
