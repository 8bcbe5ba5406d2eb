// bench/overhead: what Easel's HTTP path adds over calling ONNX Runtime directly.
// Prints, in one run, requests/s and p50/p99 latency of the no-op add-one model:
//   direct  — a worker process running session.run() in a loop (no HTTP, no queue)
//   easel   — POST /predictions/add-one through the real server, at concurrency 1 and 16
// and the added p50 per request in microseconds. Not a test: it asserts nothing.
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { FIXTURES, startEasel, waitHealthy } from '../../test/helpers/easel-process.js';

const N = Number(process.env.BENCH_REQUESTS ?? 3000);
const WARMUP = 300;

interface Row { name: string; concurrency: number; rps: number; p50: number; p99: number }

function summarize(name: string, concurrency: number, latenciesMs: number[], wallMs: number): Row {
  const s = [...latenciesMs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { name, concurrency, rps: (latenciesMs.length / wallMs) * 1000, p50: q(0.5), p99: q(0.99) };
}

async function direct(): Promise<Row> {
  // The same session.run() in its own process, timed there, as a worker would run it.
  const child = fork(new URL('./direct-worker.ts', import.meta.url), [String(N), String(WARMUP)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { latencies, wallMs } = await new Promise<{ latencies: number[]; wallMs: number }>((resolve) => child.once('message', resolve as never));
  child.kill();
  return summarize('direct session.run (worker process)', 1, latencies, wallMs);
}

async function viaHttp(url: string, concurrency: number): Promise<Row> {
  const agent = new Agent({ connections: concurrency, pipelining: 1 });
  const body = JSON.stringify({ data: [1, 2, 3, 4] });
  const one = async (): Promise<number> => {
    const t0 = performance.now();
    const res = await request(url, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher: agent });
    await res.body.arrayBuffer();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    return performance.now() - t0;
  };
  for (let i = 0; i < WARMUP; i++) await one();
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < N) latencies.push(await one());
  }));
  const wall = performance.now() - t0;
  await agent.close();
  return summarize('easel HTTP /predictions', concurrency, latencies, wall);
}

const easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one']);
try {
  await waitHealthy(easel);
  const url = `${easel.inference}/predictions/add-one`;
  const rows = [await direct(), await viaHttp(url, 1), await viaHttp(url, 16)];
  console.log(`\nbench/overhead — add-one (no-op) model, ${N} requests each, loopback\n`);
  console.log('path'.padEnd(40), 'conc'.padStart(5), 'req/s'.padStart(9), 'p50 µs'.padStart(9), 'p99 µs'.padStart(9));
  for (const r of rows) console.log(r.name.padEnd(40), String(r.concurrency).padStart(5), r.rps.toFixed(0).padStart(9), (r.p50 * 1000).toFixed(0).padStart(9), (r.p99 * 1000).toFixed(0).padStart(9));
  const added = (rows[1]!.p50 - rows[0]!.p50) * 1000;
  console.log(`\nadded p50 latency at concurrency 1: ${added.toFixed(0)} µs per request (target < 500 µs)`);
} finally {
  await easel.stop();
}
