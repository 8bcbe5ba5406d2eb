// bench/runtime-options: each ONNX Runtime option of easel.yaml's `runtime:` measured on and off,
// in one run, for the demo models: session creation (cold start), then the text pipeline decoding
// one sequence and 16 at once (tokens/s), or tiny-sd making one image and 4 at once (images/s,
// 20 steps; the engine alone, no HTTP), and what the option does to the output: the largest
// difference from the shipped setting's logits (LMs, one prompt) or pixels (tiny-sd, same seeds).
// The first row of each model is its easel.yaml as shipped; each other row changes one option.
// Then `warmup`: the first request's time after a fresh load, without and with the handlers'
// warm-up at load (2 tokens of "Hello"; one tiny-sd step). Not a test: it asserts nothing.
//   npm run bench:runtime-options [-- --models tiny-lm,tiny-llama,tiny-sd --tokens 64 --rounds 3]
import { existsSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { readModelSpec, type ModelSpec } from '../../src/models/model-spec.js';
import { DiffusionPipeline, isFinished } from '../../src/pipelines/diffusion/diffusion-pipeline.js';
import type { SamplingParams } from '../../src/pipelines/text/sampling.js';
import { TextPipeline, type Sequence } from '../../src/pipelines/text/text-pipeline.js';
import { ROOT } from '../../test/helpers/easel-process.js';

const { values } = parseArgs({ options: { models: { type: 'string', default: 'tiny-lm,tiny-llama,tiny-sd' }, tokens: { type: 'string', default: '64' }, rounds: { type: 'string', default: '3' } } });
const TOKENS = Number(values.tokens);
const ROUNDS = Number(values.rounds);
const SAMPLING: SamplingParams = { temperature: 0.8, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: new Map(), topLogprobs: 0, logprobs: false };

type Runtime = ModelSpec['runtime'];
/** The model factory's int8 graphs (tools/model-factory/quantize.py), when they have been made here. */
const hasInt8 = (dir: string): boolean => ['onnx/model_int8.onnx', 'unet/model_int8.onnx'].some((f) => existsSync(path.join(dir, f)));

const variants = (shipped: Runtime, dir: string): [string, Partial<Runtime>][] => [
  ['as shipped', {}],
  shipped.intraOpThreads === 1 ? ['intraOpThreads 0 (one per core)', { intraOpThreads: 0 }] : ['intraOpThreads 1', { intraOpThreads: 1 }],
  ['spinning false', { spinning: false }],
  ['memArena false', { memArena: false }],
  ['memPattern false', { memPattern: false }],
  ['executionMode parallel', { executionMode: 'parallel' }],
  ['graphOptimizationLevel basic', { graphOptimizationLevel: 'basic' }],
  ['graphOptimizationLevel disabled', { graphOptimizationLevel: 'disabled' }],
  ...(hasInt8(dir) ? [['variant int8 (int8 weights)', { variant: 'int8' }] as [string, Partial<Runtime>]] : []),
];

/** tokens/s of `batch` sequences decoded together, each TOKENS long, ROUNDS times. */
async function decode(pipeline: TextPipeline, batch: number): Promise<number> {
  const prompt = pipeline.tokenizer.encode('Once upon a time, there was');
  let tokens = 0;
  const t0 = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    const states: Sequence[] = await pipeline.begin(Array.from({ length: batch }, (_, i) => ({ promptTokens: prompt, maxNewTokens: TOKENS, sampling: SAMPLING, seed: r * 100 + i, stopTokenIds: [], stop: [] })));
    while (states.some((s) => !pipeline.isFinished(s))) await pipeline.step(states);
    tokens += (await pipeline.finish(states)).reduce((n, o) => n + o.tokens.length, 0);
  }
  return (tokens / (performance.now() - t0)) * 1000;
}

/** images/s of `batch` tiny-sd images made together, 20 steps, ROUNDS times; and the last round's pixels. */
async function paint(pipeline: DiffusionPipeline, batch: number): Promise<{ perSecond: number; pixels: Uint8Array[] }> {
  const t0 = performance.now();
  let pixels: Uint8Array[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const states = await pipeline.begin(Array.from({ length: batch }, (_, i) => ({ prompt: 'a red circle on a blue background', negativePrompt: '', steps: 20, guidanceScale: 7.5, width: 64, height: 64, seed: i + 1, scheduler: 'ddim' })));
    while (!states.every(isFinished)) await pipeline.denoise(states);
    pixels = (await pipeline.finish(states)).map((image) => image.data);
  }
  return { perSecond: ((batch * ROUNDS) / (performance.now() - t0)) * 1000, pixels };
}

/** The largest absolute difference between two lists of equal arrays. */
function maxDiff(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let max = 0;
  for (const [i, x] of a.entries()) for (let j = 0; j < x.length; j++) max = Math.max(max, Math.abs(x[j]! - b[i]![j]!));
  return max;
}

console.log('\nbench/runtime-options — the engine alone, CPU\n');
console.log(`${'model'.padEnd(11)} ${'runtime'.padEnd(33)} ${'create ms'.padStart(9)} ${'1 at once'.padStart(10)} ${'many'.padStart(10)} ${'÷ shipped'.padStart(12)} ${'max |Δ| output'.padStart(15)}`);
for (const model of values.models.split(',')) {
  const dir = path.join(ROOT, 'models', model);
  const shipped = readModelSpec(dir).runtime;
  const diffusion = readModelSpec(dir).handler === 'text-to-image';
  let base: { one: number; many: number; output: ArrayLike<number>[] } | undefined;
  for (const [name, change] of variants(shipped, dir)) {
    const t0 = performance.now();
    let one: number;
    let many: number;
    let output: ArrayLike<number>[];
    if (diffusion) {
      const pipeline = await DiffusionPipeline.load(dir, { ...shipped, ...change });
      const create = performance.now() - t0;
      await paint(pipeline, 1); // warm-up
      one = (await paint(pipeline, 1)).perSecond;
      const four = await paint(pipeline, 4);
      [many, output] = [four.perSecond, four.pixels];
      await pipeline.release();
      base ??= { one, many, output };
      row(model, name, create, one, many, base, maxDiff(output, base.output).toFixed(0) + ' (0-255)');
    } else {
      const pipeline = await TextPipeline.load(dir, { ...shipped, ...change });
      const create = performance.now() - t0;
      await decode(pipeline, 1); // warm-up
      one = await decode(pipeline, 1);
      many = await decode(pipeline, 16);
      output = [await pipeline.logitsWithoutCache(pipeline.tokenizer.encode('Once upon a time, there was a little girl named Lily. She loved to play with'))];
      await pipeline.release();
      base ??= { one, many, output };
      row(model, name, create, one, many, base, maxDiff(output, base.output).toExponential(1) + ' logit');
    }
  }
}

function row(model: string, name: string, create: number, one: number, many: number, base: { one: number; many: number }, quality: string): void {
  console.log(`${model.padEnd(11)} ${name.padEnd(33)} ${create.toFixed(0).padStart(9)} ${one.toFixed(one < 100 ? 1 : 0).padStart(10)} ${many.toFixed(many < 100 ? 1 : 0).padStart(10)} ${`${(one / base.one).toFixed(2)} / ${(many / base.many).toFixed(2)}`.padStart(12)} ${quality.padStart(15)}`);
}
console.log('\nint8 rows appear where tools/model-factory/quantize.py has written the int8 graphs.');
console.log('\n1 at once, many: LMs tokens/s of 1 and 16 sequences decoded together; tiny-sd images/s of 1 and 4 images made together (20 steps, 64x64).');
console.log('\nEach row changes one option of the model\'s easel.yaml runtime; the machine is shared, so compare rows of one run only.');

/** The first request after a fresh load (ms), with or without the handler's warm-up first; and the warm-up's own time. */
async function firstRequest(dir: string, diffusion: boolean, warmup: boolean): Promise<{ first: number; warmup: number }> {
  const runtime = readModelSpec(dir).runtime;
  if (diffusion) {
    const pipeline = await DiffusionPipeline.load(dir, runtime);
    const make = async (steps: number): Promise<number> => {
      const t0 = performance.now();
      const states = await pipeline.begin([{ prompt: steps === 1 ? '' : 'a red circle on a blue background', negativePrompt: '', steps, guidanceScale: 7.5, width: 64, height: 64, seed: 1, scheduler: 'ddim' }]);
      while (!states.every(isFinished)) await pipeline.denoise(states);
      await pipeline.finish(states);
      return performance.now() - t0;
    };
    const w = warmup ? await make(1) : 0;
    const first = await make(20);
    await pipeline.release();
    return { first, warmup: w };
  }
  const pipeline = await TextPipeline.load(dir, runtime);
  const make = async (prompt: string, tokens: number): Promise<number> => {
    const t0 = performance.now();
    const states = await pipeline.begin([{ promptTokens: pipeline.tokenizer.encode(prompt), maxNewTokens: tokens, sampling: SAMPLING, seed: 1, stopTokenIds: [], stop: [] }]);
    while (states.some((st) => !pipeline.isFinished(st))) await pipeline.step(states);
    await pipeline.finish(states);
    return performance.now() - t0;
  };
  const w = warmup ? await make('Hello', 2) : 0;
  const first = await make('Once upon a time, there was', 16);
  await pipeline.release();
  return { first, warmup: w };
}

console.log(`\nwarmup: the first request after a fresh load (LMs: 16 tokens; tiny-sd: one 20-step image), ms, median of 5 loads\n`);
console.log(`${'model'.padEnd(11)} ${'warmup false'.padStart(13)} ${'warmup true'.padStart(12)} ${'the warm-up'.padStart(12)}`);
for (const model of values.models.split(',')) {
  const dir = path.join(ROOT, 'models', model);
  const diffusion = readModelSpec(dir).handler === 'text-to-image';
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const cold: number[] = [];
  const warm: { first: number; warmup: number }[] = [];
  for (let i = 0; i < 5; i++) {
    cold.push((await firstRequest(dir, diffusion, false)).first);
    warm.push(await firstRequest(dir, diffusion, true));
  }
  const steady = median(warm.map((w) => w.first));
  console.log(`${model.padEnd(11)} ${median(cold).toFixed(1).padStart(13)} ${steady.toFixed(1).padStart(12)} ${median(warm.map((w) => w.warmup)).toFixed(1).padStart(12)}`);
}
