// --profile-dir: each worker writes ONNX Runtime's profile of its sessions (Chrome trace JSON:
// one model_run event per call, its nodes' times) and a V8 CPU profile of its process (flame-graph
// ready), per model, when the server stops; with --profile-cpu-only, the CPU profile alone.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel } from '../helpers/easel-process.js';

describe('profiling the workers (--profile-dir)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-profile-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes an ONNX Runtime trace and a CPU profile per worker when the server stops', async () => {
    const easel = await serveModel('tiny-lm', path.join(ROOT, 'models', 'tiny-lm'), ['--profile-dir', dir]);
    const res = await fetch(`${easel.inference}/predictions/tiny-lm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'Tom had', max_new_tokens: 12, temperature: 0 }) });
    expect(res.status).toBe(200);
    await res.text();
    expect(await easel.stop()).toBe(0);
    const files = readdirSync(path.join(dir, 'tiny-lm'));
    const trace = JSON.parse(readFileSync(path.join(dir, 'tiny-lm', files.find((f) => /^ort-\d+-onnx-model_.*\.json$/.test(f))!), 'utf8')) as { cat: string; name: string; dur: number }[];
    // The warm-up and the request: at least a prefill and 11 decode steps, each with its nodes.
    expect(trace.filter((e) => e.name === 'model_run').length).toBeGreaterThanOrEqual(12);
    expect(trace.some((e) => e.cat === 'Node' && /MatMul/.test(e.name))).toBe(true);
    const cpu = JSON.parse(readFileSync(path.join(dir, 'tiny-lm', files.find((f) => f.endsWith('.cpuprofile'))!), 'utf8')) as { nodes: { callFrame: { url: string } }[]; samples: number[] };
    expect(cpu.samples.length).toBeGreaterThan(0);
    expect(cpu.nodes.some((n) => n.callFrame.url.includes('kv-decoder'))).toBe(true);
  }, 60_000);

  it('with --profile-cpu-only writes the CPU profile and no ONNX Runtime trace', async () => {
    const only = path.join(dir, 'cpu-only');
    const easel = await serveModel('tiny-lm', path.join(ROOT, 'models', 'tiny-lm'), ['--profile-dir', only, '--profile-cpu-only']);
    const res = await fetch(`${easel.inference}/predictions/tiny-lm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'Tom had', max_new_tokens: 4, temperature: 0 }) });
    expect(res.status).toBe(200);
    await res.text();
    expect(await easel.stop()).toBe(0);
    const files = readdirSync(path.join(only, 'tiny-lm'));
    expect(files.filter((f) => f.endsWith('.cpuprofile'))).toHaveLength(1);
    expect(files.filter((f) => f.startsWith('ort-'))).toEqual([]);
  }, 60_000);
});
