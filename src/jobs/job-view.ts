// A job as clients see it on the wire (HTTP responses, event streams, webhooks): snake_case,
// outputs as URLs, uploaded bytes elided.
import type { Job } from './job.js';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The job as clients see it (snake_case on the wire, outputs as URLs). */
export function publicJob(job: Job, position: number | null = null, estimatedSeconds: number | null = null): Record<string, unknown> {
  const input = Object.fromEntries(Object.entries(job.input).map(([k, v]) => [k, v instanceof Uint8Array ? `<${v.byteLength} bytes>` : v]));
  return {
    id: job.id,
    model: job.model,
    version: job.version,
    status: job.status,
    priority: job.priority,
    queue_position: position,
    estimated_seconds: estimatedSeconds,
    progress: job.progress ? { ...job.progress, fraction: job.progress.total > 0 ? job.progress.step / job.progress.total : 0 } : null,
    attempts: job.attempts,
    error: job.error,
    outputs: job.outputs.map((o, n) => ({ url: `/v1/jobs/${job.id}/outputs/${n}`, content_type: o.contentType, bytes: o.bytes })),
    input,
    created_at: iso(job.createdAt),
    started_at: iso(job.startedAt),
    completed_at: iso(job.completedAt),
    expires_at: iso(job.expiresAt),
    metrics: {
      queue_seconds: job.startedAt === null ? null : (job.startedAt - job.createdAt) / 1000,
      run_seconds: job.startedAt === null || job.completedAt === null ? null : (job.completedAt - job.startedAt) / 1000,
    },
    // Seconds per stage of the finished run: queue_wait, then its batch's in the worker (preprocess, inference, postprocess, encode_image…).
    timings: job.timings,
  };
}
