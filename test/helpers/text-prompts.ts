// What the text pipeline tests share: CPU session options, greedy sampling, demo prompts (stories
// and ChatML chats of tiny-lm's and tiny-llama's training text), and a runner that drives the
// step API the way the step loop does.
import type { SessionOptions } from '../../src/runtime/onnx-runtime.js';
import type { SamplingParams } from '../../src/pipelines/text/sampling.js';
import type { Sequence, TextGenerationRequest, TextPipeline } from '../../src/pipelines/text/text-pipeline.js';

export const CPU: SessionOptions = { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 1, interOpThreads: 1 };
export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: new Map(), topLogprobs: 0, logprobs: false };

/** Ten prompts of mixed lengths, three of them chats. */
export const PROMPTS = [
  'Once upon a time, there was a little girl named Lily.',
  'Tom had a red ball.',
  '<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n',
  'The cat',
  'One day, Ben went to the park with his mom. They saw a big dog and',
  '<|im_start|>user\nWhat does a cat say?<|im_end|>\n<|im_start|>assistant\n',
  'Mia liked to play',
  'It was a sunny day.',
  'The little bird',
  'Lily and Tom',
];

/** Runs sequences the way the step loop does: begin together, step together until all are done; their tokens. */
export async function generate(pipeline: TextPipeline, requests: TextGenerationRequest[]): Promise<number[][]> {
  const states: Sequence[] = await pipeline.begin(requests);
  while (states.some((s) => !pipeline.isFinished(s))) await pipeline.step(states);
  return (await pipeline.finish(states)).map((o) => [...o.tokens]);
}
