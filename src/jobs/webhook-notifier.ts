// Webhooks, as in Cog: POST the job to its `webhook` URL on `start`, on `output` (progress,
// throttled) and on `completed`, filtered by `webhook_events_filter`. Deliveries of one job go in
// order; a failed one is retried with backoff. With a secret, each is signed the Standard
// Webhooks way: webhook-id, webhook-timestamp, webhook-signature = v1,base64(HMAC-SHA256(
// secret, `${id}.${timestamp}.${body}`)). Every delivery goes through the outbound guard: the
// address is checked again at delivery (it was at submission), redirects are not followed.
import { createHmac, randomUUID } from 'node:crypto';
import { isEaselError } from '../errors/easel-error.js';
import { guardedRequest, parseOutboundUrl, readCapped, type OutboundPolicy } from '../net/outbound-guard.js';
import type { Job, JobBackend } from './job.js';
import { publicJob } from './job-view.js';
import { isFinalEvent } from './work-event.js';

export const WEBHOOK_EVENTS = ['start', 'output', 'completed'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface WebhookLogger {
  warn(obj: object, msg?: string): void;
}

export interface WebhookNotifierOptions {
  backend: JobBackend;
  logger: WebhookLogger;
  secret?: string | undefined;
  /** Which receivers may be reached (internal ones only when allow-listed). */
  policy: OutboundPolicy;
  /** Delays before each retry of a failed delivery. */
  retryDelaysMs?: readonly number[];
  /** At most one progress (`output`) delivery per job per this interval. */
  progressIntervalMs?: number;
  timeoutMs?: number;
}

export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  return `v1,${createHmac('sha256', secret).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** A receiver's answer is read up to this much, then dropped. */
const RESPONSE_CAP_BYTES = 64 * 1024;

export class WebhookNotifier {
  readonly #o: WebhookNotifierOptions;
  readonly #tracked = new Map<string, () => void>();
  #closed = false;

  constructor(o: WebhookNotifierOptions) {
    this.#o = o;
  }

  /** Starts delivering a running job's events to its webhook (no-op without one). */
  track(job: Job): void {
    if (!job.webhook || this.#tracked.has(job.id) || this.#closed) return;
    const url = job.webhook;
    const wanted = new Set<string>(job.webhookEvents ?? WEBHOOK_EVENTS);
    let chain = Promise.resolve();
    let lastProgressAt = 0;
    // The body is the job's public view: a final status event's data, carried unchanged.
    const deliver = (event: WebhookEvent, state: () => Promise<Readonly<Record<string, unknown>> | undefined>): void => {
      if (!wanted.has(event)) return;
      chain = chain
        .then(async () => {
          const current = await state();
          if (current) await this.#send(url, event, job.id, current);
        })
        .catch((err: unknown) => this.#o.logger.warn({ job: job.id, event, err: (err as Error).message }, 'webhook delivery abandoned'));
    };
    const off = this.#o.backend.subscribe(job.id, (e) => {
      if (isFinalEvent(e)) {
        deliver('completed', async () => e.data);
        this.#tracked.get(job.id)?.();
      } else if (e.type === 'progress') {
        const now = Date.now();
        if (now - lastProgressAt < (this.#o.progressIntervalMs ?? 500)) return;
        lastProgressAt = now;
        deliver('output', async () => {
          const current = await this.#o.backend.get(job.id);
          return current && publicJob(current);
        });
      }
    });
    this.#tracked.set(job.id, () => {
      off();
      this.#tracked.delete(job.id);
    });
    deliver('start', async () => publicJob(job));
  }

  async #send(url: string, event: WebhookEvent, jobId: string, view: Readonly<Record<string, unknown>>): Promise<void> {
    const body = JSON.stringify({ ...view, webhook_event: event });
    const job = { id: jobId };
    const id = `msg_${randomUUID()}`;
    const delays = this.#o.retryDelaysMs ?? [1000, 2000, 4000, 8000, 16000];
    for (let attempt = 0; attempt <= delays.length && !this.#closed; attempt += 1) {
      // Retries keep the message id (receivers de-duplicate on it) with a fresh timestamp and signature.
      const timestamp = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(timestamp) };
      if (this.#o.secret) headers['webhook-signature'] = signWebhook(this.#o.secret, id, timestamp, body);
      try {
        const res = await guardedRequest(parseOutboundUrl(url, 'webhook'), this.#o.policy, { method: 'POST', headers, body, timeoutMs: this.#o.timeoutMs ?? 10_000, field: 'webhook' });
        const status = res.statusCode ?? 0;
        await readCapped(res, RESPONSE_CAP_BYTES);
        if (status >= 200 && status < 300) return;
        if (status >= 300 && status < 400) {
          this.#o.logger.warn({ job: job.id, url, event, status }, 'webhook answered a redirect; redirects are not followed');
          return;
        }
        this.#o.logger.warn({ job: job.id, url, event, status, attempt }, 'webhook answered an error');
      } catch (err) {
        if (isEaselError(err)) {
          // Refused by the guard (the name now resolves to an internal address): no retry helps.
          this.#o.logger.warn({ job: job.id, url, event, err: err.message }, 'webhook refused');
          return;
        }
        this.#o.logger.warn({ job: job.id, url, event, err: (err as Error).message, attempt }, 'webhook delivery failed');
      }
      const delay = delays[attempt];
      if (delay !== undefined) await new Promise((r) => setTimeout(r, delay));
    }
  }

  close(): void {
    this.#closed = true;
    for (const stop of [...this.#tracked.values()]) stop();
  }
}
