// bench/text-generation/peers.ts: an LLM at each precision it ships, against its peers, in one run.
// First the machine's ceiling: raw ONNX Runtime on the same graph (a greedy decode loop, the
// faster of one intra-op thread and one per core). Then llama.cpp through node-llama-cpp (its
// prebuilt CPU binaries) on the GGUF of the same weights, F32 and Q8_0, at 1 and 2 threads. Then
// Easel's engine alone (the text pipeline and the worker's step loop in one process: no HTTP, IPC
// or queue), then Easel's server (streamed /v1/completions). Each at 1 and 16 concurrent streams: tokens/s (all
// streams' generated tokens ÷ the wall time from the first request to the last token), time to
// first token p50, resident memory at the end (the process; Easel: the server and its workers).
// Every figure is one child process per measurement, timed once it is warm (the median of the
// passes of the load in its 3 s after 2 s untimed), rounds interleaved (every other one in
// reverse order), medians; each ratio also paired by round (a peer over the ceiling measured in
// the same round: this VM drifts by tens of percent between rounds). The prompt is
// the same token ids for every peer (the greedy text of random weights is noise; its cost is not).
// Not a test: it asserts nothing.
//   npm run bench:llm-peers -- --model <folder made by tools/model-factory/bench_llama.py> [--rounds 3 --tokens 64 --prompt 32]
//   npm run bench:llm-peers -- --model tiny-llama          (a bundled model: its precisions that exist; no GGUF)
//   BENCH_BASE=<another checkout, built> npm run bench:llm-peers -- ...   (its server too, in the same rounds)
//   npm run bench:llm-peers -- --model <folder> --shared-prefix 1000 [--precisions f32]
//   (instead: 16 chats that share a 1,000-token beginning, at once, through Easel's server with
//   its prefix cache and without (prefixCache.maxBytes 0): TTFT p50/p95 and tokens/s, after one
//   request that primes the cache; the greedy text of each chat compared between the two)
// llama.cpp rows need the bench-only peer packages, installed on first use into bench/peers
// (NODE_LLAMA_CPP_SKIP_DOWNLOAD, no install scripts, no optional GPU packages: nothing is built or
// downloaded but the npm packages).
import { execFileSync, execSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createParser } from 'eventsource-parser';
import { generationRequest, textSteps } from '../../src/handlers/text-generation-handler.js';
import { parseTextGeneration, textGenerationRules } from '../../src/handlers/text-generation-request.js';
import { readModelSpec } from '../../src/models/model-spec.js';
import { TextPipeline } from '../../src/pipelines/text/text-pipeline.js';
import { fromTypedArray, OnnxSession, type Tensor } from '../../src/runtime/onnx-runtime.js';
import { StepLoop } from '../../src/scheduling/step-loop.js';
import { ROOT, serveModel, type EaselProcess } from '../../test/helpers/easel-process.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'tiny-llama' }, precisions: { type: 'string', default: 'f32,q8,q4' }, rounds: { type: 'string', default: '3' },
    tokens: { type: 'string', default: '64' }, prompt: { type: 'string', default: '32' }, streams: { type: 'string', default: '1,16' },
    child: { type: 'string' }, 'shared-prefix': { type: 'string' },
  },
});
const MODEL_DIR = values.model.includes('/') ? path.resolve(values.model) : path.join(ROOT, 'models', values.model);
const TOKENS = Number(values.tokens);
const PROMPT = Array.from({ length: Number(values.prompt) }, (_, i) => 10 + ((i * 37) % 500));
const PEERS = path.join(ROOT, 'bench', 'peers');
const GRAPHS: Record<string, string> = { f32: 'model.onnx', q8: 'model_q8.onnx', q4: 'model_q4.onnx', int8: 'model_int8.onnx' };
const GGUFS: Record<string, string> = { F32: 'model-f32.gguf', Q8_0: 'model-q8_0.gguf' };
/** BENCH_BASE: another checkout, built (`npm run build`), whose server runs beside this one's in the same rounds (as bench/overhead's). */
const BASE = process.env.BENCH_BASE ? path.resolve(process.env.BENCH_BASE) : undefined;

type Config =
  | { kind: 'raw'; precision: string; threads: number; streams: number }
  | { kind: 'llama.cpp'; quant: string; threads: number; streams: number }
  | { kind: 'engine'; precision: string; streams: number }
  | { kind: 'easel'; precision: string; streams: number; base?: boolean }
  | { kind: 'shared'; precision: string; streams: number; prefix: number; cache: boolean };
interface Result { tokensPerSecond: number; ttftMs: number; rssMb: number; ttftP95Ms?: number; texts?: string[] }

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** Each figure's median over rounds. */
const medianResult = (rs: readonly Result[]): Result => ({
  tokensPerSecond: median(rs.map((x) => x.tokensPerSecond)), ttftMs: median(rs.map((x) => x.ttftMs)), rssMb: median(rs.map((x) => x.rssMb)),
  ...(rs[0]?.ttftP95Ms === undefined ? {} : { ttftP95Ms: median(rs.map((x) => x.ttftP95Ms!)) }),
});
const maxRssMb = (): number => process.resourceUsage().maxRSS / 1024;
/**
 * Every peer measured warm, as a server is after its first minutes (its allocations made, its
 * JavaScript compiled for the load's shapes: Easel's engine on tiny-llama, 16 streams, goes from
 * 3.1k tokens/s on its first pass to 4.7k by its fifth): the load runs untimed for WARM_MS (at
 * least once), then timed for TIMED_MS (at least once); the median pass.
 */
const WARM_MS = 2000;
const TIMED_MS = 3000;
const warm = async (pass: () => Promise<Result>): Promise<Result> => {
  const t0 = performance.now();
  do await pass(); while (performance.now() - t0 < WARM_MS);
  const timed: Result[] = [];
  const t1 = performance.now();
  do timed.push(await pass()); while (performance.now() - t1 < TIMED_MS);
  return medianResult(timed);
};

/** Greedy decode with ONNX Runtime alone: one prefill of `streams` prompts, then one call per token, the presents fed back as they come. */
async function rawChild(c: Extract<Config, { kind: 'raw' }>): Promise<Result> {
  const session = await OnnxSession.create(path.join(MODEL_DIR, 'onnx', GRAPHS[c.precision]!), { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: c.threads, interOpThreads: 0 });
  const kv = session.inputs.filter((i) => i.name.startsWith('past_key_values.')).map((i) => i.name);
  const first = session.inputs.find((i) => i.name === kv[0])!;
  const [H, D] = [Number(first.shape[1]), Number(first.shape[3])];
  const S = c.streams;
  const ids = (rows: number[][]): Tensor => fromTypedArray('int64', BigInt64Array.from(rows.flat(), BigInt), [S, rows[0]!.length]);
  const run = async (tokens: number[][], past: Map<string, Tensor>, L: number): Promise<{ next: number[]; past: Map<string, Tensor> }> => {
    const T = tokens[0]!.length;
    const feeds: Record<string, Tensor> = {
      input_ids: ids(tokens),
      attention_mask: fromTypedArray('int64', new BigInt64Array(S * (L + T)).fill(1n), [S, L + T]),
      position_ids: ids(tokens.map(() => Array.from({ length: T }, (_, i) => L + i))),
    };
    for (const [name, t] of past) feeds[name] = t;
    const out = await session.run(feeds);
    const logits = out.logits!.data as Float32Array;
    const V = logits.length / (S * T);
    const next = tokens.map((_, b) => {
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[(b * T + T - 1) * V + v]! > logits[(b * T + T - 1) * V + best]!) best = v;
      return best;
    });
    return { next, past: new Map(kv.map((n) => [n, out[n.replace('past_key_values', 'present')]!])) };
  };
  const empty = new Map(kv.map((n) => [n, fromTypedArray('float32', new Float32Array(0), [S, H, 0, D])]));
  return warm(async () => {
    const t0 = performance.now();
    let step = await run(Array.from({ length: S }, () => PROMPT), empty, 0);
    const ttftMs = performance.now() - t0;
    for (let i = 1; i < TOKENS; i++) step = await run(step.next.map((t) => [t]), step.past, PROMPT.length + i - 1);
    const seconds = (performance.now() - t0) / 1000;
    return { tokensPerSecond: (S * TOKENS) / seconds, ttftMs, rssMb: maxRssMb() };
  });
}

/** The part of node-llama-cpp's API the bench uses. */
interface LlamaSequence { evaluate(tokens: number[], o: { temperature: number }): AsyncIterable<number>; clearHistory(): Promise<void> }
interface LlamaApi {
  getLlama(o: Record<string, unknown>): Promise<{
    loadModel(o: { modelPath: string }): Promise<{ createContext(o: Record<string, number>): Promise<{ getSequence(): LlamaSequence }> }>;
  }>;
}

/** node-llama-cpp from bench/peers, installed on first use without building or downloading anything but its npm packages. */
async function llamaCpp(): Promise<LlamaApi> {
  const entry = path.join(PEERS, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
  if (!existsSync(entry)) {
    execSync('npm install --ignore-scripts --omit=optional --no-audit --no-fund', { cwd: PEERS, stdio: 'inherit', env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' } });
  }
  return (await import(entry)) as LlamaApi;
}

async function llamaChild(c: Extract<Config, { kind: 'llama.cpp' }>): Promise<Result> {
  const { getLlama } = await llamaCpp();
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: path.join(MODEL_DIR, 'gguf', GGUFS[c.quant]!) });
  const context = await model.createContext({ contextSize: c.streams * (PROMPT.length + TOKENS + 16), sequences: c.streams, threads: c.threads, batchSize: Math.max(512, c.streams * PROMPT.length) });
  const sequences = Array.from({ length: c.streams }, () => context.getSequence());
  const generate = async (seq: LlamaSequence, n: number, firstAt?: (ms: number) => void, t0 = 0): Promise<void> => {
    let got = 0;
    for await (const _ of seq.evaluate(PROMPT, { temperature: 0 })) {
      if (got === 0) firstAt?.(performance.now() - t0);
      if (++got >= n) break;
    }
    await seq.clearHistory();
  };
  return warm(async () => {
    const firsts: number[] = [];
    const t0 = performance.now();
    await Promise.all(sequences.map((s) => generate(s, TOKENS, (ms) => firsts.push(ms), t0)));
    const seconds = (performance.now() - t0) / 1000;
    return { tokensPerSecond: (c.streams * TOKENS) / seconds, ttftMs: median(firsts), rssMb: maxRssMb() };
  });
}

/** The model folder with its files hard-linked (nothing copied) and an easel.yaml that picks the precision. */
function servedCopy(precision: string, extra: string[] = []): string {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'easel-peers-')), 'model');
  const link = (from: string, to: string): void => {
    if (statSync(from).isDirectory()) {
      mkdirSync(to, { recursive: true });
      for (const f of readdirSync(from)) link(path.join(from, f), path.join(to, f));
    } else {
      try { linkSync(from, to); } catch { copyFileSync(from, to); }
    }
  };
  mkdirSync(dir);
  for (const f of readdirSync(MODEL_DIR)) if (f !== 'easel.yaml' && f !== 'gguf') link(path.join(MODEL_DIR, f), path.join(dir, f));
  writeFileSync(path.join(dir, 'easel.yaml'), ['name: peers', 'handler: text-generation', 'batching:', '  batchSize: 16', ...(precision === 'f32' ? [] : ['runtime:', `  variant: ${precision}`]), ...extra].join('\n') + '\n');
  return dir;
}

/** Resident memory of a process and its children (kB from ps), in MB. */
function treeRssMb(pid: number): number {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid=,rss=']).toString().trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  const pids = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [p, pp] of out) if (!pids.has(p!) && pids.has(pp!)) { pids.add(p!); grew = true; }
  }
  return out.filter(([p]) => pids.has(p!)).reduce((n, [, , rss]) => n + rss!, 0) / 1024;
}

/**
 * The bench's HTTP client: node:http with keep-alive. It shares this 2-core machine with the
 * server's two processes, so it is the lightest Node client (fetch's undici took ~2x its CPU per
 * streamed token here: ~55 vs ~25 µs at 16 streams).
 */
const agent = new http.Agent({ keepAlive: true });

/** A streamed /v1/completions of token ids, greedy, ignoring EOS: when its first event came (ms after t0) and its text. */
function complete(e: EaselProcess, prompt: number[], t0: number, max: number): Promise<{ first: number; text: string }> {
  const url = new URL('/v1/completions', e.inference);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let first = 0;
      let text = '';
      const parser = createParser({
        onEvent: (ev) => {
          if (first === 0) first = performance.now() - t0;
          if (ev.data !== '[DONE]') text += (JSON.parse(ev.data) as { choices: { text: string }[] }).choices[0]?.text ?? '';
        },
      });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve({ first, text }) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'peers', prompt, max_tokens: max, temperature: 0, ignore_eos: true, stream: true }));
  });
}

/** Easel's server on the model at a precision (`extra`: more easel.yaml lines), for the time of `run`. */
async function served<T>(precision: string, extra: string[], run: (e: EaselProcess) => Promise<T>, base?: string): Promise<T> {
  const dir = servedCopy(precision, extra);
  const e = await serveModel('peers', dir, [], {}, base ? { cli: path.join(base, 'bin', 'easel.js') } : {});
  try {
    return await run(e);
  } finally {
    await e.stop();
    rmSync(path.dirname(dir), { recursive: true, force: true });
  }
}

/** The served copy's pipeline and a step loop in this process, the same requests admitted as the server admits them. */
async function engineChild(c: Extract<Config, { kind: 'engine' }>): Promise<Result> {
  const dir = servedCopy(c.precision);
  try {
    const spec = readModelSpec(dir);
    const rules = textGenerationRules(spec, dir);
    const pipeline = await TextPipeline.load(dir, spec.runtime);
    const loop = new StepLoop(textSteps(pipeline), { maxBatchSize: 16 });
    const generate = async (t0: number, max: number): Promise<number> => {
      let first = 0;
      const note = (): void => {
        if (first === 0) first = performance.now() - t0;
      };
      const params = parseTextGeneration({ prompt_tokens: PROMPT, max_tokens: max, temperature: 0, ignore_eos: true }, rules);
      await loop.run([generationRequest(params)], { onBegin: note, onStep: note });
      return first;
    };
    const result = await warm(async () => {
      const t0 = performance.now();
      const firsts = await Promise.all(Array.from({ length: c.streams }, () => generate(t0, TOKENS)));
      const seconds = (performance.now() - t0) / 1000;
      return { tokensPerSecond: (c.streams * TOKENS) / seconds, ttftMs: median(firsts), rssMb: maxRssMb() };
    });
    await pipeline.release();
    return result;
  } finally {
    rmSync(path.dirname(dir), { recursive: true, force: true });
  }
}

function easelChild(c: Extract<Config, { kind: 'easel' }>): Promise<Result> {
  return served(c.precision, [], (e) =>
    warm(async () => {
      const t0 = performance.now();
      const got = await Promise.all(Array.from({ length: c.streams }, () => complete(e, PROMPT, t0, TOKENS)));
      const seconds = (performance.now() - t0) / 1000;
      return { tokensPerSecond: (c.streams * TOKENS) / seconds, ttftMs: median(got.map((g) => g.first)), rssMb: treeRssMb(e.child.pid!) };
    }),
    c.base ? BASE : undefined,
  );
}

/** 16 chats sharing a `prefix`-token beginning (then 8 tokens of their own), at once, after one that primes the cache. */
function sharedChild(c: Extract<Config, { kind: 'shared' }>): Promise<Result> {
  const common = Array.from({ length: c.prefix }, (_, i) => 10 + ((i * 53) % 700));
  const prompt = (k: number): number[] => [...common, ...Array.from({ length: 8 }, (_, i) => 20 + ((k * 31 + i * 7) % 400))];
  return served(c.precision, c.cache ? [] : ['prefixCache:', '  maxBytes: 0'], async (e) => {
    await complete(e, prompt(999), performance.now(), 2); // primes the cache (and warms the worker)
    const t0 = performance.now();
    const got = await Promise.all(Array.from({ length: c.streams }, (_, k) => complete(e, prompt(k), t0, TOKENS)));
    const seconds = (performance.now() - t0) / 1000;
    const firsts = got.map((g) => g.first).sort((a, b) => a - b);
    return { tokensPerSecond: (c.streams * TOKENS) / seconds, ttftMs: median(firsts), ttftP95Ms: firsts[Math.ceil(0.95 * firsts.length) - 1]!, rssMb: treeRssMb(e.child.pid!), texts: got.map((g) => g.text) };
  });
}

/** The shared-prefix load with and without the prefix cache, interleaved rounds. */
async function sharedPrefix(prefix: number): Promise<void> {
  const precision = values.precisions.split(',')[0]!;
  console.log(`# ${path.basename(MODEL_DIR)} ${precision}: 16 chats at once sharing a ${prefix}-token beginning (+8 tokens each), ${TOKENS} generated each, greedy; after one priming request; ${values.rounds} rounds interleaved, medians`);
  const runs = new Map<boolean, Result[]>([[true, []], [false, []]]);
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const cache of [false, true]) {
      const got = measure({ kind: 'shared', precision, streams: 16, prefix, cache });
      runs.get(cache)!.push(got);
      console.error(`round ${r + 1}: prefix cache ${cache ? 'on' : 'off'}: TTFT p50 ${got.ttftMs.toFixed(0)} ms`);
    }
  }
  const [on, off] = [medianResult(runs.get(true)!), medianResult(runs.get(false)!)];
  console.log('\n| Easel server | TTFT p50 ms | TTFT p95 ms | tokens/s | RSS MB |\n|---|---|---|---|---|');
  for (const [label, x] of [['prefix cache off', off], ['prefix cache on', on]] as const) console.log(`| ${label} | ${x.ttftMs.toFixed(0)} | ${x.ttftP95Ms!.toFixed(0)} | ${x.tokensPerSecond.toFixed(1)} | ${x.rssMb.toFixed(0)} |`);
  const same = runs.get(true)!.every((a) => runs.get(false)!.every((b) => JSON.stringify(a.texts) === JSON.stringify(b.texts)));
  console.log(`\nTTFT p50 without ÷ with the cache: ${(off.ttftMs / on.ttftMs).toFixed(1)}×; greedy text of all 16 chats identical with and without: ${same ? 'yes' : 'NO'}`);
}

function measure(c: Config): Result {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'text-generation', 'peers.ts'), '--model', MODEL_DIR, '--tokens', String(TOKENS), '--prompt', String(PROMPT.length), '--child', JSON.stringify(c)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 }).toString();
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`no result from ${JSON.stringify(c)}: ${out.slice(-500)}`);
  return JSON.parse(line.slice(7)) as Result;
}

async function main(): Promise<void> {
  if (values.child) {
    const c = JSON.parse(values.child) as Config;
    const children = { raw: rawChild, 'llama.cpp': llamaChild, engine: engineChild, easel: easelChild, shared: sharedChild } as const;
    const r = await (children[c.kind] as (c: Config) => Promise<Result>)(c);
    console.log(`RESULT ${JSON.stringify(r)}`);
    process.exit(0);
  }
  if (values['shared-prefix']) return sharedPrefix(Number(values['shared-prefix']));
  const precisions = values.precisions.split(',').filter((p) => GRAPHS[p] && existsSync(path.join(MODEL_DIR, 'onnx', GRAPHS[p]!)));
  const quants = Object.keys(GGUFS).filter((q) => existsSync(path.join(MODEL_DIR, 'gguf', GGUFS[q]!)));
  const streams = values.streams.split(',').map(Number);
  const configs: Config[] = [];
  for (const s of streams) {
    for (const p of precisions) for (const threads of [1, 0]) configs.push({ kind: 'raw', precision: p, threads, streams: s });
    for (const q of quants) for (const threads of [1, 2]) configs.push({ kind: 'llama.cpp', quant: q, threads, streams: s });
    for (const p of precisions) configs.push({ kind: 'engine', precision: p, streams: s }, { kind: 'easel', precision: p, streams: s });
    if (BASE) for (const p of precisions) configs.push({ kind: 'easel', precision: p, streams: s, base: true });
  }
  const graphMb = (p: string): number => statSync(path.join(MODEL_DIR, 'onnx', GRAPHS[p]!)).size / 1e6;
  console.log(`# ${path.basename(MODEL_DIR)}: ${precisions.map((p) => `${p} ${graphMb(p).toFixed(0)} MB`).join(', ')}; prompt ${PROMPT.length} tokens, ${TOKENS} generated per stream, greedy; ${values.rounds} rounds interleaved, medians`);
  const results = new Map<string, Result[]>();
  const key = (c: Config): string => JSON.stringify(c);
  for (let r = 0; r < Number(values.rounds); r++) {
    // Every other round in reverse order: this VM's speed drifts by tens of percent within a
    // minute, and a fixed order would hand one peer the same part of each drift every round.
    for (const c of r % 2 === 0 ? configs : [...configs].reverse()) {
      const got = measure(c);
      results.set(key(c), [...(results.get(key(c)) ?? []), got]);
      console.error(`round ${r + 1}: ${key(c)} ${got.tokensPerSecond.toFixed(1)} tokens/s`);
    }
  }
  const med = (c: Config): Result => medianResult(results.get(key(c))!);
  const fmt = (r: Result): string => `${r.tokensPerSecond.toFixed(1)} | ${r.ttftMs.toFixed(0)} | ${r.rssMb.toFixed(0)}`;
  console.log(`\n| peer | ${streams.map((s) => `${s} stream${s > 1 ? 's' : ''}: tokens/s | TTFT p50 ms | RSS MB`).join(' | ')} |`);
  console.log(`|---|${streams.map(() => '---|---|---').join('|')}|`);
  const row = (label: string, of: (s: number) => Result): void => console.log(`| ${label} | ${streams.map((s) => fmt(of(s))).join(' | ')} |`);
  const best = (p: string, s: number): Result => [1, 0].map((threads) => med({ kind: 'raw', precision: p, threads, streams: s })).sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)[0]!;
  for (const p of precisions) {
    for (const threads of [1, 0]) row(`raw ONNX Runtime ${p}, ${threads === 1 ? '1 thread' : 'a thread per core'}`, (s) => med({ kind: 'raw', precision: p, threads, streams: s }));
  }
  for (const q of quants) for (const threads of [1, 2]) row(`llama.cpp ${q}, ${threads} thread${threads > 1 ? 's' : ''}`, (s) => med({ kind: 'llama.cpp', quant: q, threads, streams: s }));
  for (const p of precisions) row(`Easel engine alone ${p}`, (s) => med({ kind: 'engine', precision: p, streams: s }));
  for (const p of precisions) row(`Easel server ${p}`, (s) => med({ kind: 'easel', precision: p, streams: s }));
  if (BASE) for (const p of precisions) row(`Easel server ${p}, base (${path.basename(BASE)})`, (s) => med({ kind: 'easel', precision: p, streams: s, base: true }));
  /**
   * A peer's tokens/s over a reference's in each round (the faster of the reference's settings in
   * that round): the two were measured minutes apart, not rounds apart, so the drift between
   * rounds cancels. Their median, and each round's.
   */
  const paired = (of: Config, reference: Config[]): string => {
    const ratios = results.get(key(of))!.map((r, i) => r.tokensPerSecond / Math.max(...reference.map((c) => results.get(key(c))![i]!.tokensPerSecond)));
    return `${median(ratios).toFixed(2)} (rounds: ${ratios.map((x) => x.toFixed(2)).join(', ')})`;
  };
  console.log('\nRatios (tokens/s), of the medians and paired by round:');
  for (const p of precisions) {
    for (const s of streams) {
      const server: Config = { kind: 'easel', precision: p, streams: s };
      const engine: Config = { kind: 'engine', precision: p, streams: s };
      const raw = [1, 0].map((threads): Config => ({ kind: 'raw', precision: p, threads, streams: s }));
      const [easelTps, engineTps] = [med(server).tokensPerSecond, med(engine).tokensPerSecond];
      const parts = [
        `Easel ÷ raw ONNX Runtime (best threads) ${(easelTps / best(p, s).tokensPerSecond).toFixed(2)} (engine alone ${(engineTps / best(p, s).tokensPerSecond).toFixed(2)}; server ÷ engine ${(easelTps / engineTps).toFixed(2)})`,
        `paired by round: Easel ÷ raw ${paired(server, raw)}, engine alone ÷ raw ${paired(engine, raw)}`,
      ];
      if (quants.includes('Q8_0')) {
        const q8 = [1, 2].map((threads): Config => ({ kind: 'llama.cpp', quant: 'Q8_0', threads, streams: s }));
        parts.push(`Easel ÷ llama.cpp Q8_0 (best threads) ${(easelTps / Math.max(...q8.map((c) => med(c).tokensPerSecond))).toFixed(2)}, paired by round ${paired(server, q8)}`);
      }
      console.log(`- ${p}, ${s} stream${s > 1 ? 's' : ''}: ${parts.join('; ')}`);
    }
  }
}

await main();
