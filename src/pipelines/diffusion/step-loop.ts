// Continuous (step-level) batching over a diffusion pipeline: one loop keeps an active set of
// images; each turn it admits newcomers (their prompts encoded together), runs one denoising
// step for every active image in shared UNet calls, reports each request's progress, and
// decodes and delivers the requests that finished. A request can join at any step and leaves
// as soon as it is done or cancelled, whatever the others' step counts, schedulers or guidance.
import { isFinished, stepsDone, totalSteps, type DenoiseState, type DiffusionPipeline, type GenerationRequest, type RgbImage } from './diffusion-pipeline.js';

/** A run was cancelled through its signal; `step` of `total` steps had been done. */
export class StepLoopCancelled extends Error {
  constructor(
    readonly step: number,
    readonly total: number,
  ) {
    super(`cancelled after ${step} of ${total} steps`);
  }
}

export interface RunOptions {
  signal?: AbortSignal | undefined;
  /** After each step of this run (all its images stepped once). */
  onStep?: ((states: readonly DenoiseState[]) => void | Promise<void>) | undefined;
}

interface Member {
  readonly requests: readonly GenerationRequest[];
  readonly options: RunOptions;
  states: DenoiseState[];
  resolve(images: RgbImage[]): void;
  reject(err: unknown): void;
}

export interface StepLoopOptions {
  /**
   * The most images of one resolution in the active set (the UNet batch of that resolution,
   * before guidance doubling). A request that would pass it waits for room; one request larger
   * than this on its own still runs, alone at its resolution.
   */
  maxBatchSize?: number | undefined;
  /** Images stepped by each denoise turn. */
  onTurn?(images: number, seconds: number): void;
}

export class StepLoop {
  readonly #waiting: Member[] = [];
  readonly #active: Member[] = [];
  #running: Promise<void> | undefined;

  constructor(
    private readonly pipeline: DiffusionPipeline,
    private readonly options: StepLoopOptions = {},
  ) {}

  /** Generates these images (one request's), sharing every step with whatever else is running. */
  run(requests: readonly GenerationRequest[], options: RunOptions = {}): Promise<RgbImage[]> {
    return new Promise<RgbImage[]>((resolve, reject) => {
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
  }

  async #turn(): Promise<void> {
    this.#dropCancelled();
    const newcomers = this.#admit();
    if (newcomers.length > 0) {
      const states = await this.pipeline.begin(newcomers.flatMap((m) => m.requests));
      let at = 0;
      for (const m of newcomers) {
        m.states = states.slice(at, at + m.requests.length);
        at += m.requests.length;
        this.#active.push(m);
      }
      this.#dropCancelled();
    }
    if (this.#active.length === 0) return;
    const stepping = [...this.#active];
    const all = stepping.flatMap((m) => m.states);
    const stepped = all.filter((s) => !isFinished(s)).length;
    const t0 = performance.now();
    await this.pipeline.denoise(all);
    this.options.onTurn?.(stepped, (performance.now() - t0) / 1000);
    for (const m of stepping) await m.options.onStep?.(m.states);
    const finished = stepping.filter((m) => m.states.every(isFinished));
    if (finished.length === 0) return;
    for (const m of finished) this.#active.splice(this.#active.indexOf(m), 1);
    const images = await this.pipeline.finish(finished.flatMap((m) => m.states));
    let at = 0;
    for (const m of finished) {
      m.resolve(images.slice(at, at + m.states.length));
      at += m.states.length;
    }
  }

  /** Takes the waiting runs that fit beside the active set, in arrival order, per resolution. */
  #admit(): Member[] {
    const limit = this.options.maxBatchSize ?? Infinity;
    const images = new Map<string, number>();
    for (const m of this.#active) images.set(resolution(m), (images.get(resolution(m)) ?? 0) + m.requests.length);
    const admitted: Member[] = [];
    for (const m of [...this.#waiting]) {
      const key = resolution(m);
      const count = images.get(key) ?? 0;
      // Later runs of a resolution never pass an earlier one that is still waiting.
      if (count > 0 && count + m.requests.length > limit) {
        images.set(key, Infinity);
        continue;
      }
      images.set(key, count + m.requests.length);
      this.#waiting.splice(this.#waiting.indexOf(m), 1);
      admitted.push(m);
    }
    return admitted;
  }

  #dropCancelled(): void {
    for (const list of [this.#waiting, this.#active]) {
      for (const m of [...list]) {
        if (!m.options.signal?.aborted) continue;
        list.splice(list.indexOf(m), 1);
        const first = m.states[0];
        m.reject(new StepLoopCancelled(first ? stepsDone(first) : 0, first ? totalSteps(first) : (m.requests[0]?.steps ?? 0)));
      }
    }
  }
}

function resolution(m: Member): string {
  const first = m.requests[0];
  return first ? `${first.width}x${first.height}` : '';
}
