// Runs exported graphs in onnxruntime-node on the factory's saved inputs and prints, as JSON,
// the max abs difference from PyTorch's outputs, and for each graph the max abs difference
// between running the whole batch and running each sample alone.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../package.json', import.meta.url));
const ort = require('onnxruntime-node');
const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array };

function load(spec) {
  const buf = readFileSync(spec.file);
  const Arr = ARRAYS[spec.dtype];
  const data = new Arr(buf.buffer, buf.byteOffset, buf.byteLength / Arr.BYTES_PER_ELEMENT);
  return new ort.Tensor(spec.dtype, Arr.from(data), spec.shape);
}

function sample(t, i) {
  const per = t.data.length / t.dims[0];
  return new ort.Tensor(t.type, t.data.slice(i * per, (i + 1) * per), [1, ...t.dims.slice(1)]);
}

function maxAbs(a, b, offset = 0) {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(Number(a[i + offset]) - Number(b[i])));
  return m;
}

const manifest = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const report = {};
for (const g of manifest) {
  const session = await ort.InferenceSession.create(g.model);
  const feeds = Object.fromEntries(Object.entries(g.inputs).map(([k, v]) => [k, load(v)]));
  const out = await session.run(feeds);
  let parity = 0;
  for (const [k, v] of Object.entries(g.outputs)) parity = Math.max(parity, maxAbs(out[k].data, load(v).data));
  report[`${g.name} onnx-vs-torch max abs`] = parity;
  if (g.split_batch) {
    let split = 0;
    const n = Object.values(feeds)[0].dims[0];
    for (let i = 0; i < n; i++) {
      const alone = await session.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, sample(t, i)])));
      for (const k of Object.keys(g.outputs)) split = Math.max(split, maxAbs(out[k].data, alone[k].data, i * alone[k].data.length));
    }
    report[`${g.name} batch-vs-alone max abs`] = split;
  }
}
console.log(JSON.stringify(report));
