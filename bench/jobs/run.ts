// bench/jobs: the job path against the direct one, with the no-op add-one model, in one run:
//   latency  — p50/p99 of a sequential POST /predictions vs submit → job finished → output fetched
//   jobs/s   — jobs submitted by 32 concurrent clients until all have succeeded
//   memory   — the server's resident memory with 10,000 jobs queued (workers scaled to 0)
// for each backend: embedded (SQLite) and redis (BullMQ, a redis-server started here).
// Not a test: it asserts nothing.  npm run bench:jobs [-- --jobs 3000 --queued 10000]
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { FIXTURES, startEasel, waitFor, waitHealthy, type EaselProcess } from '../../test/helpers/easel-process.js';
import { startRedis } from '../../test/helpers/redis-server.js';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '3000' }, queued: { type: 'string', default: '10000' }, sequential: { type: 'string', default: '300' } } });
const JOBS = Number(values.jobs);
const QUEUED = Number(values.queued);
const SEQUENTIAL = Number(values.sequential);
const INPUT = { data: [1, 2, 3] };

const quantile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** Submits a job and waits for its final status over SSE, then fetches its output. */
async function jobRoundTrip(e: EaselProcess): Promise<void> {
  const job = (await (await post(`${e.inference}/v1/jobs`, { model: 'add-one', input: INPUT })).json()) as { id: string };
  const events = await fetch(`${e.inference}/v1/jobs/${job.id}/events`);
  await events.text(); // the stream ends at the final status
  const out = await fetch(`${e.inference}/v1/jobs/${job.id}/outputs/0`);
  if (!out.ok) throw new Error(`job ${job.id} has no output: ${out.status}`);
  await out.arrayBuffer();
}

async function metric(e: EaselProcess, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${e.metrics}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

async function pool(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) await task(next++);
  }));
}

interface Figures {
  direct: number[];
  viaJob: number[];
  jobsPerSecond: number;
  submitPerSecond: number;
  queued: number;
  rssBefore: number;
  rssAfter: number;
}

async function measure(extraArgs: string[]): Promise<Figures> {
  const easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one', '--log-level', 'info', '--max-queued-jobs', String(Math.max(QUEUED, JOBS) + 1), ...extraArgs]);
  try {
    await waitHealthy(easel);
    for (let i = 0; i < 50; i += 1) {
      await (await post(`${easel.inference}/predictions/add-one`, INPUT)).arrayBuffer();
      await jobRoundTrip(easel);
    }
    const direct: number[] = [];
    const viaJob: number[] = [];
    for (let i = 0; i < SEQUENTIAL; i += 1) {
      let t0 = performance.now();
      await (await post(`${easel.inference}/predictions/add-one`, INPUT)).arrayBuffer();
      direct.push(performance.now() - t0);
      t0 = performance.now();
      await jobRoundTrip(easel);
      viaJob.push(performance.now() - t0);
    }

    const succeeded = /easel_jobs_total\{model="add-one",status="succeeded"\} (\d+)/;
    const before = await metric(easel, succeeded);
    const t0 = performance.now();
    await pool(JOBS, 32, async () => {
      const res = await post(`${easel.inference}/v1/jobs`, { model: 'add-one', input: INPUT });
      if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
      await res.arrayBuffer();
    });
    const submitted = performance.now();
    await waitFor(async () => (await metric(easel, succeeded)) - before >= JOBS, 600_000, 'all jobs to finish');
    const done = performance.now();

    // Memory with a deep queue: no workers, so nothing is taken.
    const scaled = await fetch(`${easel.management}/models/add-one?min_worker=0&synchronous=true`, { method: 'PUT' });
    if (!scaled.ok) throw new Error(`scaling to 0 answered ${scaled.status}`);
    const rssBefore = await metric(easel, /easel_process_resident_memory_bytes (\d+)/);
    await pool(QUEUED, 32, async () => {
      const res = await post(`${easel.inference}/v1/jobs`, { model: 'add-one', input: INPUT });
      if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
      await res.arrayBuffer();
    });
    return {
      direct,
      viaJob,
      jobsPerSecond: JOBS / ((done - t0) / 1000),
      submitPerSecond: JOBS / ((submitted - t0) / 1000),
      queued: await metric(easel, /easel_jobs_queued\{model="add-one"\} (\d+)/),
      rssBefore,
      rssAfter: await metric(easel, /easel_process_resident_memory_bytes (\d+)/),
    };
  } finally {
    await easel.stop();
  }
}

const redis = await startRedis();
let rows: [string, Figures][];
try {
  rows = [
    ['embedded (SQLite)', await measure([])],
    ['redis (BullMQ)', await measure(['--queue', redis.url])],
  ];
} finally {
  await redis.stop();
}

const ms = (x: number): string => x.toFixed(2).padStart(9);
console.log(`add-one (no-op model), ${SEQUENTIAL} sequential requests for latency, ${JOBS} jobs from 32 clients for throughput, ${QUEUED} queued for memory`);
console.log('backend             direct p50  job p50   added p50  job p99   jobs/s  submit/s  queued  RSS before → after (MiB)');
for (const [name, f] of rows) {
  const added = quantile(f.viaJob, 0.5) - quantile(f.direct, 0.5);
  console.log(
    `${name.padEnd(18)} ${ms(quantile(f.direct, 0.5))} ${ms(quantile(f.viaJob, 0.5))} ${ms(added)} ${ms(quantile(f.viaJob, 0.99))} ${f.jobsPerSecond.toFixed(0).padStart(7)} ${f.submitPerSecond.toFixed(0).padStart(9)} ${String(f.queued).padStart(7)}  ${(f.rssBefore / 2 ** 20).toFixed(1)} → ${(f.rssAfter / 2 ** 20).toFixed(1)}`,
  );
}
console.log('latencies in ms; "job" = submit, follow the SSE stream to the final status, fetch the output');
