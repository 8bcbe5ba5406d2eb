// The "direct" side of bench/overhead: session.run() on add-one in a loop, in its own process.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeTensor, OnnxSession } from '../../src/runtime/onnx-runtime.js';
import { readModelSpec } from '../../src/models/model-spec.js';
import { FIXTURES } from '../../test/helpers/easel-process.js';

const [n, warmup] = process.argv.slice(2).map(Number) as [number, number];
// The model's own easel.yaml runtime, as its worker runs it.
const dir = path.join(FIXTURES, 'add-one');
const session = await OnnxSession.create(path.join(dir, 'model.onnx'), readModelSpec(dir).runtime);
const run = async (): Promise<number> => {
  const t0 = performance.now();
  await session.run({ x: makeTensor('float32', [1, 2, 3, 4], [4]) });
  return performance.now() - t0;
};
for (let i = 0; i < warmup; i++) await run();
const latencies: number[] = [];
const t0 = performance.now();
for (let i = 0; i < n; i++) latencies.push(await run());
process.send!({ latencies, wallMs: performance.now() - t0 });
