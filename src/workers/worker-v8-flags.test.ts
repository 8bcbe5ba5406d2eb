// Which V8 flags a model's workers get: by the bytes of the ONNX graphs in its folder.
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SINGLE_THREADED_GC_BELOW_BYTES, workerV8Flags } from './worker-process.js';

const dirs: string[] = [];
/** A model folder with these files at these sizes (sparse: nothing is written). */
function folder(files: Record<string, number>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-v8-flags-'));
  dirs.push(dir);
  for (const [file, bytes] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), '');
    truncateSync(path.join(dir, file), bytes);
  }
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('workerV8Flags', () => {
  it('marks on the worker thread for a small model (the bundled tiny-llama)', () => {
    expect(workerV8Flags(path.join(import.meta.dirname, '..', '..', 'models', 'tiny-llama'))).toEqual(['--single-threaded-gc']);
  });

  it('keeps concurrent marking once the graphs, in any subfolder and with external data, reach the threshold', () => {
    const half = SINGLE_THREADED_GC_BELOW_BYTES / 2;
    expect(workerV8Flags(folder({ 'onnx/model.onnx': half, 'easel.yaml': 4 * half }))).toEqual(['--single-threaded-gc']);
    expect(workerV8Flags(folder({ 'onnx/model.onnx': 1024, 'onnx/model.onnx_data': 2 * half }))).toEqual([]);
    expect(workerV8Flags(folder({ 'unet/model.onnx': half, 'vae_decoder/model.onnx': half }))).toEqual([]);
  });
});
