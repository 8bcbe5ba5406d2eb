// bench/throughput: images/s of each bundled diffusion model (tiny-sd, then tiny-sdxl) served by
// Easel against ONNX Runtime alone on the same work, and where the served image's time goes. First the ceiling: for each client count c, batches of
// min(c, 8) images (Easel's step batch) made together in this process — text encoder, UNet loop,
// VAE — for a while; the ceiling is images ÷ the time inside session.run alone (the pipeline's own
// JS is not counted). Then the server: closed-loop clients (1, 4, 8) each make PNGs of 20 steps;
// served ÷ ceiling is the figure. Ceiling and server take turns, PAIRS times per client count
// (the other idle meanwhile), and the median of the pairs' ratios is printed: on a shared, noisy
// machine neighbours drift far less than two separate runs. From easel_stage_seconds and easel_session_run_seconds_total,
// read before and after each load, each stage's time is set against the
// run's wall time: the worker's step loop (text_encode, denoise, vae_decode: one after another),
// the handler's per-batch stages (preprocess, postprocess with encode_image: beside the loop, the
// PNG encoder on libuv's threads) and the API process's stages (overlapping across requests: per
// image). The line that matters is the share of the one worker's wall time spent outside ONNX
// Runtime's session.run(). Not a test: it asserts nothing.
//   npm run bench:throughput [-- --seconds 5 --pairs 3 --clients 1,4,8 --steps 20 --models tiny-sd,tiny-sdxl]
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DiffusionPipeline, isFinished } from '../../src/pipelines/diffusion/diffusion-pipeline.js';
import { readModelSpec } from '../../src/models/model-spec.js';
import { ROOT, serveModel, type EaselProcess } from '../../test/helpers/easel-process.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, pairs: { type: 'string', default: '3' }, clients: { type: 'string', default: '1,4,8' }, steps: { type: 'string', default: '20' }, models: { type: 'string', default: 'tiny-sd,tiny-sdxl' } } });
const PAIRS = Number(values.pairs);
const SECONDS = Number(values.seconds);
const STEPS = Number(values.steps);

/** The step loop's calls (one after another), the handler's per-batch stages (beside the loop), the API process's. */
const LOOP = ['text_encode', 'denoise', 'vae_decode'];
const BATCH = ['preprocess', 'postprocess'];
const API = ['admission', 'queue_wait', 'ipc', 'http_write'];

async function scrape(e: EaselProcess, model: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${e.metrics}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^easel_stage_seconds_(sum|count)\{model="([^"]+)",stage="([^"]+)"\} (\S+)$/gm)) if (m[2] === model) out.set(`${m[3]}.${m[1]}`, Number(m[4]));
  const session = [...text.matchAll(/^easel_session_run_seconds_total\{model="([^"]+)"\} (\S+)$/gm)].find((m) => m[1] === model);
  out.set('session_run', Number(session?.[2] ?? 0));
  return out;
}

async function closedLoop(e: EaselProcess, model: string, clients: number): Promise<{ images: number; wall: number }> {
  const t0 = performance.now();
  let images = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; performance.now() - t0 < SECONDS * 1000; i++) {
        const res = await fetch(`${e.inference}/predictions/${model}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a red circle on a blue background', num_inference_steps: STEPS, seed: c * 1000 + i }) });
        await res.arrayBuffer();
        if (res.ok) images++;
      }
    }),
  );
  return { images, wall: (performance.now() - t0) / 1000 };
}

/** Images/s of batches of `batch` images made together for SECONDS: counting only session.run, and the wall time. */
async function ceiling(pipeline: DiffusionPipeline, batch: number): Promise<{ ort: number; wall: number }> {
  const [t0, ort0] = [performance.now(), pipeline.sessionSeconds];
  let images = 0;
  for (let i = 0; performance.now() - t0 < SECONDS * 1000; i++) {
    const states = await pipeline.begin(Array.from({ length: batch }, (_, j) => ({ prompt: 'a red circle on a blue background', negativePrompt: '', steps: STEPS, guidanceScale: 7.5, width: 64, height: 64, seed: i * 100 + j, scheduler: 'ddim' })));
    while (!states.every(isFinished)) await pipeline.denoise(states);
    await pipeline.finish(states);
    images += batch;
  }
  return { ort: images / (pipeline.sessionSeconds - ort0), wall: images / ((performance.now() - t0) / 1000) };
}

const CLIENTS = values.clients.split(',').map(Number);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const summaries: string[] = [];
for (const model of values.models.split(',')) summaries.push(...(await run(model)));
console.log(`  ${'model'.padEnd(10)} ${'clients'.padStart(7)} ${'served'.padStart(8)} ${'ceiling'.padStart(8)} ${'pipeline'.padStart(9)} ${'÷'.padStart(8)}   (images/s, medians; ÷: served ÷ ceiling, median of the pairs)`);
for (const line of summaries) console.log(line);

/** One model served alone: its pairs per client count, the stage reports, and its summary lines. */
async function run(model: string): Promise<string[]> {
  const modelDir = path.join(ROOT, 'models', model);
  const pipeline = await DiffusionPipeline.load(modelDir, readModelSpec(modelDir).runtime);
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-bench-throughput-'));
  cpSync(modelDir, path.join(dir, model), { recursive: true });
  const e = await serveModel(model, path.join(dir, model));
  const summary: string[] = [];
  try {
    await ceiling(pipeline, 1); // warm-up
    await closedLoop(e, model, 1);
    console.log(`\nbench/throughput — ${model}, ${STEPS} steps, 64x64, PNG, one worker, CPU; ceiling and server in turns, ${PAIRS} pairs of ${SECONDS} s per client count\n`);
    for (const clients of CLIENTS) {
      const rows: { ceiling: number; pipeline: number; served: number; images: number; wall: number; before: Map<string, number>; after: Map<string, number> }[] = [];
      for (let p = 0; p < PAIRS; p++) {
        const c = await ceiling(pipeline, Math.min(clients, 8));
        const before = await scrape(e, model);
        const { images, wall } = await closedLoop(e, model, clients);
        rows.push({ ceiling: c.ort, pipeline: c.wall, served: images / wall, images, wall, before, after: await scrape(e, model) });
      }
      summary.push(`  ${model.padEnd(10)} ${String(clients).padStart(7)} ${median(rows.map((x) => x.served)).toFixed(2).padStart(8)} ${median(rows.map((x) => x.ceiling)).toFixed(2).padStart(8)} ${median(rows.map((x) => x.pipeline)).toFixed(2).padStart(9)} ${median(rows.map((x) => x.served / x.ceiling)).toFixed(3).padStart(8)}`);
      // The stages of all the pairs' server runs together.
      const images = rows.reduce((n, x) => n + x.images, 0);
      const wall = rows.reduce((n, x) => n + x.wall, 0);
      const delta = (key: string): number => rows.reduce((n, x) => n + (x.after.get(key) ?? 0) - (x.before.get(key) ?? 0), 0);
      report(clients, images, wall, delta);
    }
    console.log('API stages overlap across concurrent requests: compare them per image, not with the wall time.\n');
  } finally {
    await e.stop();
    await pipeline.release();
    rmSync(dir, { recursive: true, force: true });
  }
  return summary;
}

function report(clients: number, images: number, wall: number, delta: (key: string) => number): void {
  const session = delta('session_run');
  console.log(`${clients} client(s): ${images} images in ${wall.toFixed(1)} s`);
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
