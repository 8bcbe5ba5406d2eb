// bench/text-generation: a demo LM (tiny-lm, or --model tiny-llama) through the real server against ONNX Runtime called directly,
// in one run. First the machine's ceiling: the decoder's time per decode step for 1 sequence and
// for 16 sequences in one batch (tokens/s = sequences / step time), with nothing else, with one
// ONNX Runtime thread or one per core, whichever is faster. Then
// Easel with 1, 4 and 16 concurrent streams (POST /v1/completions, stream: true), continuous
// batching (step mode, the default) against one sequence at a time (mode none): aggregate
// tokens/s, time to first token p50/p95, inter-token gap p50/p95, and Easel as a fraction of the
// ceiling; and first the same load on the engine alone (pipeline and step loop in this process, no
// HTTP). Then speculative decoding (greedy, the model's draft), in the same run: a raw ONNX Runtime
// speculative loop against a raw plain loop (the technique's ceiling on this machine: its gain),
// then Easel plain and speculative, the engine alone and through the server, at 1 and 16 streams,
// with the acceptance rate and tokens per target call. Then guided decoding: tokens/s with a JSON
// schema ÷ free (greedy, the same prompts), engine alone and through the server, at 1 and 16
// streams, interleaved rounds, medians; and the share of the engine's time spent computing masks
// at 16 sequences. Not a test: it asserts nothing.
//   npm run bench:text-generation [-- --model tiny-llama --requests 6 --tokens 64]   (--model: a bundled model or a folder)
//   npm run bench:text-generation -- --constrained-only [--rounds 3]
//   npm run bench:text-generation -- --plain-only   (the ceiling, the engine alone and the server; no speculation, no guides)
//   npm run bench:text-generation -- --speculative-only [--k 3,2,4,5,2+ --pairs 5 --draft tiny-lm-draft]
//   (the first k is also run at 16 streams and through the server; "2+": k adapts, from 2)
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
import { parseGuide } from '../../src/handlers/guided-request.js';
import { GuideMatcher, Guides } from '../../src/pipelines/text/guided.js';
import { argmax } from '../../src/pipelines/text/sampling.js';
import { readTextLayout } from '../../src/pipelines/text/text-layout.js';
import { TextTokenizer } from '../../src/pipelines/text/text-tokenizer.js';
import { TextPipeline, type SpeculationCounts, type SpeculativeOptions } from '../../src/pipelines/text/text-pipeline.js';
import { fromTypedArray, OnnxSession, tensorToFloat32, type Tensor } from '../../src/runtime/onnx-runtime.js';
import { StepLoop } from '../../src/scheduling/step-loop.js';
import { ROOT, serveModel, waitModelLive, type EaselProcess } from '../../test/helpers/easel-process.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'tiny-lm' }, requests: { type: 'string', default: '6' }, tokens: { type: 'string', default: '64' },
    draft: { type: 'string', default: 'tiny-lm-draft' }, k: { type: 'string', default: '3,2,4,5,2+' }, pairs: { type: 'string', default: '5' }, 'speculative-only': { type: 'boolean', default: false },
    'constrained-only': { type: 'boolean', default: false }, 'plain-only': { type: 'boolean', default: false }, rounds: { type: 'string', default: '3' },
  },
});
// A bundled model's name, or a model folder (tools/model-factory/bench_llama.py's): served under its folder's name.
const MODEL = values.model.includes('/') ? path.basename(path.resolve(values.model)) : values.model;
const REQUESTS = Number(values.requests);
const TOKENS = Number(values.tokens);
const PAIRS = Number(values.pairs);
const MODEL_DIR = values.model.includes('/') ? path.resolve(values.model) : path.join(ROOT, 'models', MODEL);
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

/** The server: POST /v1/completions with stream: true (`extra`: more request fields). */
function load(e: EaselProcess, clients: number, temperature = 0.8, model = MODEL, extra: Record<string, unknown> = {}): Promise<Result> {
  return closedLoop(clients, async (prompt, seed, arrived) => {
    const res = await fetch(`${e.inference}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt, max_tokens: TOKENS, temperature, seed, stream: true, stream_options: { include_usage: true }, ...extra }),
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
async function engine(clients: number, options: { temperature?: number; speculative?: SpeculativeOptions; guided?: Record<string, unknown> } = {}): Promise<Result & { counts: SpeculationCounts }> {
  const spec = readModelSpec(MODEL_DIR);
  const rules = textGenerationRules(spec, MODEL_DIR);
  const key = JSON.stringify(options.speculative ?? {});
  // One pipeline per setting for the whole run: a fresh session is slow for its first calls at each new shape.
  const pipeline = pipelines.get(key) ?? (await TextPipeline.load(MODEL_DIR, spec.runtime, options.speculative));
  pipelines.set(key, pipeline);
  const loop = new StepLoop(textSteps(pipeline), { maxBatchSize: 16 });
  const temperature = options.temperature ?? 0.8;
  const result = await closedLoop(clients, async (prompt, seed, arrived) => {
    let seen = 0;
    const note = (states: readonly { generated: number[] }[]): void => {
      if (states[0]!.generated.length === seen) return;
      seen = states[0]!.generated.length;
      arrived();
    };
    const params = parseTextGeneration({ prompt, max_tokens: TOKENS, temperature, seed, ...options.guided }, rules);
    // A guided request's matcher, as the handler makes it (the grammar compiled once, then cached).
    const guide = params.guide ? await (await guidesFor(pipeline)).matcher(params.guide) : undefined;
    try {
      const [out] = await loop.run([generationRequest(params, guide)], { onBegin: note, onStep: note });
      return out!.tokens.length;
    } finally {
      guide?.dispose();
    }
  });
  return { ...result, counts: pipeline.takeCounts() };
}

const pipelines = new Map<string, TextPipeline>();
let guides: Promise<Guides> | undefined;
function guidesFor(pipeline: TextPipeline): Promise<Guides> {
  guides ??= Guides.load(MODEL_DIR, pipeline.info.vocabSize, pipeline.info.eosTokenIds);
  return guides;
}

/** A JSON schema whose answers go on (at least ten records: longer than the tokens asked), so that guided requests are as long as free ones. */
const SCHEMA = { type: 'array', minItems: 10, items: { type: 'object', properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 99 }, pet: { enum: ['cat', 'dog', 'bird'] } }, required: ['name', 'age', 'pet'] } };

/**
 * Guided decoding's cost: tokens/s with SCHEMA ÷ free (greedy, the same prompts and lengths asked),
 * interleaved rounds, medians; the engine alone and the server; and the share of the engine's time
 * at 16 sequences spent computing masks (GuideMatcher.mask timed).
 */
async function constrainedSection(): Promise<void> {
  const guided = { guided_json: SCHEMA };
  parseGuide(guided);
  const rounds = Number(values.rounds);
  const median = (xs: number[]): number => q(xs, 0.5);
  console.log(`\nguided decoding — ${MODEL}: a JSON schema (a list of {name, age, pet}) against free text, greedy, ${TOKENS} tokens asked, ${rounds} interleaved rounds (medians)\n`);
  console.log(`${'where'.padEnd(24)} ${'streams'.padStart(7)} ${'free tok/s'.padStart(10)} ${'JSON tok/s'.padStart(10)} ${'JSON÷free'.padStart(10)}`);
  const measure = async (where: string, clients: number, run: (g?: Record<string, unknown>) => Promise<Result>): Promise<void> => {
    await run();
    await run(guided); // warm-up: compiles the grammar once
    const free: number[] = [];
    const json: number[] = [];
    for (let r = 0; r < rounds; r++) {
      free.push((await run()).tokensPerSecond);
      json.push((await run(guided)).tokensPerSecond);
    }
    console.log(`${where.padEnd(24)} ${String(clients).padStart(7)} ${median(free).toFixed(0).padStart(10)} ${median(json).toFixed(0).padStart(10)} ${(median(json) / median(free)).toFixed(2).padStart(10)}`);
  };
  for (const clients of [1, 16]) await measure('engine alone (no HTTP)', clients, (g) => engine(clients, { temperature: 0, guided: g }));
  const e = await serveModel(MODEL, MODEL_DIR);
  try {
    for (const clients of [1, 16]) await measure('server', clients, (g) => load(e, clients, 0, MODEL, g ?? {}));
  } finally {
    await e.stop();
  }
  // The masks' share of the engine's time at 16 sequences.
  const mask = GuideMatcher.prototype.mask;
  let inMasks = 0;
  GuideMatcher.prototype.mask = async function (this: GuideMatcher, logits: Float32Array): Promise<void> {
    const t0 = performance.now();
    await mask.call(this, logits);
    inMasks += performance.now() - t0;
  };
  const t0 = performance.now();
  const r = await engine(16, { temperature: 0, guided });
  const wall = performance.now() - t0;
  GuideMatcher.prototype.mask = mask;
  console.log(`\nmasks at 16 sequences (engine alone): ${inMasks.toFixed(0)} ms of ${wall.toFixed(0)} ms = ${((inMasks / wall) * 100).toFixed(1)}% of the time (${r.tokensPerSecond.toFixed(0)} tokens/s)`);
}

const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};

async function plainSections(): Promise<void> {
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
}

/** A decoder called directly, one sequence, its cache in plain arrays: the raw loops' model. */
class RawLm {
  #cache = new Map<string, Float32Array>();
  #length = 0;
  private constructor(
    private readonly session: OnnxSession,
    private readonly heads: number,
    private readonly headDim: number,
  ) {}

  static async load(dir: string): Promise<RawLm> {
    const session = await OnnxSession.create(path.join(dir, 'onnx', 'model.onnx'), readModelSpec(dir).runtime);
    const past = session.inputs.find((i) => i.name === 'past_key_values.0.key')!;
    return new RawLm(session, Number(past.shape[1]), Number(past.shape[3]));
  }

  /** Appends tokens; the logits after each. */
  async feed(tokens: readonly number[]): Promise<Float32Array[]> {
    const [T, L, H, D] = [tokens.length, this.#length, this.heads, this.headDim];
    const feeds: Record<string, Tensor> = {
      input_ids: fromTypedArray('int64', BigInt64Array.from(tokens, BigInt), [1, T]),
      attention_mask: fromTypedArray('int64', new BigInt64Array(L + T).fill(1n), [1, L + T]),
      position_ids: fromTypedArray('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(L + i)), [1, T]),
    };
    for (const i of this.session.inputs) if (i.name.startsWith('past_key_values.')) feeds[i.name] = fromTypedArray('float32', this.#cache.get(i.name) ?? new Float32Array(0), [1, H, L, D]);
    const out = await this.session.run(feeds);
    for (const name of Object.keys(feeds)) if (name.startsWith('past_key_values.')) this.#cache.set(name, tensorToFloat32(out[name.replace('past_key_values', 'present')]!));
    this.#length = L + T;
    const logits = tensorToFloat32(out.logits!);
    const V = logits.length / T;
    return tokens.map((_, i) => logits.subarray(i * V, (i + 1) * V));
  }

  /** Keeps the first n positions. */
  truncate(n: number): void {
    if (n >= this.#length) return;
    const [L, H, D] = [this.#length, this.heads, this.headDim];
    for (const [name, a] of this.#cache) {
      const kept = new Float32Array(H * n * D);
      for (let h = 0; h < H; h++) kept.set(a.subarray(h * L * D, (h * L + n) * D), h * n * D);
      this.#cache.set(name, kept);
    }
    this.#length = n;
  }

  get length(): number {
    return this.#length;
  }

  reset(): void {
    this.#cache.clear();
    this.#length = 0;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * Greedy decoding of every prompt REQUESTS times, one sequence at a time, ONNX Runtime called
 * directly: plainly, or with the draft proposing k tokens that the target checks in one call.
 */
async function rawLoop(target: RawLm, draft: RawLm | undefined, setting: KSetting): Promise<{ tokensPerSecond: number; proposed: number; accepted: number; calls: number }> {
  const eos = new Set(readTextLayout(MODEL_DIR).eosTokenIds);
  const tokenizer = TextTokenizer.load(MODEL_DIR);
  let [generated, proposed, accepted, calls] = [0, 0, 0, 0];
  const t0 = performance.now();
  for (let r = 0; r < REQUESTS; r++) {
    for (const prompt of PROMPTS) {
      target.reset();
      draft?.reset();
      const tokens = tokenizer.encode(prompt);
      const start = tokens.length;
      let next = argmax((await target.feed(tokens)).at(-1)!);
      if (draft) await draft.feed(tokens);
      let k = setting.k;
      while (!eos.has(next) && tokens.length - start < TOKENS) {
        tokens.push(next);
        const room = Math.min(k, TOKENS - (tokens.length - start));
        const proposals: number[] = [];
        if (draft && room > 0) {
          let fed = tokens.slice(draft.length);
          for (let j = 0; j < room; j++) {
            proposals.push(argmax((await draft.feed(fed)).at(-1)!));
            fed = [proposals.at(-1)!];
          }
        }
        const logits = await target.feed([tokens.at(-1)!, ...proposals]);
        calls++;
        proposed += proposals.length;
        let j = 0;
        while (j < proposals.length && argmax(logits[j]!) === proposals[j] && !eos.has(proposals[j]!) && tokens.length - start < TOKENS) tokens.push(proposals[j++]!);
        accepted += j;
        if (setting.adaptive) k = j === k ? Math.min(k + 2, 8) : Math.max(1, k - 1);
        next = argmax(logits[j]!);
        target.truncate(tokens.length);
        draft?.truncate(tokens.length);
      }
      generated += tokens.length - start;
    }
  }
  return { tokensPerSecond: (generated / (performance.now() - t0)) * 1000, proposed, accepted, calls };
}

/** The median of some numbers. */
const median = (xs: number[]): number => q(xs, 0.5);

interface KSetting { k: number; adaptive: boolean; label: string }

interface Counts { proposed: number; accepted: number; emitted: number; verified: number }

/**
 * Plain and speculative runs of one kind, taken in turns PAIRS times: on a shared, noisy machine
 * a ratio of neighbours drifts far less than two separate means. The medians of each and of the ratios.
 */
async function interleaved(plain: () => Promise<number>, speculative: () => Promise<{ tokensPerSecond: number; counts: Counts }>): Promise<{ plain: number; speculative: number; gain: number; counts: Counts }> {
  const [p, s, gains] = [[] as number[], [] as number[], [] as number[]];
  const counts: Counts = { proposed: 0, accepted: 0, emitted: 0, verified: 0 };
  for (let i = 0; i < PAIRS; i++) {
    const a = await plain();
    const b = await speculative();
    p.push(a);
    s.push(b.tokensPerSecond);
    gains.push(b.tokensPerSecond / a);
    for (const k of Object.keys(counts) as (keyof Counts)[]) counts[k] += b.counts[k];
  }
  return { plain: median(p), speculative: median(s), gain: median(gains), counts };
}

async function speculativeSection(): Promise<void> {
  // "4": k = 4; "4+": adaptive, from 4.
  const ks: KSetting[] = values.k.split(',').map((v) => ({ k: Number.parseInt(v, 10), adaptive: v.endsWith('+'), label: v }));
  const draftDir = path.join(ROOT, 'models', values.draft);
  console.log(`\nspeculative decoding — ${MODEL}, draft ${values.draft}, greedy, ${TOKENS} tokens, ${PROMPTS.length * REQUESTS} requests per run; plain and speculative runs in turns, ${PAIRS} pairs, medians; the model's easel.yaml runtime throughout\n`);
  console.log(`${'run'.padEnd(30)} ${'k'.padStart(3)} ${'streams'.padStart(7)} ${'plain'.padStart(9)} ${'specul.'.padStart(9)} ${'gain'.padStart(7)} ${'÷ raw gain'.padStart(11)} ${'accepted'.padStart(9)} ${'tok/call'.padStart(9)}`);
  const row = (what: string, k: string, streams: number, r: { plain: number; speculative: number; gain: number; counts: Counts }, rawGain: number): void => {
    const c = r.counts;
    console.log([what.padEnd(30), k.padStart(3), String(streams).padStart(7), r.plain.toFixed(0).padStart(9), r.speculative.toFixed(0).padStart(9), r.gain.toFixed(2).padStart(7),
      (r.gain / rawGain).toFixed(2).padStart(11), (c.accepted / c.proposed).toFixed(2).padStart(9), (c.emitted / c.verified).toFixed(2).padStart(9)].join(' '));
  };
  const [target, draft] = [await RawLm.load(MODEL_DIR), await RawLm.load(draftDir)];
  await rawLoop(target, draft, ks[0]!); // warm-up
  const rawGains = new Map<string, number>();
  for (const k of ks) {
    const raw = await interleaved(async () => (await rawLoop(target, undefined, k)).tokensPerSecond, async () => {
      const r = await rawLoop(target, draft, k);
      return { tokensPerSecond: r.tokensPerSecond, counts: { proposed: r.proposed, accepted: r.accepted, emitted: r.accepted + r.calls, verified: r.calls } };
    });
    rawGains.set(k.label, raw.gain);
    row('raw ONNX Runtime loop', k.label, 1, raw, raw.gain);
  }
  await Promise.all([target.release(), draft.release()]);
  await engine(1, { temperature: 0, speculative: { draftDir, k: ks[0]!.k } }); // warm-up
  for (const k of ks) {
    const speculative: SpeculativeOptions = { draftDir, k: k.k, adaptive: k.adaptive };
    for (const streams of k === ks[0] ? [1, 16] : [1]) {
      row('engine alone', k.label, streams, await interleaved(async () => (await engine(streams, { temperature: 0 })).tokensPerSecond, () => engine(streams, { temperature: 0, speculative })), rawGains.get(k.label)!);
    }
  }
  // Through the server, for the first k: the model plainly and with its draft (speculative in its
  // easel.yaml), both served at once from one model store and loaded in turns.
  const k = ks[0]!;
  const store = mkdtempSync(path.join(tmpdir(), 'easel-bench-spec-'));
  let e: EaselProcess | undefined;
  try {
    cpSync(MODEL_DIR, path.join(store, MODEL), { recursive: true });
    cpSync(draftDir, path.join(store, values.draft), { recursive: true });
    const fast = `${MODEL}-speculative`;
    cpSync(MODEL_DIR, path.join(store, fast), { recursive: true });
    const yaml = parseYaml(readFileSync(path.join(store, fast, 'easel.yaml'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(store, fast, 'easel.yaml'), stringifyYaml({ ...yaml, name: fast, speculative: { draft: values.draft, k: k.k, adaptive: k.adaptive } }));
    e = await serveModel(MODEL, path.join(store, MODEL), ['--model-store', store, '--models', `${fast}=${fast}`]);
    await waitModelLive(e, fast);
    const server = e;
    await load(server, 1, 0, fast); // warm-up
    for (const streams of [1, 16]) {
      row('server', k.label, streams, await interleaved(async () => (await load(server, streams, 0)).tokensPerSecond, async () => {
        const before = await speculationMetrics(server, fast);
        const r = await load(server, streams, 0, fast);
        const after = await speculationMetrics(server, fast);
        return { tokensPerSecond: r.tokensPerSecond, counts: { proposed: after.proposed - before.proposed, accepted: after.accepted - before.accepted, emitted: after.emitted - before.emitted, verified: after.verified - before.verified } };
      }), rawGains.get(k.label)!);
    }
  } finally {
    await e?.stop();
    rmSync(store, { recursive: true, force: true });
  }
  console.log('\nplain, specul.: tokens/s (medians); gain: speculative ÷ plain (median of the pairs); ÷ raw gain: that gain over the raw loop\'s gain for the same k; accepted: accepted ÷ proposed draft tokens; tok/call: tokens each sequence got per target call.');
}

/** The server's speculative decoding counters for the model. */
async function speculationMetrics(e: EaselProcess, model: string): Promise<Counts> {
  const text = await (await fetch(`${e.metrics}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name}\\{model="${model}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return {
    proposed: value('easel_spec_decode_draft_tokens_total'), accepted: value('easel_spec_decode_accepted_tokens_total'),
    emitted: value('easel_spec_decode_emitted_tokens_total'), verified: value('easel_spec_decode_verifications_total'),
  };
}

if (values['constrained-only']) await constrainedSection();
else if (values['plain-only']) await plainSections();
else {
  if (!values['speculative-only']) await plainSections();
  await speculativeSection();
  if (!values['speculative-only']) await constrainedSection();
}
for (const pipeline of pipelines.values()) await pipeline.release();
