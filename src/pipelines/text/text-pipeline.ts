// A decoder-only language model on ONNX Runtime with a KV cache, in the layouts optimum and
// transformers.js write (`onnx/model.onnx` or a merged decoder with `use_cache_branch`;
// `past_key_values.{i}.key/value` in, `present.{i}.key/value` out; `position_ids` optional;
// heads and head size read from the graph, so multi-head and grouped-query attention alike).
//
// It exposes the step API the scheduling layer drives: `begin` prefills newcomers, `step` runs
// ONE decoder call over every active sequence (their caches left-padded to a common length, the
// padding masked out by the attention mask, each at its own position), `finish` returns the text.
// The batch's cache is kept between steps and rebuilt only when its membership changes.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { EaselError } from '../../errors/easel-error.js';
import { floatTensor, fromTypedArray, makeTensor, OnnxSession, tensorToFloat32, type SessionOptions, type Tensor } from '../../runtime/onnx-runtime.js';
import { chooseToken, processLogits, SequenceRandom, type SamplingParams, type TokenChoice } from './sampling.js';
import { TextTokenizer } from './text-tokenizer.js';

export interface TextGenerationRequest {
  readonly promptTokens: readonly number[];
  readonly maxNewTokens: number;
  readonly sampling: SamplingParams;
  readonly seed: number;
  /** Generation ends at any of these tokens (not included in the text). */
  readonly stopTokenIds: readonly number[];
  /** Generation ends where the text contains any of these (the text stops before it). */
  readonly stop: readonly string[];
}

export type FinishReason = 'stop' | 'length';

export interface TextOutput {
  readonly text: string;
  readonly tokens: readonly number[];
  readonly promptTokens: number;
  readonly finishReason: FinishReason;
  readonly choices: readonly TokenChoice[];
}

/** One sequence's state between steps. */
export interface Sequence {
  readonly request: TextGenerationRequest;
  readonly random: SequenceRandom;
  /** Prompt then generated tokens: the cache covers all but the last. */
  readonly tokens: number[];
  readonly generated: number[];
  readonly choices: TokenChoice[];
  readonly seen: Map<number, number>;
  readonly counts: Map<number, number>;
  /** Text of the generated tokens so far (cut at a stop string when one appeared). */
  text: string;
  finishReason: FinishReason | undefined;
  /** This sequence's own cache when it is not in the batch cache: per layer [heads, pastLength, headDim]. */
  own: { keys: Float32Array[]; values: Float32Array[] } | undefined;
  pastLength: number;
}

export interface TextModelInfo {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly eosTokenIds: readonly number[];
  readonly positionIds: boolean;
  readonly useCacheBranch: boolean;
  readonly cacheType: string;
}

interface BatchCache {
  members: Sequence[];
  keys: Float32Array[];
  values: Float32Array[];
  length: number;
}

const MODEL_FILES = ['onnx/decoder_model_merged.onnx', 'onnx/model.onnx', 'decoder_model_merged.onnx', 'model.onnx'];

export function findTextModel(dir: string): string | undefined {
  return MODEL_FILES.map((f) => path.join(dir, f)).find((f) => existsSync(f));
}

export class TextPipeline {
  #batch: BatchCache | undefined;

  private constructor(
    private readonly session: OnnxSession,
    readonly tokenizer: TextTokenizer,
    readonly info: TextModelInfo,
  ) {}

  static async load(dir: string, options: SessionOptions): Promise<TextPipeline> {
    const file = findTextModel(dir);
    if (!file) throw new EaselError('EASEL_MODEL_INVALID', `no decoder graph in the model directory; looked for ${MODEL_FILES.join(', ')}`);
    const session = await OnnxSession.create(file, options);
    const config = readJson(path.join(dir, 'config.json')) ?? {};
    const generation = readJson(path.join(dir, 'generation_config.json')) ?? {};
    const inputs = new Map(session.inputs.map((i) => [i.name, i]));
    const layers = session.inputs.filter((i) => /^past_key_values\.\d+\.key$/.test(i.name)).length;
    const past = inputs.get('past_key_values.0.key');
    if (layers === 0 || !past || !inputs.has('input_ids') || !inputs.has('attention_mask')) {
      throw new EaselError('EASEL_MODEL_INVALID', 'the decoder graph must take input_ids, attention_mask and past_key_values.{i}.key/value (an optimum/transformers.js export with past)');
    }
    const heads = Number(past.shape[1]);
    const headDim = Number(past.shape[3]);
    const logits = session.outputs.find((o) => o.name === 'logits');
    const vocabSize = Number(logits?.shape[2]) || num(config, 'vocab_size');
    if (!Number.isInteger(heads) || !Number.isInteger(headDim) || !Number.isInteger(vocabSize)) {
      throw new EaselError('EASEL_MODEL_INVALID', 'could not read the number of key/value heads, the head size or the vocabulary size from the graph and config.json');
    }
    const eos = generation.eos_token_id ?? config.eos_token_id;
    const info: TextModelInfo = {
      layers, kvHeads: heads, headDim, vocabSize,
      contextLength: num(config, 'max_position_embeddings') || num(config, 'n_positions') || num(generation, 'max_length') || 2048,
      eosTokenIds: (Array.isArray(eos) ? eos : eos === undefined ? [] : [eos]).map(Number),
      positionIds: inputs.has('position_ids'),
      useCacheBranch: inputs.has('use_cache_branch'),
      cacheType: past.type,
    };
    return new TextPipeline(session, TextTokenizer.load(dir), info);
  }

  /** Prefills the newcomers' prompts in one call (left-padded, masked) and chooses each one's first token. */
  async begin(requests: readonly TextGenerationRequest[]): Promise<Sequence[]> {
    if (requests.length === 0) return [];
    const { layers, kvHeads: H, headDim: D, vocabSize: V } = this.info;
    const B = requests.length;
    const T = Math.max(...requests.map((r) => r.promptTokens.length));
    const ids = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * T);
    const positions = new BigInt64Array(B * T);
    for (const [b, r] of requests.entries()) {
      const pad = T - r.promptTokens.length;
      for (const [i, token] of r.promptTokens.entries()) {
        ids[b * T + pad + i] = BigInt(token);
        mask[b * T + pad + i] = 1n;
        positions[b * T + pad + i] = BigInt(i);
      }
    }
    const feeds: Record<string, Tensor> = {
      input_ids: fromTypedArray('int64', ids, [B, T]),
      attention_mask: fromTypedArray('int64', mask, [B, T]),
    };
    if (this.info.positionIds) feeds.position_ids = fromTypedArray('int64', positions, [B, T]);
    if (this.info.useCacheBranch) feeds.use_cache_branch = makeTensor('bool', [0], [1]);
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_values.${l}.key`] = floatTensor(this.info.cacheType, new Float32Array(0), [B, H, 0, D]);
      feeds[`past_key_values.${l}.value`] = floatTensor(this.info.cacheType, new Float32Array(0), [B, H, 0, D]);
    }
    const out = await this.session.run(feeds);
    const logits = tensorToFloat32(out.logits!);
    const presents = (kind: 'key' | 'value'): Float32Array[] => Array.from({ length: layers }, (_, l) => tensorToFloat32(out[`present.${l}.${kind}`]!));
    const batch: BatchCache = { members: [], keys: presents('key'), values: presents('value'), length: T };
    return requests.map((request, b) => {
      const seq: Sequence = {
        request, random: new SequenceRandom(request.seed), tokens: [...request.promptTokens], generated: [], choices: [],
        seen: countTokens(request.promptTokens), counts: new Map(), text: '', finishReason: undefined, own: undefined, pastLength: request.promptTokens.length,
      };
      batch.members.push(seq);
      // Its own cache: its row of the presents, less the padding on the left.
      seq.own = this.#extract(batch, b);
      this.#accept(seq, logits.slice((b * T + T - 1) * V, (b * T + T) * V));
      return seq;
    });
  }

  /** One decoder call over every unfinished sequence: each gets its next token. */
  async step(states: readonly Sequence[]): Promise<void> {
    const active = states.filter((s) => !this.isFinished(s));
    if (active.length === 0) return;
    const batch = this.#batchFor(active);
    const B = active.length;
    const L = batch.length;
    const { layers, kvHeads: H, headDim: D } = this.info;
    const ids = new BigInt64Array(B);
    const mask = new BigInt64Array(B * (L + 1));
    const positions = new BigInt64Array(B);
    for (const [b, s] of active.entries()) {
      ids[b] = BigInt(s.tokens[s.tokens.length - 1]!);
      // Left padding: the first L - pastLength positions of the row are not this sequence's.
      for (let t = L - s.pastLength; t <= L; t++) mask[b * (L + 1) + t] = 1n;
      positions[b] = BigInt(s.pastLength);
    }
    const feeds: Record<string, Tensor> = {
      input_ids: fromTypedArray('int64', ids, [B, 1]),
      attention_mask: fromTypedArray('int64', mask, [B, L + 1]),
    };
    if (this.info.positionIds) feeds.position_ids = fromTypedArray('int64', positions, [B, 1]);
    if (this.info.useCacheBranch) feeds.use_cache_branch = makeTensor('bool', [1], [1]);
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_values.${l}.key`] = floatTensor(this.info.cacheType, batch.keys[l]!, [B, H, L, D]);
      feeds[`past_key_values.${l}.value`] = floatTensor(this.info.cacheType, batch.values[l]!, [B, H, L, D]);
    }
    const out = await this.session.run(feeds);
    const logits = tensorToFloat32(out.logits!);
    const V = this.info.vocabSize;
    // The presents are the next step's cache as they are: the same members, one position longer.
    this.#batch = {
      members: active,
      keys: Array.from({ length: layers }, (_, l) => tensorToFloat32(out[`present.${l}.key`]!)),
      values: Array.from({ length: layers }, (_, l) => tensorToFloat32(out[`present.${l}.value`]!)),
      length: L + 1,
    };
    for (const [b, s] of active.entries()) {
      s.pastLength += 1;
      this.#accept(s, logits.slice(b * V, (b + 1) * V));
    }
  }

  /** Bytes of KV cache one position of one sequence takes (keys and values of every layer, float32). */
  cacheBytesPerPosition(): number {
    return this.info.layers * 2 * this.info.kvHeads * this.info.headDim * 4;
  }

  /** Bytes of the batch's KV cache (keys and values of every layer), as float32. */
  cacheBytes(): number {
    const b = this.#batch;
    return b ? b.keys.reduce((n, k) => n + k.byteLength, 0) * 2 : 0;
  }

  isFinished(s: Sequence): boolean {
    return s.finishReason !== undefined;
  }

  async finish(states: readonly Sequence[]): Promise<TextOutput[]> {
    for (const s of states) s.own = undefined;
    return states.map((s) => ({ text: s.text, tokens: [...s.generated], promptTokens: s.request.promptTokens.length, finishReason: s.finishReason ?? 'length', choices: [...s.choices] }));
  }

  /**
   * The text a stream can send now: the generated text so far, less what may still turn into a
   * stop string or is an incomplete character.
   */
  stableText(s: Sequence): string {
    if (s.finishReason !== undefined) return s.text;
    let end = s.text.length;
    while (end > 0 && s.text[end - 1] === '\uFFFD') end--;
    for (const stop of s.request.stop) {
      for (let k = Math.min(stop.length - 1, end); k > 0; k--) {
        if (s.text.slice(end - k, end) === stop.slice(0, k)) {
          end -= k;
          break;
        }
      }
    }
    return s.text.slice(0, end);
  }

  async release(): Promise<void> {
    this.#batch = undefined;
    await this.session.release();
  }

  /** Chooses a sequence's next token from its logits and applies the ways a generation ends. */
  #accept(s: Sequence, logits: Float32Array): void {
    const p = s.request.sampling;
    processLogits(logits, p, s.seen, s.counts);
    const choice = chooseToken(logits, p, s.random);
    const token = choice.token;
    if (s.request.stopTokenIds.includes(token) || this.info.eosTokenIds.includes(token)) {
      s.finishReason = 'stop';
      return;
    }
    s.tokens.push(token);
    s.generated.push(token);
    s.choices.push(choice);
    s.seen.set(token, (s.seen.get(token) ?? 0) + 1);
    s.counts.set(token, (s.counts.get(token) ?? 0) + 1);
    s.text = this.tokenizer.decode(s.generated);
    for (const stop of s.request.stop) {
      const at = s.text.indexOf(stop);
      if (at >= 0) {
        s.text = s.text.slice(0, at);
        s.finishReason = 'stop';
        return;
      }
    }
    if (s.generated.length >= s.request.maxNewTokens || s.tokens.length >= this.info.contextLength) s.finishReason = 'length';
  }

  /** The batch cache for exactly these members, in this order: the last step's, or rebuilt. */
  #batchFor(members: Sequence[]): BatchCache {
    const current = this.#batch;
    if (current && current.members.length === members.length && current.members.every((m, i) => m === members[i])) return current;
    // Membership changed: every member's own cache, left-padded to the longest.
    for (const [row, m] of (current?.members ?? []).entries()) if (m.own === undefined && members.includes(m)) m.own = this.#extract(current!, row);
    const { layers, kvHeads: H, headDim: D } = this.info;
    const L = Math.max(...members.map((m) => m.pastLength));
    const B = members.length;
    const keys = Array.from({ length: layers }, () => new Float32Array(B * H * L * D));
    const values = Array.from({ length: layers }, () => new Float32Array(B * H * L * D));
    for (const [b, m] of members.entries()) {
      const own = m.own!;
      const pad = L - m.pastLength;
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < H; h++) {
          const from = h * m.pastLength * D;
          const to = ((b * H + h) * L + pad) * D;
          keys[l]!.set(own.keys[l]!.subarray(from, from + m.pastLength * D), to);
          values[l]!.set(own.values[l]!.subarray(from, from + m.pastLength * D), to);
        }
      }
      // Its cache now lives in the batch; the next rebuild takes it from there.
      m.own = undefined;
    }
    const batch = { members, keys, values, length: L };
    this.#batch = batch;
    return batch;
  }

  /** One row's cache out of a batch cache, without its padding. */
  #extract(batch: BatchCache, row: number): { keys: Float32Array[]; values: Float32Array[] } {
    const m = batch.members[row]!;
    const { kvHeads: H, headDim: D } = this.info;
    const L = batch.length;
    const pad = L - m.pastLength;
    const take = (arrays: Float32Array[]): Float32Array[] =>
      arrays.map((a) => {
        const out = new Float32Array(H * m.pastLength * D);
        for (let h = 0; h < H; h++) out.set(a.subarray(((row * H + h) * L + pad) * D, ((row * H + h) * L + L) * D), h * m.pastLength * D);
        return out;
      });
    return { keys: take(batch.keys), values: take(batch.values) };
  }

  /** Runs a prompt alone with an empty cache: its cache and the logits of its last position. */
  async #prefill(prompt: readonly number[]): Promise<{ keys: Float32Array[]; values: Float32Array[]; logits: Float32Array }> {
    const T = prompt.length;
    const { layers, kvHeads: H, headDim: D, vocabSize: V } = this.info;
    const feeds: Record<string, Tensor> = {
      input_ids: fromTypedArray('int64', BigInt64Array.from(prompt, BigInt), [1, T]),
      attention_mask: fromTypedArray('int64', new BigInt64Array(T).fill(1n), [1, T]),
    };
    if (this.info.positionIds) feeds.position_ids = fromTypedArray('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [1, T]);
    if (this.info.useCacheBranch) feeds.use_cache_branch = makeTensor('bool', [0], [1]);
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_values.${l}.key`] = floatTensor(this.info.cacheType, new Float32Array(0), [1, H, 0, D]);
      feeds[`past_key_values.${l}.value`] = floatTensor(this.info.cacheType, new Float32Array(0), [1, H, 0, D]);
    }
    const out = await this.session.run(feeds);
    const logits = tensorToFloat32(out.logits!);
    return {
      keys: Array.from({ length: layers }, (_, l) => tensorToFloat32(out[`present.${l}.key`]!)),
      values: Array.from({ length: layers }, (_, l) => tensorToFloat32(out[`present.${l}.value`]!)),
      logits: logits.slice((T - 1) * V, T * V),
    };
  }

  /** Logits of every position of `tokens`, run whole with no cache: the reference for tests. */
  async logitsWithoutCache(tokens: readonly number[]): Promise<Float32Array> {
    return (await this.#prefill(tokens)).logits;
  }
}

function countTokens(tokens: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const t of tokens) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

function readJson(file: string): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
}

function num(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  return typeof v === 'number' ? v : 0;
}
