// bench/text-generation: a demo LM (tiny-lm, or --model tiny-llama) through the real server against ONNX Runtime called directly,
// in one run. First the machine's ceiling: the decoder's time per decode step for 1 sequence and
// for 16 sequences in one batch (tokens/s = sequences / step time), with nothing else, with one
// ONNX Runtime thread or one per core, whichever is faster. Then
// Easel with 1, 4 and 16 concurrent streams (POST /v1/completions, stream: true), continuous
// batching (step mode, the default) against one sequence at a time (mode none): aggregate
// tokens/s, time to first token p50/p95, inter-token gap p50/p95, and Easel as a fraction of the
// ceiling; and first the same load on the engine alone (pipeline and step loop in this process, no
// HTTP). Not a test: it asserts nothing.
//   npm run bench:text-generation [-- --model tiny-llama --requests 6 --tokens 64]
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createParser } from 'eventsource-parser';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { generationRequest, textSteps } from '../../src/handlers/text-generation-handler.js';
import { parseTextGeneration, textGenerationRules } from '../../src/handlers/text-generation-request.js';
import { readModelSpec } from '../../src/models/model-spec.js';
import { TextPipeline } from '../../src/pipelines/text/text-pipeline.js';
import { fromTypedArray, OnnxSession, tensorToFloat32, type Tensor } from '../../src/runtime/onnx-runtime.js';
import { StepLoop } from '../../src/scheduling/step-loop.js';
import { ROOT, serveModel, type EaselProcess } from '../../test/helpers/easel-process.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'tiny-lm' }, requests: { type: 'string', default: '6' }, tokens: { type: 'string', default: '64' } } });
const MODEL = values.model;
const REQUESTS = Number(values.requests);
const TOKENS = Number(values.tokens);
const MODEL_DIR = path.join(ROOT, 'models', MODEL);
const PROMPTS = ['Once upon a time, there was a little girl named Lily.', 'Tom had a red ball.', 'One day, Ben went to the park with his mom.', 'The cat', 'Mia liked to play'];

/** ms per decode step of `batch` sequences whose caches hold `past` positions, ONNX Runtime alone. */
async function rawStepWith(threads: number, batch: number, past: number, steps: number): Promise<number> {
  const session = await OnnxSession.create(path.join(MODEL_DIR, 'onnx', 'model.onnx'), { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: threads, interOpThreads: 0 });
  const kv = session.inputs.filter((i) => i.name.startsWith('past_key_values.'));
  const [H, D] = [Number(kv[0]!.shape[1]), Number(kv[0]!.shape[3])];
  let L = past;
  let caches: Map<string, Float32Array> = new Map(kv.map((i) => [i.name, new Float32Array(batch * H * L * D).fill(0.01)]));
  let total = 0;
  for (let s = 0; s < steps + 3; s++) {
    const feeds: Record<string, Tensor> = {
      input_ids: fromTypedArray('int64', new BigInt64Array(batch).fill(5n), [batch, 1]),
      attention_mask: fromTypedArray('int64', new BigInt64Array(batch * (L + 1)).fill(1n), [batch, L + 1]),
      position_ids: fromTypedArray('int64', new BigInt64Array(batch).fill(BigInt(L)), [batch, 1]),
    };
    for (const [name, data] of caches) feeds[name] = fromTypedArray('float32', data, [batch, H, L, D]);
    const t0 = performance.now();
    const out = await session.run(feeds);
    if (s >= 3) total += performance.now() - t0;
    caches = new Map(kv.map((i) => [i.name, tensorToFloat32(out[i.name.replace('past_key_values', 'present')]!)]));
    L += 1;
  }
  await session.release();
  return total / steps;
}

/** The faster of one ONNX Runtime thread and one per core: the machine's ceiling whichever wins. */
async function rawStep(batch: number, past: number, steps: number): Promise<number> {
  return Math.min(await rawStepWith(0, batch, past, steps), await rawStepWith(1, batch, past, steps));
}

interface Result { tokensPerSecond: number; ttft: number[]; gaps: number[] }

/**
 * `clients` concurrent streams, each running REQUESTS requests of TOKENS tokens one after another:
 * `request(prompt, seed, arrived)` runs one, calls `arrived()` as each piece of text comes, and
 * resolves to the tokens it generated.
 */
async function closedLoop(clients: number, request: (prompt: string, seed: number, arrived: () => void) => Promise<number>): Promise<Result> {
  const ttft: number[] = [];
  const gaps: number[] = [];
  let tokens = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let r = 0; r < REQUESTS; r++) {
        const start = performance.now();
        let last: number | undefined;
        const generated = await request(PROMPTS[(c + r) % PROMPTS.length]!, c * 100 + r, () => {
          const now = performance.now();
          if (last === undefined) ttft.push(now - start);
          else gaps.push(now - last);
          last = now;
        });
        // Added after the await: `tokens += await …` would add to the count read before it.
        tokens += generated;
      }
    }),
  );
  return { tokensPerSecond: (tokens / (performance.now() - t0)) * 1000, ttft, gaps };
}

/** The server: POST /v1/completions with stream: true. */
function load(e: EaselProcess, clients: number): Promise<Result> {
  return closedLoop(clients, async (prompt, seed, arrived) => {
    const res = await fetch(`${e.inference}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt, max_tokens: TOKENS, temperature: 0.8, seed, stream: true, stream_options: { include_usage: true } }),
    });
    let tokens = 0;
    const parser = createParser({
      onEvent: (ev) => {
        if (ev.data === '[DONE]') return;
        const chunk = JSON.parse(ev.data) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        if (chunk.choices[0]?.text) arrived();
      },
    });
    const decoder = new TextDecoder();
    for await (const part of res.body!) parser.feed(decoder.decode(part as Uint8Array, { stream: true }));
    return tokens;
  });
}

/**
 * The same load on Easel's engine alone, in this process: the model's easel.yaml runtime, the
 * text pipeline and the worker's step loop, no HTTP, IPC or queue. It separates what the engine
 * costs from what serving costs (on a 2-core machine the server and the load generator share the
 * cores that the ceiling has to itself).
 */
async function engine(clients: number): Promise<Result> {
  const spec = readModelSpec(MODEL_DIR);
  const rules = textGenerationRules(spec, MODEL_DIR);
  const pipeline = await TextPipeline.load(MODEL_DIR, spec.runtime);
  const loop = new StepLoop(textSteps(pipeline), { maxBatchSize: 16 });
  const result = await closedLoop(clients, async (prompt, seed, arrived) => {
    let seen = 0;
    const note = (states: readonly { generated: number[] }[]): void => {
      if (states[0]!.generated.length === seen) return;
      seen = states[0]!.generated.length;
      arrived();
    };
    const [out] = await loop.run([generationRequest(parseTextGeneration({ prompt, max_tokens: TOKENS, temperature: 0.8, seed }, rules))], { onBegin: note, onStep: note });
    return out!.tokens.length;
  });
  await pipeline.release();
  return result;
}

const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};

const one = await rawStep(1, 64, 150);
const sixteen = await rawStep(16, 64, 100);
console.log(`\nbench/text-generation — ${MODEL}, CPU\n`);
console.log(`ceiling (ONNX Runtime alone, past 64, the faster of 1 thread and 1 per core): 1 sequence ${one.toFixed(3)} ms/step = ${(1000 / one).toFixed(0)} tokens/s; 16 in one batch ${sixteen.toFixed(3)} ms/step = ${((16 * 1000) / sixteen).toFixed(0)} tokens/s`);

const dir = mkdtempSync(path.join(tmpdir(), 'easel-bench-lm-'));
const sequential = path.join(dir, MODEL);
cpSync(MODEL_DIR, sequential, { recursive: true });
const yamlFile = path.join(sequential, 'easel.yaml');
const spec = parseYaml(readFileSync(yamlFile, 'utf8')) as Record<string, unknown>;
writeFileSync(yamlFile, stringifyYaml({ ...spec, batching: { ...(spec.batching as object), mode: 'none', batchSize: 1 } }));
const rows: string[] = [];
const row = (mode: string, clients: number, r: Result): string => {
  const ceiling = clients === 1 ? 1000 / one : (16 * 1000) / sixteen;
  return [mode.padEnd(22), String(clients).padStart(7), r.tokensPerSecond.toFixed(0).padStart(9), (r.tokensPerSecond / ceiling).toFixed(2).padStart(10),
    q(r.ttft, 0.5).toFixed(1).padStart(9), q(r.ttft, 0.95).toFixed(1).padStart(9), q(r.gaps, 0.5).toFixed(2).padStart(9), q(r.gaps, 0.95).toFixed(2).padStart(9)].join(' ');
};
await engine(1); // warm-up
for (const clients of [1, 4, 16]) rows.push(row('engine alone (no HTTP)', clients, await engine(clients)));
try {
  for (const [mode, modelDir] of [['continuous (step)', MODEL_DIR], ['one at a time (none)', sequential]] as const) {
    const e = await serveModel(MODEL, modelDir);
    try {
      await load(e, 1); // warm-up
      for (const clients of [1, 4, 16]) {
        rows.push(row(mode, clients, await load(e, clients)));
      }
    } finally {
      await e.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\n${'mode'.padEnd(22)} ${'streams'.padStart(7)} ${'tokens/s'.padStart(9)} ${'÷ceiling'.padStart(10)} ${'TTFT p50'.padStart(9)} ${'TTFT p95'.padStart(9)} ${'gap p50'.padStart(9)} ${'gap p95'.padStart(9)}   (ms)`);
for (const r of rows) console.log(r);
console.log('\n÷ceiling: against 1 sequence alone for 1 stream, against the 16-sequence batch otherwise.');
// The ceiling again: how far this machine drifted during the run (shared VMs do, by tens of %).
const [oneAfter, sixteenAfter] = [await rawStep(1, 64, 150), await rawStep(16, 64, 100)];
console.log(`ceiling again after the run: 1 sequence ${oneAfter.toFixed(3)} ms/step (${((oneAfter / one - 1) * 100).toFixed(0)}%), 16 in one batch ${sixteenAfter.toFixed(3)} ms/step (${((sixteenAfter / sixteen - 1) * 100).toFixed(0)}%)`);
