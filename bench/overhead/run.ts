// bench/overhead: what Easel's HTTP path adds over calling ONNX Runtime directly.
// Prints, in one run, requests/s and p50/p99 latency of the no-op add-one model:
//   direct  — a worker process running session.run() in a loop (no HTTP, no queue)
//   floor   — the least server of Easel's shape: a fastify route, one IPC hop to a worker
//             process that runs session.run(), the answer back (floor-server.ts)
//   easel   — POST /predictions/add-one through the real server
// each at concurrency 1 and 16, and the added p50 and p99 per request in microseconds: over
// direct (the figure) and over the floor (what Easel itself adds to HTTP + IPC). With BENCH_BASE=<a built checkout of
// another commit> its server runs too, measured alternately with this one (before/after in one
// run on a noisy machine). Not a test: it asserts nothing.
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import path from 'node:path';
import { FIXTURES, startEasel, waitHealthy, type EaselProcess } from '../../test/helpers/easel-process.js';

const N = Number(process.env.BENCH_REQUESTS ?? 3000);
const FLOOR = 'floor: fastify + IPC + session.run';
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

async function viaHttp(name: string, url: string, concurrency: number): Promise<Row> {
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
  return summarize(name, concurrency, latencies, wall);
}

/** floor-server.ts in its own process (and its worker): resolves with its base URL. */
async function startFloor(): Promise<{ url: string; stop(): void }> {
  const child = fork(new URL('./floor-server.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const url = await new Promise<string>((resolve) => child.once('message', resolve as never));
  return { url, stop: () => child.disconnect() };
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const base = process.env.BENCH_BASE;
const servers: [string, EaselProcess][] = [];
const floor = await startFloor();
try {
  if (base) servers.push([`base (${path.basename(base)})`, await startEasel(['--model-store', FIXTURES, '--models', 'add-one'], {}, { cli: path.join(base, 'bin', 'easel.js') })]);
  servers.push(['this checkout', await startEasel(['--model-store', FIXTURES, '--models', 'add-one'])]);
  for (const [, e] of servers) await waitHealthy(e);
  const ceiling = await direct();
  const rows: Row[] = [];
  // Alternating rounds: each server sees the machine's good and bad moments alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const concurrency of [1, 16]) {
      rows.push(await viaHttp(FLOOR, `${floor.url}/predictions/add-one`, concurrency));
      for (const [name, e] of servers) rows.push(await viaHttp(name, `${e.inference}/predictions/add-one`, concurrency));
    }
  }
  console.log(`\nbench/overhead — add-one (no-op) model, ${N} requests per row, ${ROUNDS} alternating rounds, loopback\n`);
  console.log('path'.padEnd(40), 'conc'.padStart(5), 'req/s'.padStart(9), 'p50 µs'.padStart(9), 'p99 µs'.padStart(9));
  for (const r of [ceiling, ...rows]) console.log(r.name.padEnd(40), String(r.concurrency).padStart(5), r.rps.toFixed(0).padStart(9), (r.p50 * 1000).toFixed(0).padStart(9), (r.p99 * 1000).toFixed(0).padStart(9));
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const at1 = (name: string, q: 'p50' | 'p99'): number => median(rows.filter((r) => r.name === name && r.concurrency === 1).map((r) => r[q]));
  const us = (ms: number): string => (ms * 1000).toFixed(0).padStart(6);
  console.log(`\nadded latency per request at concurrency 1 (median of rounds; the issue's goal: p50 over direct < 300 µs):`);
  for (const name of [FLOOR, ...servers.map(([n]) => n)]) {
    const own = name === FLOOR ? '' : `   over the floor: p50 ${us(at1(name, 'p50') - at1(FLOOR, 'p50'))} µs   p99 ${us(at1(name, 'p99') - at1(FLOOR, 'p99'))} µs`;
    console.log(`  ${name.padEnd(36)} over direct: p50 ${us(at1(name, 'p50') - ceiling.p50)} µs   p99 ${us(at1(name, 'p99') - ceiling.p99)} µs${own}`);
  }
} finally {
  for (const [, e] of servers) await e.stop();
  floor.stop();
}
