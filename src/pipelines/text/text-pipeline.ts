// A decoder-only language model on ONNX Runtime with a KV cache, in the layouts optimum and
// transformers.js write (`onnx/model.onnx` or a merged decoder with `use_cache_branch`;
// `past_key_values.{i}.key/value` in, `present.{i}.key/value` out; `position_ids` optional;
// heads and head size read from the graph, so multi-head and grouped-query attention alike).
//
// It exposes the step API the scheduling layer drives: `begin` prefills newcomers, `step` runs
// ONE decoder call over every active sequence (their caches left-padded to a common length, the
// padding masked out by the attention mask, each at its own position), `finish` returns the text.
// The batch's cache is kept between steps. When a sequence leaves, the last row moves into its
// place; newcomers are appended; the rows are re-padded only when the padding grows wasteful.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { EaselError } from '../../errors/easel-error.js';
import { floatTensor, fromTypedArray, makeTensor, OnnxSession, tensorToFloat32, type SessionOptions, type Tensor } from '../../runtime/onnx-runtime.js';
import { chooseToken, processLogits, SequenceRandom, type SamplingParams, type TokenChoice } from './sampling.js';
import { readTextLayout } from './text-layout.js';
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
  /** Incremental detokenization (as vLLM's): `text` up to the last complete character, and the window of tokens it was decoded in. */
  committed: string;
  prefixOffset: number;
  readOffset: number;
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

interface KvArrays {
  keys: Float32Array[];
  values: Float32Array[];
}

interface BatchCache extends KvArrays {
  members: Sequence[];
  length: number;
}

/** Positions of padding beyond what the longest member needs before the batch cache is re-padded. */
const REPAD_SLACK = 32;

/** Prompt tokens decoded before the first generated one, so that its text reads as it does after them. */
const DETOKENIZE_CONTEXT = 4;

const MODEL_FILES = ['onnx/decoder_model_merged.onnx', 'onnx/model.onnx', 'decoder_model_merged.onnx', 'model.onnx'];

export function findTextModel(dir: string): string | undefined {
  return MODEL_FILES.map((f) => path.join(dir, f)).find((f) => existsSync(f));
}

export class TextPipeline {
  #batch: BatchCache | undefined;
  /**
   * The other of the two buffers (per layer, keys and values) that a float32 batch cache lives in
   * by turns: each step's presents are written into it, and the step's past becomes the spare.
   * Nothing is allocated per step, so the garbage collector is not driven by the cache.
   */
  #spare: KvArrays | undefined;
  readonly #buffers = new WeakSet<ArrayBufferLike>();

  private constructor(
    private readonly session: OnnxSession,
    readonly tokenizer: TextTokenizer,
    readonly info: TextModelInfo,
  ) {}

  static async load(dir: string, options: SessionOptions): Promise<TextPipeline> {
    const file = findTextModel(dir);
    if (!file) throw new EaselError('EASEL_MODEL_INVALID', `no decoder graph in the model directory; looked for ${MODEL_FILES.join(', ')}`);
    const session = await OnnxSession.create(file, options);
    const layout = readTextLayout(dir);
    const inputs = new Map(session.inputs.map((i) => [i.name, i]));
    const layers = session.inputs.filter((i) => /^past_key_values\.\d+\.key$/.test(i.name)).length;
    const past = inputs.get('past_key_values.0.key');
    if (layers === 0 || !past || !inputs.has('input_ids') || !inputs.has('attention_mask')) {
      throw new EaselError('EASEL_MODEL_INVALID', 'the decoder graph must take input_ids, attention_mask and past_key_values.{i}.key/value (an optimum/transformers.js export with past)');
    }
    const heads = Number(past.shape[1]);
    const headDim = Number(past.shape[3]);
    const logits = session.outputs.find((o) => o.name === 'logits');
    const vocabSize = Number(logits?.shape[2]) || (layout.vocabSize ?? NaN);
    if (!Number.isInteger(heads) || !Number.isInteger(headDim) || !Number.isInteger(vocabSize)) {
      throw new EaselError('EASEL_MODEL_INVALID', 'could not read the number of key/value heads, the head size or the vocabulary size from the graph and config.json');
    }
    const info: TextModelInfo = {
      layers, kvHeads: heads, headDim, vocabSize,
      contextLength: layout.contextLength,
      eosTokenIds: layout.eosTokenIds,
      positionIds: inputs.has('position_ids'),
      useCacheBranch: inputs.has('use_cache_branch'),
      cacheType: past.type,
    };
    return new TextPipeline(session, TextTokenizer.load(dir), info);
  }

  /** Prefills the newcomers' prompts in one call (left-padded, masked) and chooses each one's first token. */
  async begin(requests: readonly TextGenerationRequest[]): Promise<Sequence[]> {
    if (requests.length === 0) return [];
    const V = this.info.vocabSize;
    const { out, T } = await this.#prefill(requests.map((r) => r.promptTokens));
    const batch: BatchCache = { members: [], keys: out.keys, values: out.values, length: T };
    return requests.map((request, b) => {
      const seq: Sequence = {
        request, random: new SequenceRandom(request.seed), tokens: [...request.promptTokens], generated: [], choices: [],
        seen: countTokens(request.promptTokens), counts: new Map(), text: '', finishReason: undefined, own: undefined, pastLength: request.promptTokens.length,
        committed: '', prefixOffset: Math.max(0, request.promptTokens.length - DETOKENIZE_CONTEXT), readOffset: request.promptTokens.length,
      };
      batch.members.push(seq);
      // Its own cache: its row of the presents, less the padding on the left.
      seq.own = this.#extract(batch, b);
      this.#accept(seq, out.logits.subarray((b * T + T - 1) * V, (b * T + T) * V));
      return seq;
    });
  }

  /** One decoder call over every unfinished sequence: each gets its next token. */
  async step(states: readonly Sequence[]): Promise<void> {
    const active = states.filter((s) => !this.isFinished(s));
    if (active.length === 0) return;
    const batch = this.#batchFor(active);
    // The rows' order is the batch cache's, not the caller's.
    const rows = batch.members;
    const B = rows.length;
    const L = batch.length;
    const ids = new BigInt64Array(B);
    const mask = new BigInt64Array(B * (L + 1));
    const positions = new BigInt64Array(B);
    for (const [b, s] of rows.entries()) {
      ids[b] = BigInt(s.tokens[s.tokens.length - 1]!);
      // Left padding: the first L - pastLength positions of the row are not this sequence's.
      for (let t = L - s.pastLength; t <= L; t++) mask[b * (L + 1) + t] = 1n;
      positions[b] = BigInt(s.pastLength);
    }
    const into = this.info.cacheType === 'float32' ? this.#takeSpare(B * this.info.kvHeads * (L + 1) * this.info.headDim) : undefined;
    const out = await this.#run(B, 1, ids, mask, positions, batch, into);
    if (into) this.#giveBack(batch);
    // The presents are the next step's cache as they are: the same members, one position longer.
    this.#batch = { members: rows, keys: out.keys, values: out.values, length: L + 1 };
    const V = this.info.vocabSize;
    for (const [b, s] of rows.entries()) {
      s.pastLength += 1;
      this.#accept(s, out.logits.subarray(b * V, (b + 1) * V));
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
    this.#spare = undefined;
    await this.session.release();
  }

  /** Chooses a sequence's next token from its logits (its own row of this call's output, changed in place) and applies the ways a generation ends. */
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
    const before = s.committed.length;
    this.#detokenize(s);
    for (const stop of s.request.stop) {
      const at = s.text.indexOf(stop, Math.max(0, before - stop.length + 1));
      if (at >= 0) {
        s.text = s.text.slice(0, at);
        s.finishReason = 'stop';
        return;
      }
    }
    if (s.generated.length >= s.request.maxNewTokens || s.tokens.length >= this.info.contextLength) s.finishReason = 'length';
  }

  /**
   * Appends the newest token's text: decoded together with the few tokens before it (a
   * SentencePiece decoder drops a word's leading space at the start of a decode, and a character
   * may span byte tokens), never the whole text again.
   */
  #detokenize(s: Sequence): void {
    const prefix = this.tokenizer.decode(s.tokens.slice(s.prefixOffset, s.readOffset));
    const tail = this.tokenizer.decode(s.tokens.slice(s.prefixOffset)).slice(prefix.length);
    s.text = s.committed + tail;
    // An incomplete character waits for the bytes that complete it.
    if (tail.endsWith('\uFFFD')) return;
    s.committed = s.text;
    s.prefixOffset = s.readOffset;
    s.readOffset = s.tokens.length;
  }

  /** The batch cache for exactly these members (in its own row order): the last step's, changed as little as it can be. */
  #batchFor(members: Sequence[]): BatchCache {
    const current = this.#batch;
    if (!current) return this.#rebuild(members, undefined);
    const wanted = new Set(members);
    const held = new Set(current.members);
    const leaving = current.members.filter((m) => !wanted.has(m));
    const joining = members.filter((m) => !held.has(m));
    if (leaving.length === 0 && joining.length === 0) return current;
    const longest = Math.max(...members.map((m) => m.pastLength));
    // Padding every row to a length that no member needs any more costs attention on each step.
    if (longest > current.length || current.length - longest > REPAD_SLACK) return this.#rebuild(members, current);
    const rowSize = this.info.kvHeads * current.length * this.info.headDim;
    const rows = [...current.members];
    for (const m of leaving) {
      // The last row takes the leaving one's place: one row copied, not the batch.
      const at = rows.indexOf(m);
      const last = rows.length - 1;
      if (at !== last) {
        for (const a of [...current.keys, ...current.values]) a.copyWithin(at * rowSize, last * rowSize, (last + 1) * rowSize);
        rows[at] = rows[last]!;
      }
      rows.pop();
    }
    const size = (rows.length + joining.length) * rowSize;
    let arrays: KvArrays = { keys: current.keys.map((a) => a.subarray(0, size)), values: current.values.map((a) => a.subarray(0, size)) };
    if (joining.length > 0) {
      // The rows that stay, as one block, into the spare buffers; newcomers after them.
      arrays = this.#takeSpare(size);
      for (const [l, a] of arrays.keys.entries()) a.set(current.keys[l]!.subarray(0, rows.length * rowSize));
      for (const [l, a] of arrays.values.entries()) a.set(current.values[l]!.subarray(0, rows.length * rowSize));
      this.#giveBack(current);
    }
    const batch: BatchCache = { members: rows, ...arrays, length: current.length };
    for (const m of joining) this.#place(batch, rows.push(m) - 1, m);
    this.#batch = batch;
    return batch;
  }

  /** Per-layer key and value arrays of `size` floats in the spare buffers (made larger when they are too small). */
  #takeSpare(size: number): KvArrays {
    const spare = this.#spare;
    this.#spare = undefined;
    const fit = (a: Float32Array | undefined): Float32Array => {
      if (a && a.length >= size) return a.subarray(0, size);
      // Room to grow a little before the next allocation.
      const fresh = new Float32Array(Math.ceil(size * 1.25));
      this.#buffers.add(fresh.buffer);
      return fresh.subarray(0, size);
    };
    return { keys: Array.from({ length: this.info.layers }, (_, l) => fit(spare?.keys[l])), values: Array.from({ length: this.info.layers }, (_, l) => fit(spare?.values[l])) };
  }

  /** A batch cache's buffers become the spare ones, when they are this pipeline's own (not ONNX Runtime's). */
  #giveBack(arrays: KvArrays): void {
    const whole = (a: Float32Array): Float32Array => new Float32Array(a.buffer, 0, a.buffer.byteLength / 4);
    if ([...arrays.keys, ...arrays.values].every((a) => this.#buffers.has(a.buffer))) this.#spare = { keys: arrays.keys.map(whole), values: arrays.values.map(whole) };
  }

  /** A batch cache for these members made afresh: each row padded on the left to the longest. */
  #rebuild(members: Sequence[], current: BatchCache | undefined): BatchCache {
    for (const [row, m] of (current?.members ?? []).entries()) if (m.own === undefined && members.includes(m)) m.own = this.#extract(current!, row);
    const L = Math.max(...members.map((m) => m.pastLength));
    // Padding is masked out: whatever the spare buffers held there is never attended to.
    const batch: BatchCache = { members, ...this.#takeSpare(members.length * this.info.kvHeads * L * this.info.headDim), length: L };
    if (current) this.#giveBack(current);
    for (const [row, m] of members.entries()) this.#place(batch, row, m);
    this.#batch = batch;
    return batch;
  }

  /** Writes a sequence's own cache into a row of the batch cache, padded on the left; the batch holds it from then on. */
  #place(batch: BatchCache, row: number, m: Sequence): void {
    const own = m.own!;
    const { kvHeads: H, headDim: D } = this.info;
    const L = batch.length;
    const pad = L - m.pastLength;
    for (let l = 0; l < this.info.layers; l++) {
      for (let h = 0; h < H; h++) {
        const from = h * m.pastLength * D;
        const to = ((row * H + h) * L + pad) * D;
        batch.keys[l]!.set(own.keys[l]!.subarray(from, from + m.pastLength * D), to);
        batch.values[l]!.set(own.values[l]!.subarray(from, from + m.pastLength * D), to);
      }
    }
    m.own = undefined;
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

  /** Prompts through the decoder with an empty cache, left-padded to the longest (T) and masked. */
  #prefill(prompts: readonly (readonly number[])[]): Promise<{ out: { logits: Float32Array; keys: Float32Array[]; values: Float32Array[] }; T: number }> {
    const B = prompts.length;
    const T = Math.max(...prompts.map((p) => p.length));
    const ids = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * T);
    const positions = new BigInt64Array(B * T);
    for (const [b, prompt] of prompts.entries()) {
      const at = b * T + T - prompt.length;
      for (const [i, token] of prompt.entries()) {
        ids[at + i] = BigInt(token);
        mask[at + i] = 1n;
        positions[at + i] = BigInt(i);
      }
    }
    return this.#run(B, T, ids, mask, positions, undefined).then((out) => ({ out, T }));
  }

  /** One decoder call: `T` new tokens per row after `cache` (none: an empty cache); logits and presents as float32. */
  async #run(B: number, T: number, ids: BigInt64Array, mask: BigInt64Array, positions: BigInt64Array, cache: BatchCache | undefined, into?: KvArrays): Promise<{ logits: Float32Array; keys: Float32Array[]; values: Float32Array[] }> {
    const { layers, kvHeads: H, headDim: D, cacheType } = this.info;
    const L = cache?.length ?? 0;
    const feeds: Record<string, Tensor> = {
      input_ids: fromTypedArray('int64', ids, [B, T]),
      attention_mask: fromTypedArray('int64', mask, [B, L + T]),
    };
    if (this.info.positionIds) feeds.position_ids = fromTypedArray('int64', positions, [B, T]);
    if (this.info.useCacheBranch) feeds.use_cache_branch = makeTensor('bool', [cache ? 1 : 0], [1]);
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_values.${l}.key`] = floatTensor(cacheType, cache?.keys[l] ?? new Float32Array(0), [B, H, L, D]);
      feeds[`past_key_values.${l}.value`] = floatTensor(cacheType, cache?.values[l] ?? new Float32Array(0), [B, H, L, D]);
    }
    // Presents written into the caller's arrays (float32 caches), or allocated by ONNX Runtime.
    const outputs: Record<string, Tensor> = {};
    for (let l = 0; l < layers && into; l++) {
      outputs[`present.${l}.key`] = floatTensor('float32', into.keys[l]!, [B, H, L + T, D]);
      outputs[`present.${l}.value`] = floatTensor('float32', into.values[l]!, [B, H, L + T, D]);
    }
    const out = await this.session.run(feeds, into ? outputs : undefined);
    if (into) return { logits: tensorToFloat32(out.logits!), ...into };
    const presents = (kind: 'key' | 'value'): Float32Array[] => Array.from({ length: layers }, (_, l) => tensorToFloat32(out[`present.${l}.${kind}`]!));
    return { logits: tensorToFloat32(out.logits!), keys: presents('key'), values: presents('value') };
  }

  /** The logits of the last position of `tokens`, run whole with no cache: the reference for tests. */
  async logitsWithoutCache(tokens: readonly number[]): Promise<Float32Array> {
    const { out, T } = await this.#prefill([tokens]);
    return out.logits.slice((T - 1) * this.info.vocabSize, T * this.info.vocabSize);
  }
}

function countTokens(tokens: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const t of tokens) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}
