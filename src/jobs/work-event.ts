// The one event type of a unit of work, in its wire form: what the backends store and publish
// (the SQLite event table, the Redis stream) is exactly what SSE, WebSocket and webhooks send.
import { isTerminal, JOB_STATUSES, type Job, type JobProgress, type JobStatus, type TextChunk } from './job.js';
import { publicJob } from './job-view.js';

export const WORK_EVENT_TYPES = ['status', 'progress', 'preview', 'token', 'output', 'error'] as const;
export type WorkEventType = (typeof WORK_EVENT_TYPES)[number];

export interface WorkEvent {
  /** Increases along one job's events; a client resumes after one (SSE Last-Event-ID). */
  readonly id: string;
  readonly type: WorkEventType;
  readonly data: Readonly<Record<string, unknown>>;
}

/** An event before its backend gave it an id. */
export type NewWorkEvent = Omit<WorkEvent, 'id'>;

export function statusEvent(job: Job): NewWorkEvent {
  return { type: 'status', data: publicJob(job) };
}

/**
 * The events of one progress report: a text model's new text as a token event, otherwise the
 * progress and, with a preview image, a preview event.
 */
export function progressEvents(p: JobProgress, preview?: { contentType: string; data: Uint8Array }, text?: TextChunk): NewWorkEvent[] {
  if (text !== undefined) return [{ type: 'token', data: { text: text.text, offset: text.offset, step: p.step, total: p.total, ...(text.logprobs ? { logprobs: text.logprobs } : {}) } }];
  const progress: NewWorkEvent = { type: 'progress', data: { step: p.step, total: p.total, fraction: p.total > 0 ? p.step / p.total : 0 } };
  return preview ? [progress, { type: 'preview', data: { content_type: preview.contentType, data: Buffer.from(preview.data).toString('base64') } }] : [progress];
}

/**
 * Joins a text output's chunks exactly once: a chunk says where it goes (`offset`, the characters
 * before it), and what the reader already has is cut from it. A run started again from the
 * beginning elsewhere (its node died) makes the same text (the seed is fixed at admission), so
 * its first chunks are dropped until it passes what was sent.
 */
export class TextJoin {
  constructor(private have = 0) {}

  /** The part of a chunk that is new, placed where it goes (its scores only when whole); undefined when nothing is. */
  next(chunk: TextChunk): TextChunk | undefined {
    const end = chunk.offset + chunk.text.length;
    if (end <= this.have) return undefined;
    const cut = Math.max(0, this.have - chunk.offset);
    this.have = end;
    return cut === 0 ? chunk : { text: chunk.text.slice(cut), offset: chunk.offset + cut };
  }
}

/** The job's status as a status event tells it (terminal statuses end a stream). */
export function eventStatus(e: WorkEvent | NewWorkEvent): JobStatus | undefined {
  const status = e.type === 'status' ? e.data.status : undefined;
  return typeof status === 'string' && (JOB_STATUSES as readonly string[]).includes(status) ? (status as JobStatus) : undefined;
}

/** A status event that ends the job's stream (succeeded, failed, cancelled). */
export function isFinalEvent(e: WorkEvent | NewWorkEvent): boolean {
  const status = eventStatus(e);
  return status !== undefined && isTerminal(status);
}

/**
 * Orders event ids: "12" (embedded) and "1700000000000-3" (Redis stream) compare part by part as
 * numbers; negative when a comes first.
 */
export function compareEventIds(a: string, b: string): number {
  const pa = a.split('-').map(Number);
  const pb = b.split('-').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** A client's Last-Event-ID, if it is one of ours (digits, or digits-digits). */
export function isEventId(s: string): boolean {
  return /^\d{1,20}(-\d{1,20})?$/.test(s);
}
