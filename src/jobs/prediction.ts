// A synchronous prediction's wait: it was queued in the non-durable lane; its client waits for
// the result, within the response timeout and the queue timeout, and gives up when it goes
// away. Giving up takes it out of the queue, or stops it where it runs.
import { EaselError, errors } from '../errors/easel-error.js';
import { isTerminal, type Job, type JobBackend, type Payload, type JobError } from './job.js';
import { eventStatus, isFinalEvent, TextJoin, type WorkEvent } from './work-event.js';

export interface PredictionWait {
  model: string;
  /** From submission to the answer (the model's responseTimeoutMs). */
  timeoutMs: number;
  /** Until a worker takes it (Triton's queue policy); none when unset. */
  queueTimeoutMs?: number | undefined;
  /** Aborted when the client goes away. */
  signal?: AbortSignal | undefined;
  /** Each event of the work while it runs (token events stream a text model's output). */
  onEvent?: ((e: WorkEvent) => void) | undefined;
}

export function awaitPrediction(queue: JobBackend, submitted: Job, o: PredictionWait): Promise<Payload> {
  const id = submitted.id;
  return new Promise<Payload>((resolve, reject) => {
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      off();
      for (const t of timers) clearTimeout(t);
      o.signal?.removeEventListener('abort', onClientGone);
      f();
    };
    const ended = (status: string, error: JobError | null): void =>
      settle(() => {
        if (status === 'succeeded') {
          queue.result(id).then((r) => (r ? resolve(r) : reject(new EaselError('EASEL_INTERNAL', 'the prediction succeeded but its result was lost'))), reject);
        } else {
          reject(EaselError.fromJSON(error ?? { code: 'EASEL_INTERNAL', message: `the prediction ended ${status}` }));
        }
      });
    const giveUp = (err: EaselError): void =>
      settle(() => {
        queue.cancel(id).catch(() => undefined);
        reject(err);
      });
    // Each character once: a run that another node starts again from the beginning (its node
    // died) repeats its text until it passes what this client has.
    const join = new TextJoin();
    const off = queue.subscribe(id, (e) => {
      if (!settled && o.onEvent) {
        if (e.type !== 'token' || typeof e.data.text !== 'string' || typeof e.data.offset !== 'number') o.onEvent(e);
        else {
          const chunk = { text: e.data.text, offset: e.data.offset };
          const fresh = join.next(chunk);
          if (fresh === chunk) o.onEvent(e);
          else if (fresh) o.onEvent({ ...e, data: { ...e.data, ...fresh, logprobs: undefined } });
        }
      }
      const status = eventStatus(e);
      if (status !== undefined && isFinalEvent(e)) ended(status, (e.data.error as JobError | null) ?? null);
    });
    const onClientGone = (): void => giveUp(errors.cancelled('the client went away'));
    if (o.signal?.aborted) return onClientGone();
    o.signal?.addEventListener('abort', onClientGone, { once: true });
    timers.push(setTimeout(() => giveUp(errors.timeout(o.model, o.timeoutMs)), o.timeoutMs));
    if (o.queueTimeoutMs !== undefined) {
      const waited = o.queueTimeoutMs;
      timers.push(
        setTimeout(() => {
          // Only if no worker has taken it: one that runs is not timed out by the queue.
          const err = errors.queueTimeout(o.model, waited);
          void queue.withdraw(id, err.toJSON()).then((withdrawn) => {
            if (withdrawn) settle(() => reject(err));
          });
        }, waited),
      );
    }
    // It may have ended before the subscription began.
    void queue.get(id).then((job) => {
      if (job && isTerminal(job.status)) ended(job.status, job.error);
    });
  });
}
