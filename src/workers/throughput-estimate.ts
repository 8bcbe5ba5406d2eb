// Measured seconds per job, per model: an exponentially weighted mean of finished jobs' run
// times, behind the `estimated_seconds` of a queued job.
export class ThroughputEstimate {
  readonly #mean = new Map<string, number>();

  constructor(private readonly weight = 0.2) {}

  record(model: string, seconds: number): void {
    const previous = this.#mean.get(model);
    this.#mean.set(model, previous === undefined ? seconds : previous + this.weight * (seconds - previous));
  }

  secondsPerJob(model: string): number | undefined {
    return this.#mean.get(model);
  }
}
