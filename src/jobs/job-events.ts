// The event side of a job backend: per-job events, cancel requests, "queued" wake-ups and
// final statuses, delivered to listeners in this process. Backends feed it (SQLite directly,
// Redis from its pub/sub channel) and inherit the subscription half of the contract.
import { EventEmitter } from 'node:events';
import type { Job, JobEvent } from './job.js';

export abstract class JobEvents {
  readonly #events = new EventEmitter().setMaxListeners(0);

  protected emitJob(id: string, event: JobEvent): void {
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

  subscribe(id: string, listener: (event: JobEvent) => void): () => void {
    return this.#on(`job:${id}`, listener);
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
