// bench/runtime-options: each ONNX Runtime option of easel.yaml's `runtime:` measured on and off,
// in one run, for the demo LMs: session creation (cold start), then the text pipeline decoding
// one sequence and 16 at once (tokens/s; the engine alone, no HTTP). The first row of each model
// is its easel.yaml as shipped; each other row changes one option. Not a test: it asserts nothing.
//   npm run bench:runtime-options [-- --models tiny-lm,tiny-llama --tokens 64 --rounds 3]
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { readModelSpec, type ModelSpec } from '../../src/models/model-spec.js';
import type { SamplingParams } from '../../src/pipelines/text/sampling.js';
import { TextPipeline, type Sequence } from '../../src/pipelines/text/text-pipeline.js';
import { ROOT } from '../../test/helpers/easel-process.js';

const { values } = parseArgs({ options: { models: { type: 'string', default: 'tiny-lm,tiny-llama' }, tokens: { type: 'string', default: '64' }, rounds: { type: 'string', default: '3' } } });
const TOKENS = Number(values.tokens);
const ROUNDS = Number(values.rounds);
const SAMPLING: SamplingParams = { temperature: 0.8, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: new Map(), topLogprobs: 0, logprobs: false };

type Runtime = ModelSpec['runtime'];
const VARIANTS: [string, Partial<Runtime>][] = [
  ['as shipped', {}],
  ['intraOpThreads 0 (one per core)', { intraOpThreads: 0 }],
  ['spinning false', { spinning: false }],
  ['memArena false', { memArena: false }],
  ['memPattern false', { memPattern: false }],
  ['executionMode parallel', { executionMode: 'parallel' }],
  ['graphOptimizationLevel basic', { graphOptimizationLevel: 'basic' }],
  ['graphOptimizationLevel disabled', { graphOptimizationLevel: 'disabled' }],
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

console.log('\nbench/runtime-options — the engine alone, CPU\n');
console.log(`${'model'.padEnd(11)} ${'runtime'.padEnd(33)} ${'create ms'.padStart(9)} ${'1 seq tok/s'.padStart(11)} ${'16 seq tok/s'.padStart(12)}   (÷ as shipped)`);
for (const model of values.models.split(',')) {
  const dir = path.join(ROOT, 'models', model);
  const shipped = readModelSpec(dir).runtime;
  let base: [number, number] | undefined;
  for (const [name, change] of VARIANTS) {
    const t0 = performance.now();
    const pipeline = await TextPipeline.load(dir, { ...shipped, ...change });
    const create = performance.now() - t0;
    await decode(pipeline, 1); // warm-up
    const one = await decode(pipeline, 1);
    const sixteen = await decode(pipeline, 16);
    await pipeline.release();
    base ??= [one, sixteen];
    console.log(`${model.padEnd(11)} ${name.padEnd(33)} ${create.toFixed(0).padStart(9)} ${one.toFixed(0).padStart(11)} ${sixteen.toFixed(0).padStart(12)}   (${(one / base[0]).toFixed(2)} / ${(sixteen / base[1]).toFixed(2)})`);
  }
}
console.log('\nEach row changes one option of the model\'s easel.yaml runtime; the machine is shared, so compare rows of one run only.');
