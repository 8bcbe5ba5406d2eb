// The event side of a job backend: per-job events, cancel requests, "queued" wake-ups and
// final statuses, delivered to listeners in this process. Backends feed it (SQLite directly,
// Redis from its pub/sub channel), keep each job's events for replay, and inherit the
// subscription half of the contract.
import { EventEmitter } from 'node:events';
import { isTerminal, type Job } from './job.js';
import { compareEventIds, isFinalEvent, statusEvent, type WorkEvent } from './work-event.js';

export abstract class JobEvents {
  readonly #events = new EventEmitter().setMaxListeners(0);

  abstract get(id: string): Promise<Job | undefined>;
  /** The job's stored events after `afterEventId`, in order. */
  protected abstract history(id: string, afterEventId: string): Promise<WorkEvent[]>;
  /** The id of the job's latest stored event ("0" before any). */
  protected abstract lastEventId(id: string): Promise<string>;

  protected emitJob(id: string, event: WorkEvent): void {
    this.#events.emit(`job:${id}`, event);
  }

  protected emitCancel(id: string): void {
    this.#events.emit('cancel', id);
  }

  protected emitQueued(job: Job): void {
    this.#events.emit('queued', job);
  }

  protected emitFinished(job: Job): void {
    this.#events.emit('finished', job);
  }

  protected removeAllListeners(): void {
    this.#events.removeAllListeners();
  }

  /** Characters of text the job's token events hold: where a run taken over from a dead node has its clients. */
  async loggedTextLength(id: string): Promise<number> {
    let n = 0;
    for (const e of await this.history(id, '0')) {
      if (e.type === 'token' && typeof e.data.text === 'string' && typeof e.data.offset === 'number') n = Math.max(n, e.data.offset + e.data.text.length);
    }
    return n;
  }

  /** The job's events as they happen, from now on. */
  subscribe(id: string, listener: (event: WorkEvent) => void): () => void {
    return this.#on(`job:${id}`, listener);
  }

  /**
   * Follows a job for a streaming client: with `afterEventId` (SSE's Last-Event-ID), every event
   * after it, then live ones; without, the job's current status, then live ones. No event is
   * delivered twice or out of order; a stream whose job has ended ends with a final status.
   */
  follow(id: string, listener: (event: WorkEvent) => void, afterEventId?: string): () => void {
    let stopped = false;
    let replaying = true;
    let last = afterEventId ?? '0';
    let ended = false;
    const buffered: WorkEvent[] = [];
    const deliver = (e: WorkEvent): void => {
      if (stopped || ended || compareEventIds(e.id, last) <= 0) return;
      last = e.id;
      ended = isFinalEvent(e);
      listener(e);
    };
    // Live events wait while the past is read: none falls between the two.
    const off = this.#on(`job:${id}`, (e: WorkEvent) => (replaying ? buffered.push(e) : deliver(e)));
    void (async () => {
      if (afterEventId !== undefined) {
        for (const e of await this.history(id, afterEventId)) deliver(e);
      } else {
        const at = await this.lastEventId(id);
        const job = await this.get(id);
        if (job) {
          listener({ id: at, ...statusEvent(job) });
          last = at;
          ended = isTerminal(job.status);
        }
      }
      replaying = false;
      for (const e of buffered.splice(0)) deliver(e);
      if (!ended && !stopped) {
        // Resumed after the job had ended: say so again, so the stream can close.
        const job = await this.get(id);
        if (job && isTerminal(job.status) && !ended && !stopped) {
          ended = true;
          listener({ id: last, ...statusEvent(job) });
        }
      }
    })().catch(() => {
      replaying = false;
    });
    return () => {
      stopped = true;
      off();
    };
  }

  onCancelRequested(listener: (id: string) => void): () => void {
    return this.#on('cancel', listener);
  }

  onQueued(listener: (job: Job) => void): () => void {
    return this.#on('queued', listener);
  }

  onFinished(listener: (job: Job) => void): () => void {
    return this.#on('finished', listener);
  }

  #on<T>(name: string, listener: (value: T) => void): () => void {
    this.#events.on(name, listener);
    return () => this.#events.off(name, listener);
  }
}
