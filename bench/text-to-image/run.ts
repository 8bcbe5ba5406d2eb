// bench/text-to-image: where the time of one image goes (20 steps, guidance 7.5, DDIM, 64x64),
// for each bundled diffusion model (tiny-sd, tiny-sdxl) in turn, split into tokenizer + text
// encoder(s) / UNet steps / VAE decode / PNG encoding, and the share of it spent outside ONNX
// Runtime's session.run (the pipeline's own cost).
//   npm run bench:text-to-image [-- --images 30 --steps 20 --threads 0 --provider cpu|cuda --models tiny-sd,tiny-sdxl]
//   (--model DIR: one model directory instead)
import path from 'node:path';
import { parseArgs } from 'node:util';
import { encodeImage } from '../../src/handlers/text-to-image-handler.js';
import { DiffusionPipeline, isFinished } from '../../src/pipelines/diffusion/diffusion-pipeline.js';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '30' },
    steps: { type: 'string', default: '20' },
    threads: { type: 'string', default: '0' },
    provider: { type: 'string', default: 'cpu' },
    models: { type: 'string', default: 'tiny-sd,tiny-sdxl' },
    model: { type: 'string' },
  },
});
const images = Number(values.images);
const steps = Number(values.steps);

if (values.provider !== 'cpu' && values.provider !== 'cuda') throw new Error(`--provider must be cpu or cuda, got ${values.provider}`);
const provider = values.provider;
const dirs = values.model ? [values.model] : values.models.split(',').map((name) => path.resolve(import.meta.dirname, '../../models', name));
for (const dir of dirs) await bench(dir);

type Stage = 'text' | 'unet' | 'vae' | 'encode' | 'total' | 'ort';
async function bench(dir: string): Promise<void> {
  const pipeline = await DiffusionPipeline.load(dir, {
    executionProvider: provider,
    graphOptimizationLevel: 'all',
    intraOpThreads: Number(values.threads),
    interOpThreads: 0,
  });
  const samples: Record<Stage, number[]> = { text: [], unet: [], vae: [], encode: [], total: [], ort: [] };

  async function one(seed: number, record: boolean): Promise<void> {
    const ort0 = pipeline.sessionSeconds;
    const t0 = performance.now();
    const states = await pipeline.begin([{ prompt: 'a red circle on a blue background', negativePrompt: '', steps, guidanceScale: 7.5, width: 64, height: 64, seed, scheduler: 'ddim' }]);
    const t1 = performance.now();
    while (!states.every(isFinished)) await pipeline.denoise(states);
    const t2 = performance.now();
    const [image] = await pipeline.finish(states);
    const t3 = performance.now();
    await encodeImage(image!, 'png');
    const t4 = performance.now();
    if (!record) return;
    samples.text.push(t1 - t0);
    samples.unet.push(t2 - t1);
    samples.vae.push(t3 - t2);
    samples.encode.push(t4 - t3);
    samples.total.push(t4 - t0);
    samples.ort.push((pipeline.sessionSeconds - ort0) * 1000);
  }

  for (let i = 0; i < 3; i += 1) await one(i, false);
  for (let i = 0; i < images; i += 1) await one(100 + i, true);

  const total = median(samples.total);
  console.log(`\n${path.basename(dir)}, ${steps} steps, guidance 7.5 (UNet batch 2), DDIM, 64x64, execution provider ${provider}; ${images} images after 3 warm-ups; median ms per image`);
  console.log('stage                        ms   share');
  const rows: [string, Stage][] = [
    ['tokenizer + text encoders', 'text'],
    [`UNet steps (${steps})`, 'unet'],
    ['VAE decode', 'vae'],
    ['PNG encoding (sharp)', 'encode'],
  ];
  for (const [label, stage] of rows) {
    const ms = median(samples[stage]);
    console.log(`${label.padEnd(26)} ${ms.toFixed(2).padStart(7)}  ${((100 * ms) / total).toFixed(1).padStart(5)}%`);
  }
  console.log(`${'total'.padEnd(26)} ${total.toFixed(2).padStart(7)}`);
  console.log(`per UNet step              ${(median(samples.unet) / steps).toFixed(2).padStart(7)}`);
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const outside = 1 - sum(samples.ort) / sum(samples.total);
  console.log(`time inside session.run: ${sum(samples.ort).toFixed(0)} of ${sum(samples.total).toFixed(0)} ms; outside: ${(100 * outside).toFixed(1)}% (target < 5%)`);
  await pipeline.release();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}
