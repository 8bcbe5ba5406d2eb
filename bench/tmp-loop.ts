import { DiffusionPipeline } from '../src/pipelines/diffusion/diffusion-pipeline.js';
import { StepLoop } from '../src/pipelines/diffusion/step-loop.js';
const p = await DiffusionPipeline.load('models/tiny-sd', { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 0, interOpThreads: 0 });
const reqs = Array.from({ length: 24 }, (_, i) => ({ prompt: 'a red circle on a blue background', negativePrompt: '', steps: [4, 8, 20, 50][i % 4]!, guidanceScale: 7.5, width: [64, 128][Math.floor(i / 4) % 2]!, height: [64, 128][Math.floor(i / 4) % 2]!, seed: i, scheduler: 'ddim' as const }));
await new StepLoop(p).run([reqs[0]!]);
for (const round of [1, 2]) {
  let t = performance.now();
  for (const r of reqs) await new StepLoop(p).run([r]);
  const seq = performance.now() - t;
  t = performance.now();
  const loop = new StepLoop(p, { maxBatchSize: 8 });
  let turns = 0, images = 0;
  const l2 = new StepLoop(p, { maxBatchSize: Number(process.env.MB ?? 8), onTurn: (n) => { turns++; images += n; } });
  await Promise.all(reqs.map((r) => l2.run([r])));
  const bat = performance.now() - t;
  console.log(`round ${round}: one at a time ${(seq / 1000).toFixed(2)} s, step loop ${(bat / 1000).toFixed(2)} s (${(seq / bat).toFixed(2)}x), ${(images / turns).toFixed(2)} images/turn`);
  void loop;
}
