// bench/stages: where a tiny-sd image's time goes through the real server, from easel_stage_seconds
// and easel_session_run_seconds_total. Closed-loop clients (1, 4, 8) each make PNGs of 20 steps
// for a while; the metrics are read before and after, and each stage's time is set against the
// run's wall time: the worker's step loop (text_encode, denoise, vae_decode: one after another),
// the handler's per-batch stages (preprocess, postprocess with encode_image: beside the loop, the
// PNG encoder on libuv's threads) and the API process's stages (overlapping across requests: per
// image). The line that matters is the share of the one worker's wall time spent outside ONNX
// Runtime's session.run(). Not a test: it asserts nothing.
//   npm run bench:stages [-- --seconds 10 --clients 1,4,8 --steps 20]
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { ROOT, serveModel, type EaselProcess } from '../../test/helpers/easel-process.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, clients: { type: 'string', default: '1,4,8' }, steps: { type: 'string', default: '20' } } });
const SECONDS = Number(values.seconds);
const STEPS = Number(values.steps);

/** The step loop's calls (one after another), the handler's per-batch stages (beside the loop), the API process's. */
const LOOP = ['text_encode', 'denoise', 'vae_decode'];
const BATCH = ['preprocess', 'postprocess'];
const API = ['admission', 'queue_wait', 'ipc', 'http_write'];

async function scrape(e: EaselProcess): Promise<Map<string, number>> {
  const text = await (await fetch(`${e.metrics}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^easel_stage_seconds_(sum|count)\{model="tiny-sd",stage="([^"]+)"\} (\S+)$/gm)) out.set(`${m[2]}.${m[1]}`, Number(m[3]));
  out.set('session_run', Number(/^easel_session_run_seconds_total\{model="tiny-sd"\} (\S+)$/m.exec(text)?.[1] ?? 0));
  out.set('encode_image.sum', out.get('encode_image.sum') ?? 0);
  return out;
}

async function closedLoop(e: EaselProcess, clients: number): Promise<{ images: number; wall: number }> {
  const t0 = performance.now();
  let images = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; performance.now() - t0 < SECONDS * 1000; i++) {
        const res = await fetch(`${e.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a red circle on a blue background', num_inference_steps: STEPS, seed: c * 1000 + i }) });
        await res.arrayBuffer();
        if (res.ok) images++;
      }
    }),
  );
  return { images, wall: (performance.now() - t0) / 1000 };
}

const dir = mkdtempSync(path.join(tmpdir(), 'easel-bench-stages-'));
cpSync(path.join(ROOT, 'models', 'tiny-sd'), path.join(dir, 'tiny-sd'), { recursive: true });
const e = await serveModel('tiny-sd', path.join(dir, 'tiny-sd'));
try {
  await closedLoop(e, 1); // warm-up
  console.log(`\nbench/stages — tiny-sd, ${STEPS} steps, 64x64, PNG, closed-loop clients for ${SECONDS} s each, one worker, CPU\n`);
  for (const clients of values.clients.split(',').map(Number)) {
    const before = await scrape(e);
    const { images, wall } = await closedLoop(e, clients);
    const after = await scrape(e);
    const delta = (key: string): number => (after.get(key) ?? 0) - (before.get(key) ?? 0);
    const session = delta('session_run');
    console.log(`${clients} client(s): ${images} images in ${wall.toFixed(1)} s = ${(images / wall).toFixed(2)} images/s`);
    console.log(`  ${'stage'.padEnd(14)} ${'seconds'.padStart(8)} ${'ms/image'.padStart(9)} ${'% of wall'.padStart(10)}`);
    const line = (stage: string, seconds: number, share = true): void => console.log(`  ${stage.padEnd(14)} ${seconds.toFixed(3).padStart(8)} ${((seconds / images) * 1000).toFixed(2).padStart(9)} ${(share ? `${((seconds / wall) * 100).toFixed(1)}%` : '').padStart(10)}`);
    let loop = 0;
    for (const stage of LOOP) {
      loop += delta(`${stage}.sum`);
      line(stage, delta(`${stage}.sum`));
    }
    line('step loop', loop);
    line('session.run', session);
    for (const stage of BATCH) line(stage, delta(`${stage}.sum`));
    line('  encode_image', delta('encode_image.sum'));
    for (const stage of API) line(stage, delta(`${stage}.sum`), false);
    console.log(`  the worker: ${((session / wall) * 100).toFixed(1)}% of the wall time inside session.run, ${(((wall - session) / wall) * 100).toFixed(1)}% outside it (the step loop's own work ${(((loop - session) / wall) * 100).toFixed(1)}%, the rest waiting for work)\n`);
  }
  console.log('API stages overlap across concurrent requests: compare them per image, not with the wall time.');
} finally {
  await e.stop();
  rmSync(dir, { recursive: true, force: true });
}
