// ONNX Runtime sessions as Easel creates them: with easel.yaml's runtime options (sleeping idle
// threads, no memory arena or pattern, parallel execution) and with outputs written into arrays
// the caller allocated — the same numbers either way.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fromTypedArray, OnnxSession, type SessionOptions, type Tensor } from './onnx-runtime.js';

const MODEL = path.resolve(import.meta.dirname, '../../models/tiny-lm/onnx/model.onnx');
const CPU: SessionOptions = { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 1, interOpThreads: 1 };

function feeds(): Record<string, Tensor> {
  const f: Record<string, Tensor> = {
    input_ids: fromTypedArray('int64', BigInt64Array.from([5n, 9n]), [2, 1]),
    attention_mask: fromTypedArray('int64', new BigInt64Array(2 * 4).fill(1n), [2, 4]),
    position_ids: fromTypedArray('int64', BigInt64Array.from([3n, 3n]), [2, 1]),
  };
  for (let l = 0; l < 4; l++) for (const kv of ['key', 'value']) f[`past_key_values.${l}.${kv}`] = fromTypedArray('float32', Float32Array.from({ length: 2 * 4 * 3 * 32 }, (_, i) => Math.sin(i + l)), [2, 4, 3, 32]);
  return f;
}

describe('OnnxSession', () => {
  it.each<[string, Partial<SessionOptions>]>([
    ['sleeping idle threads', { intraOpThreads: 2, spinning: false }],
    ['no memory arena or pattern', { memArena: false, memPattern: false }],
    ['parallel execution', { executionMode: 'parallel', interOpThreads: 2 }],
  ])('runs with %s and gives the same outputs', async (_, options) => {
    const plain = await OnnxSession.create(MODEL, CPU);
    const changed = await OnnxSession.create(MODEL, { ...CPU, ...options });
    const a = await plain.run(feeds());
    const b = await changed.run(feeds());
    for (const name of ['logits', 'present.3.value']) {
      const [x, y] = [a[name]!.data as Float32Array, b[name]!.data as Float32Array];
      expect(y.length, name).toBe(x.length);
      // Two threads may sum in another order: equal to float32 rounding.
      expect(Math.max(...x.map((v, i) => Math.abs(v - y[i]!))), name).toBeLessThan(1e-5);
    }
    await Promise.all([plain.release(), changed.release()]);
  });
});
