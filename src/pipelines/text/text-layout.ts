// What a transformers.js/optimum decoder's JSON configs say, read without loading a session: the
// pipeline and admission (in the API process) both read it here.
import path from 'node:path';
import { readJsonConfig } from '../json-config.js';

export interface TextLayout {
  /** Positions the model can attend over (prompt + generated tokens). */
  readonly contextLength: number;
  /** From config.json; undefined when it does not say. */
  readonly vocabSize: number | undefined;
  readonly eosTokenIds: readonly number[];
  /** generation_config.json's sampling defaults, by request field name (do_sample false → temperature 0). */
  readonly generationDefaults: Readonly<Record<string, unknown>>;
}

export function readTextLayout(dir: string): TextLayout {
  const config = readJsonConfig(path.join(dir, 'config.json'));
  const generation = readJsonConfig(path.join(dir, 'generation_config.json'));
  const n = (o: Record<string, unknown>, k: string): number | undefined => (typeof o[k] === 'number' ? o[k] : undefined);
  const eos = generation.eos_token_id ?? config.eos_token_id;
  const generationDefaults: Record<string, unknown> = {};
  for (const k of ['max_new_tokens', 'temperature', 'top_k', 'top_p', 'repetition_penalty']) if (generation[k] !== undefined) generationDefaults[k] = generation[k];
  // do_sample false means greedy unless a request asks otherwise.
  if (generation.do_sample === false) generationDefaults.temperature = 0;
  return {
    contextLength: n(config, 'max_position_embeddings') ?? n(config, 'n_positions') ?? n(generation, 'max_length') ?? 2048,
    vocabSize: n(config, 'vocab_size'),
    eosTokenIds: (Array.isArray(eos) ? eos : eos === undefined ? [] : [eos]).map(Number),
    generationDefaults,
  };
}
