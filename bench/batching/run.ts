// bench/batching: an open-loop load generator (Poisson arrivals) against the real server with
// tiny-sd, for each batching mode in one run: `none`, `request` (the usual diffusion batcher:
// 4 requests, 0.5 s, same resolution and step count only) and `step` (continuous, up to 8
// images per resolution in one UNet call).
// Workload: steps drawn from {4, 8, 20, 50}, resolution from {64, 128}. Rates from light to
// beyond saturation, as multiples of the measured one-at-a-time capacity; at each rate every
// mode in turn. Prints images/s, p50/p95/p99 latency, mean images per UNet turn, the share of
// the time the UNet was busy and its time per image-step.
// First it measures what batching can win on this machine at all: the UNet's time per image at
// batch 1 and at batch 8, for the workload's resolutions (on a compute-bound CPU a batch of 8
// costs nearly 8 single calls; on a GPU nearly one). Not a test: it asserts nothing.
//   npm run bench:batching [-- --requests 40 --rates 0.5,1,2,4 --modes none,request,step]
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DiffusionPipeline } from '../../src/pipelines/diffusion/diffusion-pipeline.js';
import { ROOT, serveModel, type EaselProcess } from '../../test/helpers/easel-process.js';
import { seededRandom } from '../../test/helpers/seeded-random.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '40' },
    rates: { type: 'string', default: '0.5,1,2,4' },
    modes: { type: 'string', default: 'none,request,step' },
    seed: { type: 'string', default: '7' },
  },
});
const REQUESTS = Number(values.requests);
const RATES = values.rates.split(',').map(Number);
const SIZES = [64, 128];
const STEPS = [4, 8, 20, 50];
const ALL_MODES: Record<string, string> = {
  none: 'batching:\n  mode: none\n',
  request: 'batching:\n  mode: request\n  batchSize: 4\n  maxBatchDelayMs: 500\n',
  step: 'batching:\n  mode: step\n  batchSize: 8\n',
};
const MODES = values.modes.split(',').map((m) => {
  const yaml = ALL_MODES[m];
  if (!yaml) throw new Error(`unknown mode ${m}: none, request or step`);
  return [m, yaml] as const;
});

interface Planned {
  at: number;
  body: Record<string, unknown>;
}

function plan(rate: number, seed: number): Planned[] {
  // Seeded: every mode sees the same arrivals and requests.
  const rnd = seededRandom(seed);
  let t = 0;
  return Array.from({ length: REQUESTS }, (_, i) => {
    t += -Math.log(1 - rnd()) / rate;
    const size = SIZES[Math.floor(rnd() * SIZES.length)]!;
    const steps = STEPS[Math.floor(rnd() * STEPS.length)]!;
    return { at: t * 1000, body: { prompt: 'a red circle on a blue background', seed: i, num_inference_steps: steps, width: size, height: size } };
  });
}

async function stepStats(e: EaselProcess): Promise<{ count: number; sum: number; seconds: number }> {
  const text = await (await fetch(`${e.metrics}/metrics`)).text();
  const read = (name: string): number => Number(new RegExp(`${name}\\{model="tiny-sd"\\} ([0-9.e+-]+)`).exec(text)?.[1] ?? 0);
  return { count: read('easel_step_batch_size_count'), sum: read('easel_step_batch_size_sum'), seconds: read('easel_step_duration_seconds_sum') };
}

/**
 * What batching can win here at most: the workload's mean UNet time per image-step one at a
 * time over the same at batch 8 (guidance on, so 2 and 16 UNet rows), in this process.
 */
async function batchingCeiling(): Promise<{ perImage: Map<number, [number, number]>; ceiling: number }> {
  const pipeline = await DiffusionPipeline.load(path.join(ROOT, 'models', 'tiny-sd'), { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 0, interOpThreads: 0 });
  const perImage = new Map<number, [number, number]>();
  try {
    const timeStep = async (size: number, batch: number): Promise<number> => {
      const requests = Array.from({ length: batch }, (_, i) => ({ prompt: 'a red circle on a blue background', negativePrompt: '', steps: 1000, guidanceScale: 7.5, width: size, height: size, seed: i, scheduler: 'ddim' as const }));
      const states = await pipeline.begin(requests);
      for (let i = 0; i < 3; i += 1) await pipeline.denoise(states);
      const t = performance.now();
      for (let i = 0; i < 10; i += 1) await pipeline.denoise(states);
      return (performance.now() - t) / 10 / batch;
    };
    for (const size of SIZES) perImage.set(size, [await timeStep(size, 1), await timeStep(size, 8)]);
  } finally {
    await pipeline.release();
  }
  // Weighted by the image-steps this run's requests spend at each size.
  const weight = new Map<number, number>();
  for (const p of plan(1, Number(values.seed))) weight.set(p.body.width as number, (weight.get(p.body.width as number) ?? 0) + (p.body.num_inference_steps as number));
  const sum = (pick: (times: [number, number]) => number): number => [...perImage].reduce((a, [size, times]) => a + (weight.get(size) ?? 0) * pick(times), 0);
  return { perImage, ceiling: sum(([one]) => one) / sum(([, eight]) => eight) };
}

interface Row {
  mode: string;
  rate: number;
  imagesPerSecond: number;
  p50: number;
  p95: number;
  p99: number;
  perTurn: number;
  unetBusy: number;
  msPerImageStep: number;
}

async function load(e: EaselProcess, mode: string, rate: number): Promise<Row> {
  const schedule = plan(rate, Number(values.seed));
  const before = await stepStats(e);
  const latencies: number[] = [];
  const t0 = performance.now();
  let lastDone = t0;
  await Promise.all(
    schedule.map(async (p) => {
      const wait = t0 + p.at - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const start = performance.now();
      const res = await fetch(`${e.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(p.body) });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`request answered ${res.status}`);
      const end = performance.now();
      latencies.push((end - start) / 1000);
      lastDone = Math.max(lastDone, end);
    }),
  );
  const after = await stepStats(e);
  const sorted = [...latencies].sort((a, b) => a - b);
  const q = (x: number): number => sorted[Math.min(sorted.length - 1, Math.floor(x * sorted.length))]!;
  const wall = (lastDone - t0) / 1000;
  return {
    mode,
    rate,
    imagesPerSecond: REQUESTS / wall,
    p50: q(0.5),
    p95: q(0.95),
    p99: q(0.99),
    perTurn: (after.sum - before.sum) / Math.max(1, after.count - before.count),
    unetBusy: (after.seconds - before.seconds) / wall,
    msPerImageStep: ((after.seconds - before.seconds) * 1000) / Math.max(1, after.sum - before.sum),
  };
}

const { perImage, ceiling } = await batchingCeiling();
const work = mkdtempSync(path.join(tmpdir(), 'easel-bench-batching-'));
const rows: Row[] = [];
let capacity: number | undefined;
const servers: [string, EaselProcess][] = [];
try {
  // All modes' servers up at once, then each rate offered to each mode in turn: a shared,
  // noisy machine then slows the modes of one rate alike.
  for (const [mode, yaml] of MODES) {
    const dir = path.join(work, mode);
    cpSync(path.join(ROOT, 'models', 'tiny-sd'), dir, { recursive: true });
    appendFileSync(path.join(dir, 'easel.yaml'), `\n${yaml}`);
    servers.push([mode, await serveModel('tiny-sd', dir, ['--max-queue-length', '1000'])]);
  }
  // The capacity of one-at-a-time serving: mean seconds per request of this workload.
  const [, first] = servers[0]!;
  const sample = plan(1, Number(values.seed) + 1).slice(0, 8);
  const t = performance.now();
  for (const p of sample) await (await fetch(`${first.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(p.body) })).arrayBuffer();
  capacity = sample.length / ((performance.now() - t) / 1000);
  for (const r of RATES) for (const [mode, e] of servers) rows.push(await load(e, mode, r * capacity));
} finally {
  await Promise.all(servers.map(([, e]) => e.stop()));
  rmSync(work, { recursive: true, force: true });
}
rows.sort((a, b) => MODES.findIndex(([m]) => m === a.mode) - MODES.findIndex(([m]) => m === b.mode) || a.rate - b.rate);

console.log('UNet time per image-step (guidance on), this machine:');
for (const [size, [one, eight]] of perImage) console.log(`  ${size}x${size}: ${one.toFixed(2)} ms alone, ${eight.toFixed(2)} ms in a batch of 8 (${(one / eight).toFixed(2)}x)`);
console.log(`  => batching can raise this workload's throughput at most about ${ceiling.toFixed(2)}x over one at a time (weighted by its image-steps per size)`);
console.log(`tiny-sd, ${REQUESTS} Poisson arrivals per rate, steps {${STEPS.join(',')}} × {${SIZES.map((s) => `${s}²`).join(', ')}}; one-at-a-time capacity ${capacity?.toFixed(2)} img/s`);
console.log('mode      offered img/s  served img/s   p50 s   p95 s   p99 s  images/UNet turn  UNet busy  UNet ms/image-step');
for (const r of rows) {
  console.log(`${r.mode.padEnd(9)} ${r.rate.toFixed(2).padStart(13)} ${r.imagesPerSecond.toFixed(2).padStart(13)} ${r.p50.toFixed(2).padStart(7)} ${r.p95.toFixed(2).padStart(7)} ${r.p99.toFixed(2).padStart(7)} ${r.perTurn.toFixed(2).padStart(17)} ${`${(r.unetBusy * 100).toFixed(0)}%`.padStart(10)} ${r.msPerImageStep.toFixed(2).padStart(19)}`);
}
