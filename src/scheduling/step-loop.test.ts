// The step loop's active set, over the diffusion step API on the bundled tiny-sd: at most
// maxBatchSize images of one resolution step together; the rest wait for room, and what waits
// still gets its own image.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffusionSteps } from '../handlers/text-to-image-handler.js';
import { DiffusionPipeline, stepsDone, type GenerationRequest, type RgbImage } from '../pipelines/diffusion/diffusion-pipeline.js';
import type { SessionOptions } from '../runtime/onnx-runtime.js';
import type { StepModel, TurnReport } from '../handlers/handler.js';
import { StepLoop } from './step-loop.js';

const TINY_SD = path.resolve(import.meta.dirname, '../../models/tiny-sd');
const CPU: SessionOptions = { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 1, interOpThreads: 1 };

function request(seed: number, size = 64): GenerationRequest {
  return { prompt: 'a red circle on a blue background', negativePrompt: '', steps: 3, guidanceScale: 7.5, width: size, height: size, seed, scheduler: 'ddim' };
}

describe('StepLoop', () => {
  let pipeline: DiffusionPipeline;
  beforeAll(async () => {
    pipeline = await DiffusionPipeline.load(TINY_SD, CPU);
  });
  afterAll(() => pipeline.release());

  it('steps at most maxBatchSize images per resolution; later requests of that resolution wait, others do not', async () => {
    const turns: number[] = [];
    const rests: TurnReport[] = [];
    const loop = new StepLoop(diffusionSteps(pipeline), { maxBatchSize: 2, onTurn: (turn) => void (turn.rest ? rests.push(turn) : turns.push(turn.states)) });
    const log: string[] = [];
    const runs: [string, GenerationRequest[]][] = [
      ['a', [request(1)]],
      ['b', [request(2)]],
      ['c', [request(3)]],
      ['big', [request(4, 128)]],
      // Larger than the cap on its own: it runs, alone at its resolution.
      ['wide', [request(5, 96), request(6, 96), request(7, 96)]],
    ];
    const together = await Promise.all(runs.map(([name, requests]) => loop.run(requests, {
      onStep: (states) => void log.push(`${name}${stepsDone(states[0]!)}`),
      // Begun (prompts encoded), before the turn's step.
      onBegin: (states) => void log.push(`${name}+${stepsDone(states[0]!)}`),
    })));

    // a starts the loop alone; b (64²), big (128²) and wide (3 × 96²) join it at the next turn;
    // c (64²) waits until a leaves, then steps beside b, big and wide's last step, then alone.
    expect(turns).toEqual([1, 6, 6, 6, 1, 1]);
    // Once idle, the loop says so: the gauges of active work return to rest.
    expect(rests).toEqual([{ states: 0, seconds: 0, memoryBytes: undefined, rest: true }]);
    expect(log.join(' ')).toBe('a+0 a1 b+0 big+0 wide+0 a2 b1 big1 wide1 a3 b2 big2 wide2 c+0 b3 big3 wide3 c1 c2 c3');
    // Waiting changed nothing: every image is the one its request gets alone.
    for (const [i, [name, requests]] of runs.entries()) {
      const alone = await new StepLoop(diffusionSteps(pipeline)).run(requests);
      expect(sameImages(together[i]!, alone), name).toBe(true);
    }
  });
});

function sameImages(a: RgbImage[], b: RgbImage[]): boolean {
  return a.length === b.length && a.every((im, k) => Buffer.from(im.data).equals(Buffer.from(b[k]!.data)));
}

describe('StepLoop memory budget', () => {
  // A model whose runs take `steps` steps and need `memory` bytes each; it records who began when.
  interface Run { name: string; steps: number; memory: number }
  const began: string[][] = [];
  const counting: StepModel<Run, { run: Run; done: number }, string> = {
    begin: async (runs) => {
      began.push(runs.map((r) => r.name));
      return runs.map((run) => ({ run, done: 0 }));
    },
    step: async (states) => {
      for (const s of states) if (s.done < s.run.steps) s.done++;
    },
    isFinished: (s) => s.done >= s.run.steps,
    finish: async (states) => states.map((s) => s.run.name),
    group: () => '',
    progress: (s) => ({ step: s.done, total: s.run.steps }),
    length: (r) => r.steps,
    memoryFor: (r) => r.memory,
  };

  it('admits runs while their memory fits the budget, in arrival order; one too large alone still runs', async () => {
    began.length = 0;
    const loop = new StepLoop(counting, { maxMemoryBytes: 10 });
    const runs: Run[] = [
      { name: 'a', steps: 3, memory: 6 },
      { name: 'b', steps: 2, memory: 6 },
      { name: 'c', steps: 1, memory: 3 },
      { name: 'huge', steps: 1, memory: 50 },
    ];
    const out = await Promise.all(runs.map((r) => loop.run([r])));
    expect(out).toEqual([['a'], ['b'], ['c'], ['huge']]);
    // a alone; b (6 + 6 > 10) waits and c may not pass it; then b and c together; huge alone last.
    expect(began).toEqual([['a'], ['b', 'c'], ['huge']]);
  });
});
