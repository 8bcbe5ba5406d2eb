// bench/jobs: the job path against the direct one, with the no-op add-one model, in one run:
//   latency  — p50/p99 of a sequential POST /predictions vs submit → job finished → output fetched
//   jobs/s   — jobs submitted by 32 concurrent clients until all have succeeded (embedded backend)
//   memory   — the server's resident memory with 10,000 jobs queued (workers scaled to 0)
// Not a test: it asserts nothing.  npm run bench:jobs [-- --jobs 3000 --queued 10000]
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { FIXTURES, startEasel, waitFor, waitHealthy, type EaselProcess } from '../../test/helpers/easel-process.js';

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

const easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one', '--log-level', 'info', '--max-queued-jobs', String(Math.max(QUEUED, JOBS) + 1)]);
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

  const before = await metric(easel, /easel_jobs_total\{model="add-one",status="succeeded"\} (\d+)/);
  const t0 = performance.now();
  await pool(JOBS, 32, async () => {
    const res = await post(`${easel.inference}/v1/jobs`, { model: 'add-one', input: INPUT });
    if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
    await res.arrayBuffer();
  });
  const submitted = performance.now();
  await waitFor(async () => (await metric(easel, /easel_jobs_total\{model="add-one",status="succeeded"\} (\d+)/)) - before >= JOBS, 600_000, 'all jobs to finish');
  const done = performance.now();

  // Memory with a deep queue: no workers, so nothing is taken.
  const scaled = await fetch(`${easel.management}/models/add-one?min_worker=0&synchronous=true`, { method: 'PUT' });
  if (!scaled.ok) throw new Error(`scaling to 0 answered ${scaled.status}`);
  const rssBefore = await metric(easel, /easel_process_resident_memory_bytes (\d+)/);
  const q0 = performance.now();
  await pool(QUEUED, 32, async () => {
    const res = await post(`${easel.inference}/v1/jobs`, { model: 'add-one', input: INPUT });
    if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
    await res.arrayBuffer();
  });
  const queueSeconds = (performance.now() - q0) / 1000;
  const queued = await metric(easel, /easel_jobs_queued\{model="add-one"\} (\d+)/);
  const rssAfter = await metric(easel, /easel_process_resident_memory_bytes (\d+)/);

  const ms = (x: number): string => x.toFixed(2).padStart(8);
  console.log(`add-one (no-op), embedded backend (SQLite), 2-core VM`);
  console.log(`latency, ${SEQUENTIAL} sequential requests      p50 ms   p99 ms`);
  console.log(`  POST /predictions (direct)          ${ms(quantile(direct, 0.5))} ${ms(quantile(direct, 0.99))}`);
  console.log(`  job: submit → SSE final → output    ${ms(quantile(viaJob, 0.5))} ${ms(quantile(viaJob, 0.99))}`);
  console.log(`  added by the queue path (p50)       ${ms(quantile(viaJob, 0.5) - quantile(direct, 0.5))}`);
  console.log(`throughput: ${JOBS} jobs from 32 clients: ${(JOBS / ((done - t0) / 1000)).toFixed(0)} jobs/s to completion (submission alone ${(JOBS / ((submitted - t0) / 1000)).toFixed(0)} jobs/s)`);
  console.log(`memory: ${queued} jobs queued (submitted at ${(QUEUED / queueSeconds).toFixed(0)} jobs/s): RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB → ${(rssAfter / 2 ** 20).toFixed(1)} MiB (+${((rssAfter - rssBefore) / 2 ** 20).toFixed(1)} MiB)`);
} finally {
  await easel.stop();
}
