// A decoder-only language model on ONNX Runtime with its batch KV cache, in the layouts optimum
// and transformers.js write (`onnx/model.onnx` or a merged decoder with `use_cache_branch`;
// `past_key_values.{i}.key/value` in, `present.{i}.key/value` out; `position_ids` optional;
// heads and head size read from the graph, so multi-head and grouped-query attention alike).
//
// Each sequence the decoder serves has a CacheRow. `prefill` runs newcomers' prompts in one call
// (each row then holds its own cache); `feed` runs ONE decoder call in which every row of the
// batch cache appends its tokens (none, one, or several: a speculative verify), the rows
// left-padded to a common length and each at its own positions; `rollback` forgets a row's last
// positions (rejected draft tokens). The cache is kept between calls. Positions a row does not
// use — the padding on its left, the window slots of a row that fed fewer tokens than the
// longest, rolled-back positions — are masked out by the attention mask ("holes"); position ids
// count only what the row holds, so a hole changes nothing the model computes. When a sequence
// leaves, the last row moves into its place; newcomers are appended; the rows are re-padded
// (holes squeezed out) only when the padding grows wasteful. A graph that cannot take several new
// tokens after a past for more than one row at once (ONNX Runtime's CPU GroupQueryAttention, in
// fused exports such as onnxruntime-genai's) runs such calls row by row, found out at load.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { EaselError } from '../../errors/easel-error.js';
import { graphBytes } from '../../runtime/graph-bytes.js';
import { floatTensor, fromTypedArray, makeTensor, OnnxSession, tensorToFloat32, variantFile, type RunOptions, type SessionOptions, type Tensor } from '../../runtime/onnx-runtime.js';
import { PrefixCache, type KvArrays } from './prefix-cache.js';
import { readTextLayout } from './text-layout.js';

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
  /** Whether one call may give several rows several new tokens each after a past (else: one call per row). */
  readonly batchedContinuation: boolean;
}

const NO_TOKENS: readonly number[] = [];

/** Zero-filled int64 arrays for a call's inputs, each kind in one buffer that grows as needed. */
class Scratch {
  readonly #buffers = new Map<string, BigInt64Array>();

  take(kind: string, length: number): BigInt64Array {
    let buffer = this.#buffers.get(kind);
    if (!buffer || buffer.length < length) {
      buffer = new BigInt64Array(Math.ceil(length * 1.5));
      this.#buffers.set(kind, buffer);
    }
    return buffer.subarray(0, length).fill(0n);
  }
}

/** One sequence's place in a decoder's cache. */
export class CacheRow {
  /** Positions the cache holds for this sequence: the next token's position id. */
  pastLength = 0;
  /** Masked positions inside the row's span in the batch cache (ascending, batch-relative). */
  holes: number[] = [];
  /** The row's own cache while it is not in the batch cache: per layer [heads, pastLength, headDim]. */
  own: KvArrays | undefined;
  /** What the call in progress feeds it, and the logits after each of those tokens (feed's answer). */
  fed: readonly number[] = NO_TOKENS;
  fedLogits: Float32Array[] = [];

  /** Positions the row spans in the batch cache: what it holds and its holes. */
  get span(): number {
    return this.pastLength + this.holes.length;
  }
}

interface BatchCache extends KvArrays {
  members: CacheRow[];
  length: number;
}

/** Positions of padding beyond what the longest member needs before the batch cache is re-padded. */
const REPAD_SLACK = 32;

const MODEL_FILES = ['onnx/decoder_model_merged.onnx', 'onnx/model.onnx', 'decoder_model_merged.onnx', 'model.onnx'];

/**
 * Below this many bytes of weights a decoder runs on one intra-op thread unless its config says
 * otherwise; above, on ONNX Runtime's default (one per core). A decode step reads every weight
 * once: for a small model the step is over before a second thread has its share (tiny-lm through
 * the server at 16 streams: 3.2k tokens/s on one thread, 2.4k on one per core); for a large one
 * the matmuls are worth splitting. On this project's 2-core VM, the 102M-parameter bench model in
 * fused operators with 4-bit weights (raw ONNX Runtime): 126 vs 174 tokens/s at 1 stream, 174 vs
 * 297 at 16, one thread vs one per core (its plain f32 export, bandwidth-bound: 47 vs 45, 252 vs
 * 249). `npm run bench:llm-peers -- --model <folder>` measures both on a model.
 */
export const ONE_THREAD_BELOW_BYTES = 32 * 1024 * 1024;

/** The intra-op threads a decoder gets: its config's, or one for a small graph and ONNX Runtime's default (0) for a large one. */
export function decoderThreads(file: string, options: SessionOptions): number {
  if (options.intraOpThreads > 0) return options.intraOpThreads;
  const chosen = variantFile(file, options.variant);
  return graphBytes(chosen) < ONE_THREAD_BELOW_BYTES ? 1 : 0;
}

export function findTextModel(dir: string): string | undefined {
  return MODEL_FILES.map((f) => path.join(dir, f)).find((f) => existsSync(f));
}

export class KvDecoder {
  #batch: BatchCache | undefined;
  /**
   * Buffers (per layer, keys and values) a batch cache that was re-laid (rows joining, a re-pad)
   * left behind, for the next one. A call's presents are not written into them: onnxruntime-node
   * 1.30 copies every output into a fresh ArrayBuffer, also one given preallocated (then ONNX
   * Runtime writes the cache twice: ~5 % of a tiny-llama step, a 38 MB copy per step of the bench
   * model at 16 streams), so each call's presents are ONNX Runtime's own, as they come.
   */
  #spare: KvArrays | undefined;
  readonly #buffers = new WeakSet<ArrayBufferLike>();
  readonly #scratch = new Scratch();

  /** Prompts' cached prefixes (automatic prefix caching), when the model has a budget for them. */
  readonly prefixCache: PrefixCache | undefined;

  private constructor(
    private readonly session: OnnxSession,
    readonly info: TextModelInfo,
    prefixCacheBytes: number,
  ) {
    this.prefixCache = prefixCacheBytes > 0 ? new PrefixCache(prefixCacheBytes, info) : undefined;
  }

  /** `prefixCacheBytes`: the budget of prompts' cached prefixes (0: none kept). */
  static async load(dir: string, options: SessionOptions, prefixCacheBytes = 0): Promise<KvDecoder> {
    const file = findTextModel(dir);
    if (!file) throw new EaselError('EASEL_MODEL_INVALID', `no decoder graph in the model directory; looked for ${MODEL_FILES.join(', ')}`);
    const session = await OnnxSession.create(file, { ...options, intraOpThreads: decoderThreads(file, options) });
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
    const info = {
      layers, kvHeads: heads, headDim, vocabSize,
      contextLength: layout.contextLength,
      eosTokenIds: layout.eosTokenIds,
      positionIds: inputs.has('position_ids'),
      useCacheBranch: inputs.has('use_cache_branch'),
      cacheType: past.type,
      batchedContinuation: true,
    };
    const decoder = new KvDecoder(session, info, prefixCacheBytes);
    if (!(await decoder.#continues(2)) && (await decoder.#continues(1))) info.batchedContinuation = false;
    return decoder;
  }

  /** Whether a call of `rows` rows, two new tokens each after one cached position, runs. */
  async #continues(rows: number): Promise<boolean> {
    const { layers, kvHeads: H, headDim: D } = this.info;
    const past = { keys: Array.from({ length: layers }, () => new Float32Array(rows * H * D)), values: Array.from({ length: layers }, () => new Float32Array(rows * H * D)) };
    try {
      await this.#call(rows, 2, new BigInt64Array(rows * 2), new BigInt64Array(rows * 3).fill(1n), BigInt64Array.from({ length: rows * 2 }, (_, i) => BigInt(1 + (i % 2))), 1, past, { logSeverityLevel: 4 });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Prompts through the decoder with an empty cache in one call (left-padded to the longest,
   * masked): each row then holds its prompt. The logits of each prompt's last position.
   */
  async prefill(rows: readonly CacheRow[], prompts: readonly (readonly number[])[], positions?: (b: number, after: (p: number) => Float32Array) => void): Promise<Float32Array[]> {
    // Every position's logits are wanted (prompt log-probabilities): the whole prompt is computed.
    const cache = positions ? undefined : this.prefixCache;
    const hits = cache ? prompts.map((p) => cache.lookup(p)) : [];
    const logits = hits.some((h) => h !== undefined) ? await this.#prefillAfter(rows, prompts, hits) : await this.#prefillWhole(rows, prompts, positions);
    for (const [b, row] of rows.entries()) cache?.insert(prompts[b]!, row.own!, row.pastLength);
    return logits;
  }

  async #prefillWhole(rows: readonly CacheRow[], prompts: readonly (readonly number[])[], positions?: (b: number, after: (p: number) => Float32Array) => void): Promise<Float32Array[]> {
    const V = this.info.vocabSize;
    const { out, T } = await this.#prefill(prompts);
    // Every position's logits, for whoever asks (prompt log-probabilities): row b's prompt sits at the end of its T positions.
    if (positions) for (const [b, prompt] of prompts.entries()) positions(b, (p) => out.logits.subarray((b * T + T - prompt.length + p) * V, (b * T + T - prompt.length + p + 1) * V));
    const batch: BatchCache = { members: [...rows], keys: out.keys, values: out.values, length: T };
    return rows.map((row, b) => {
      row.pastLength = prompts[b]!.length;
      row.holes = [];
      // Its own cache: its row of the presents, less the padding on the left.
      row.own = this.#extract(batch, b);
      return out.logits.subarray((b * T + T - 1) * V, (b * T + T) * V);
    });
  }

  /**
   * Prompts of which some begin with cached blocks: one call computes each prompt's rest after its
   * cached prefix (the prefixes left-padded to the longest, the rests too, the padding masked).
   * Each row then holds its whole prompt.
   */
  async #prefillAfter(rows: readonly CacheRow[], prompts: readonly (readonly number[])[], hits: readonly ({ length: number; kv: KvArrays } | undefined)[]): Promise<Float32Array[]> {
    const { layers, kvHeads: H, headDim: D, vocabSize: V } = this.info;
    const B = prompts.length;
    const cached = hits.map((h) => h?.length ?? 0);
    const L = Math.max(...cached);
    const rests = prompts.map((p, b) => p.slice(cached[b]));
    const T = Math.max(...rests.map((r) => r.length));
    const prefix: BatchCache = {
      members: [...rows], length: L,
      keys: Array.from({ length: layers }, () => new Float32Array(B * H * L * D)), values: Array.from({ length: layers }, () => new Float32Array(B * H * L * D)),
    };
    const ids = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * (L + T));
    const positions = new BigInt64Array(B * T);
    for (const [b, rest] of rests.entries()) {
      const n = cached[b]!;
      const hit = hits[b];
      if (hit) {
        // The hit is the row's own cache for now, placed left-padded as a batch cache places one.
        Object.assign(rows[b]!, { own: hit.kv, pastLength: n });
        this.#place(prefix, b, rows[b]!);
      }
      for (let p = L - n; p < L; p++) mask[b * (L + T) + p] = 1n;
      const offset = T - rest.length;
      for (const [i, token] of rest.entries()) {
        ids[b * T + offset + i] = BigInt(token);
        mask[b * (L + T) + L + offset + i] = 1n;
        positions[b * T + offset + i] = BigInt(n + i);
      }
    }
    const out = await this.#run(B, T, ids, mask, positions, prefix);
    const batch: BatchCache = { members: [...rows], keys: out.keys, values: out.values, length: L + T };
    return rows.map((row, b) => {
      // Its own cache: its prefix and its rest, less the padding left of each.
      row.pastLength = prompts[b]!.length;
      row.holes = Array.from({ length: T - rests[b]!.length }, (_, j) => L + j);
      row.own = this.#extract(batch, b);
      row.holes = [];
      return out.logits.subarray((b * T + T - 1) * V, (b * T + T) * V);
    });
  }

  /**
   * One decoder call: each row appends its tokens (rows of the batch cache not named here leave
   * it). Per row, the logits after each of its tokens, as views of this call's output (valid until
   * the next call).
   */
  async feed(rows: readonly CacheRow[], tokens: readonly (readonly number[])[]): Promise<Float32Array[][]> {
    if (rows.length === 0) return [];
    let T = 1;
    for (let i = 0; i < rows.length; i++) {
      rows[i]!.fed = tokens[i]!;
      T = Math.max(T, tokens[i]!.length);
    }
    const batch = this.#batchFor(rows);
    // The rows' order is the batch cache's, not the caller's.
    const members = batch.members;
    const B = members.length;
    const L = batch.length;
    // A step's inputs go in the same buffers every call (ONNX Runtime has read them when run returns).
    const ids = this.#scratch.take('ids', B * T);
    const mask = this.#scratch.take('mask', B * (L + T));
    const positions = this.#scratch.take('positions', B * T);
    for (let b = 0; b < B; b++) {
      const row = members[b]!;
      const fed = row.fed;
      const offset = T - fed.length;
      const base = b * (L + T);
      // Left padding: the row's span ends at L; its holes are masked inside it.
      mask.fill(1n, base + L - row.span, base + L);
      for (const h of row.holes) mask[base + h] = 0n;
      // Its tokens at the end of the window; the slots before them (a shorter feed) are holes.
      for (let i = 0; i < fed.length; i++) {
        ids[b * T + offset + i] = BigInt(fed[i]!);
        positions[b * T + offset + i] = BigInt(row.pastLength + i);
        mask[base + L + offset + i] = 1n;
      }
    }
    const out = await this.#run(B, T, ids, mask, positions, batch);
    this.#giveBack(batch);
    // The presents are the next call's cache as they are: the same members, T positions longer.
    this.#batch = { members, keys: out.keys, values: out.values, length: L + T };
    const V = this.info.vocabSize;
    for (let b = 0; b < B; b++) {
      const row = members[b]!;
      const fed = row.fed;
      const offset = T - fed.length;
      for (let j = 0; j < offset; j++) row.holes.push(L + j);
      row.pastLength += fed.length;
      const views: Float32Array[] = [];
      for (let i = 0; i < fed.length; i++) views.push(out.logits.subarray((b * T + offset + i) * V, (b * T + offset + i + 1) * V));
      row.fedLogits = views;
      row.fed = NO_TOKENS;
    }
    return rows.map((r) => r.fedLogits);
  }

  /** Forgets a row's last `n` positions (draft tokens its sequence did not keep): masked from now on. Nothing when n <= 0. */
  rollback(row: CacheRow, n: number): void {
    if (n <= 0) return;
    const batch = this.#batch;
    if (!batch?.members.includes(row)) throw new Error('rollback of a row outside the batch cache');
    // Its last n positions that hold something: later ones may be holes already (calls it sat out).
    const holes = new Set(row.holes);
    for (let p = batch.length - 1, left = n; left > 0; p--) {
      if (holes.has(p)) continue;
      holes.add(p);
      left--;
    }
    row.holes = [...holes].sort((a, b) => a - b);
    row.pastLength -= n;
  }

  /** The sequence is done: its row leaves the batch cache at the next call. */
  release(row: CacheRow): void {
    row.own = undefined;
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

  async close(): Promise<void> {
    this.#batch = undefined;
    this.#spare = undefined;
    await this.session.release();
  }

  /** The logits of the last position of `tokens`, run whole with no cache: the reference for tests. */
  async logitsWithoutCache(tokens: readonly number[]): Promise<Float32Array> {
    const { out, T } = await this.#prefill([tokens]);
    return out.logits.slice((T - 1) * this.info.vocabSize, T * this.info.vocabSize);
  }

  /** The batch cache for exactly these members (in its own row order): the last call's, changed as little as it can be. */
  #batchFor(members: readonly CacheRow[]): BatchCache {
    const current = this.#batch;
    if (!current) return this.#rebuild(members, undefined);
    const longest = Math.max(...members.map((m) => m.pastLength));
    // Padding and holes that no member needs any more cost attention on each call.
    if (current.length - longest > REPAD_SLACK) return this.#rebuild(members, current);
    const wanted = new Set(members);
    const held = new Set(current.members);
    const leaving = current.members.filter((m) => !wanted.has(m));
    const joining = members.filter((m) => !held.has(m));
    if (leaving.length === 0 && joining.length === 0) return current;
    if (joining.some((m) => m.pastLength > current.length)) return this.#rebuild(members, current);
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

  /** A batch cache's buffers become the spare ones, when they are this decoder's own (not ONNX Runtime's). */
  #giveBack(arrays: KvArrays): void {
    const whole = (a: Float32Array): Float32Array => new Float32Array(a.buffer, 0, a.buffer.byteLength / 4);
    if ([...arrays.keys, ...arrays.values].every((a) => this.#buffers.has(a.buffer))) this.#spare = { keys: arrays.keys.map(whole), values: arrays.values.map(whole) };
  }

  /** A batch cache for these members made afresh: each row padded on the left to the longest, holes squeezed out. */
  #rebuild(members: readonly CacheRow[], current: BatchCache | undefined): BatchCache {
    for (const [row, m] of (current?.members ?? []).entries()) if (m.own === undefined && members.includes(m)) m.own = this.#extract(current!, row);
    const L = Math.max(...members.map((m) => m.pastLength));
    // Padding is masked out: whatever the spare buffers held there is never attended to.
    const batch: BatchCache = { members: [...members], ...this.#takeSpare(members.length * this.info.kvHeads * L * this.info.headDim), length: L };
    if (current) this.#giveBack(current);
    for (const [row, m] of members.entries()) this.#place(batch, row, m);
    this.#batch = batch;
    return batch;
  }

  /** Writes a row's own cache into the batch cache, padded on the left; the batch holds it from then on. */
  #place(batch: BatchCache, row: number, m: CacheRow): void {
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
    m.holes = [];
  }

  /** One row's cache out of a batch cache, without its padding and holes. */
  #extract(batch: BatchCache, row: number): KvArrays {
    const m = batch.members[row]!;
    const { kvHeads: H, headDim: D } = this.info;
    const L = batch.length;
    // The runs of positions the row holds, between its holes.
    const runs: [number, number][] = [];
    let start = L - m.span;
    for (const h of [...m.holes, L]) {
      if (h > start) runs.push([start, h]);
      start = h + 1;
    }
    const take = (arrays: Float32Array[]): Float32Array[] =>
      arrays.map((a) => {
        const out = new Float32Array(H * m.pastLength * D);
        let to = 0;
        for (let h = 0; h < H; h++) {
          for (const [from, end] of runs) {
            out.set(a.subarray(((row * H + h) * L + from) * D, ((row * H + h) * L + end) * D), to);
            to += (end - from) * D;
          }
        }
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
  async #run(B: number, T: number, ids: BigInt64Array, mask: BigInt64Array, positions: BigInt64Array, cache: BatchCache | undefined): Promise<{ logits: Float32Array; keys: Float32Array[]; values: Float32Array[] }> {
    const L = cache?.length ?? 0;
    if (B === 1 || T === 1 || L === 0 || this.info.batchedContinuation) return this.#call(B, T, ids, mask, positions, L, cache);
    // Row by row, each row's inputs and cache as views of the batch's (its rows are contiguous).
    const { layers, kvHeads: H, headDim: D, vocabSize: V } = this.info;
    const row = (arrays: Float32Array[], n: number, b: number): Float32Array[] => arrays.map((a) => a.subarray(b * H * n * D, (b + 1) * H * n * D));
    const logits = new Float32Array(B * T * V);
    const out = { keys: Array.from({ length: layers }, () => new Float32Array(B * H * (L + T) * D)), values: Array.from({ length: layers }, () => new Float32Array(B * H * (L + T) * D)) };
    for (let b = 0; b < B; b++) {
      const r = await this.#call(1, T, ids.subarray(b * T, (b + 1) * T), mask.subarray(b * (L + T), (b + 1) * (L + T)), positions.subarray(b * T, (b + 1) * T), L, { keys: row(cache!.keys, L, b), values: row(cache!.values, L, b) });
      logits.set(r.logits, b * T * V);
      for (const [l, k] of r.keys.entries()) out.keys[l]!.set(k, b * H * (L + T) * D);
      for (const [l, v] of r.values.entries()) out.values[l]!.set(v, b * H * (L + T) * D);
    }
    return { logits, ...out };
  }

  /** One session run: `T` new tokens for each of `B` rows after `L` cached positions in `cache` (none: an empty cache). */
  async #call(B: number, T: number, ids: BigInt64Array, mask: BigInt64Array, positions: BigInt64Array, L: number, cache: KvArrays | undefined, options?: RunOptions): Promise<{ logits: Float32Array; keys: Float32Array[]; values: Float32Array[] }> {
    const { layers, kvHeads: H, headDim: D, cacheType } = this.info;
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
    const out = await this.session.run(feeds, options);
    const presents = (kind: 'key' | 'value'): Float32Array[] => Array.from({ length: layers }, (_, l) => tensorToFloat32(out[`present.${l}.${kind}`]!));
    return { logits: tensorToFloat32(out.logits!), keys: presents('key'), values: presents('value') };
  }
}
