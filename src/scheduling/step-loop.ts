// Iteration-level (continuous) batching over a handler's step API: one loop per worker keeps an
// active set; each turn it admits newcomers (begun together: a diffusion model's prompts encoded,
// an LM's prompts prefilled), runs one step for every active state in shared model calls, reports
// each run's progress, and finishes together the runs that are done (VAE decode, detokenize).
// A run joins at any turn and leaves as soon as it is done or cancelled, whatever the others'
// lengths. The loop knows nothing of the model: the handler's StepModel says what a step is.
import { errors } from '../errors/easel-error.js';
import type { StepModel, StepRunOptions, StepRunner, TurnReport } from '../handlers/handler.js';

interface Member<Req, State, Out> {
  readonly requests: readonly Req[];
  readonly options: StepRunOptions<State>;
  states: State[];
  resolve(outputs: Out[]): void;
  reject(err: unknown): void;
}

export interface StepLoopOptions {
  /**
   * The most states of one group (a resolution) in the active set: the model call of that group.
   * A run that would pass it waits for room; one run larger than this on its own still runs,
   * alone in its group.
   */
  maxBatchSize?: number | undefined;
  /**
   * The most memory the active set may come to need (the model's memoryFor of each run); a run
   * that would pass it waits for room, and one that needs more on its own still runs alone.
   */
  maxMemoryBytes?: number | undefined;
  /** What each turn did. */
  onTurn?(report: TurnReport): void;
}

const DEFAULT_STAGES = { begin: 'begin', step: 'step', finish: 'finish' };

export class StepLoop<Req, State, Out> implements StepRunner<Req, State, Out> {
  readonly #waiting: Member<Req, State, Out>[] = [];
  readonly #active: Member<Req, State, Out>[] = [];
  #running: Promise<void> | undefined;

  constructor(
    private readonly model: StepModel<Req, State, Out>,
    private readonly options: StepLoopOptions = {},
  ) {}

  /** Runs these requests (one client request's), sharing every step with whatever else is running. */
  run(requests: readonly Req[], options: StepRunOptions<State> = {}): Promise<Out[]> {
    return new Promise<Out[]>((resolve, reject) => {
      this.#waiting.push({ requests, options, states: [], resolve, reject });
      if (this.#running === undefined) this.#start();
    });
  }

  #start(): void {
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
      // Anything that arrived while the loop was winding down starts a new one.
      if (this.#waiting.length > 0) this.#start();
    });
  }

  async #loop(): Promise<void> {
    while (this.#waiting.length > 0 || this.#active.length > 0) {
      try {
        await this.#turn();
      } catch (err) {
        // A failure in a shared call fails everyone in it; the loop itself goes on for later runs.
        for (const m of [...this.#active.splice(0), ...this.#waiting.splice(0)]) m.reject(err);
      }
    }
    // Idle: what is active and held is nothing now, not what the last turn saw.
    this.options.onTurn?.({ states: 0, seconds: 0, memoryBytes: this.model.memoryBytes ? 0 : undefined, rest: true });
  }

  async #turn(): Promise<void> {
    const { model } = this;
    const names = model.stages ?? DEFAULT_STAGES;
    const stages: Record<string, number> = {};
    const timed = async <T>(stage: string, call: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await call();
      } finally {
        stages[stage] = (stages[stage] ?? 0) + (performance.now() - t0) / 1000;
      }
    };
    this.#dropCancelled();
    const newcomers = this.#admit();
    if (newcomers.length > 0) {
      const states = await timed(names.begin, () => model.begin(newcomers.flatMap((m) => m.requests)));
      let at = 0;
      for (const m of newcomers) {
        m.states = states.slice(at, at + m.requests.length);
        at += m.requests.length;
        this.#active.push(m);
      }
      // A newcomer's first output goes out now, not after the turn's step over everyone.
      for (const m of newcomers) await m.options.onBegin?.(m.states);
      this.#dropCancelled();
    }
    if (this.#active.length === 0) return;
    const stepping = [...this.#active];
    const all = stepping.flatMap((m) => m.states);
    const stepped = all.filter((s) => !model.isFinished(s)).length;
    await timed(names.step, () => model.step(all));
    const report = { states: stepped, seconds: stages[names.step]!, memoryBytes: model.memoryBytes?.(), stages };
    try {
      for (const m of stepping) await m.options.onStep?.(m.states);
      const finished = stepping.filter((m) => m.states.every((s) => model.isFinished(s)));
      if (finished.length === 0) return;
      for (const m of finished) this.#active.splice(this.#active.indexOf(m), 1);
      const outputs = await timed(names.finish, () => model.finish(finished.flatMap((m) => m.states)));
      let at = 0;
      for (const m of finished) {
        m.resolve(outputs.slice(at, at + m.states.length));
        at += m.states.length;
      }
    } finally {
      // After the turn, with its finish: the stages add up to the turn's model time, and the counts include what finished.
      this.options.onTurn?.({ ...report, counters: model.counters?.() });
    }
  }

  /** Takes the waiting runs that fit beside the active set, in arrival order, per group. */
  #admit(): Member<Req, State, Out>[] {
    if (this.#waiting.length === 0) return [];
    const limit = this.options.maxBatchSize ?? Infinity;
    const budget = this.options.maxMemoryBytes ?? Infinity;
    const need = (m: Member<Req, State, Out>): number => m.requests.reduce((n, r) => n + (this.model.memoryFor?.(r) ?? 0), 0);
    let memory = this.#active.reduce((n, m) => n + need(m), 0);
    const counts = new Map<string, number>();
    for (const m of this.#active) counts.set(this.#group(m), (counts.get(this.#group(m)) ?? 0) + m.requests.length);
    const admitted: Member<Req, State, Out>[] = [];
    for (const m of [...this.#waiting]) {
      // Arrival order across the memory budget: nothing passes a run that waits for memory.
      if ((this.#active.length > 0 || admitted.length > 0) && memory + need(m) > budget) break;
      const key = this.#group(m);
      const count = counts.get(key) ?? 0;
      // Later runs of a group never pass an earlier one that is still waiting.
      if (count > 0 && count + m.requests.length > limit) {
        counts.set(key, Infinity);
        continue;
      }
      counts.set(key, count + m.requests.length);
      memory += need(m);
      this.#waiting.splice(this.#waiting.indexOf(m), 1);
      admitted.push(m);
    }
    return admitted;
  }

  #group(m: Member<Req, State, Out>): string {
    const first = m.requests[0];
    return first === undefined ? '' : this.model.group(first);
  }

  #dropCancelled(): void {
    for (const list of [this.#waiting, this.#active]) {
      // Backwards: a removal moves only members already looked at.
      for (let i = list.length - 1; i >= 0; i--) {
        const m = list[i]!;
        if (!m.options.signal?.aborted) continue;
        list.splice(i, 1);
        const first = m.states[0];
        const at = first === undefined ? { step: 0, total: m.requests[0] === undefined ? 0 : this.model.length(m.requests[0]) } : this.model.progress(first);
        m.reject(errors.cancelled(`after ${at.step} of ${at.total} steps`));
      }
    }
  }
}
