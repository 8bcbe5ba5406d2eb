// Automatic prefix caching, as vLLM's: the KV cache of a prompt's whole blocks of tokens is kept
// after its prefill, keyed by a hash of the block's tokens and of every block before it (so a
// block is found only behind the same prefix), and a later prompt that begins with the same
// blocks takes them instead of computing them — a chat's system prompt and history, few-shot
// examples, the n choices of one request. Bounded by a byte budget; the least recently used block
// leaves first, and a chain's later blocks before its earlier ones (a lookup refreshes a chain
// from its end to its start), so what is evicted is never the root of what stays.
import { createHash } from 'node:crypto';

/** Per layer, keys and values laid out [heads, positions, headDim]. */
export interface KvArrays {
  keys: Float32Array[];
  values: Float32Array[];
}

export interface PrefixCacheShape {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** Tokens per block: a prompt shares its cached prefix in whole blocks. */
export const PREFIX_BLOCK_TOKENS = 16;

export class PrefixCache {
  readonly #blocks = new Map<string, KvArrays>();
  readonly #blockBytes: number;
  #bytes = 0;
  /** Prompt tokens looked up, and those found cached, since the last `takeCounts()`. */
  #queried = 0;
  #hit = 0;

  constructor(
    readonly maxBytes: number,
    private readonly shape: PrefixCacheShape,
    readonly blockTokens = PREFIX_BLOCK_TOKENS,
  ) {
    this.#blockBytes = 2 * shape.layers * shape.kvHeads * blockTokens * shape.headDim * 4;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The longest run of cached whole blocks that begins `tokens`, always leaving at least one token
   * to compute (the next token's logits come from it): its length and its KV, per layer
   * [heads, length, headDim]. Undefined when not even the first block is cached.
   */
  lookup(tokens: readonly number[]): { length: number; kv: KvArrays } | undefined {
    const B = this.blockTokens;
    const chain: [string, KvArrays][] = [];
    let key = '';
    for (let i = 0; i < Math.floor((tokens.length - 1) / B); i++) {
      key = blockKey(key, tokens, i * B, B);
      const block = this.#blocks.get(key);
      if (!block) break;
      chain.push([key, block]);
    }
    this.#queried += tokens.length;
    this.#hit += chain.length * B;
    if (chain.length === 0) return undefined;
    this.#refresh(chain);
    const { layers, kvHeads: H, headDim: D } = this.shape;
    const n = chain.length * B;
    const join = (of: (b: KvArrays) => Float32Array[], l: number): Float32Array => {
      const out = new Float32Array(H * n * D);
      for (const [j, [, block]] of chain.entries()) {
        for (let h = 0; h < H; h++) out.set(of(block)[l]!.subarray(h * B * D, (h + 1) * B * D), (h * n + j * B) * D);
      }
      return out;
    };
    return {
      length: n,
      kv: { keys: Array.from({ length: layers }, (_, l) => join((b) => b.keys, l)), values: Array.from({ length: layers }, (_, l) => join((b) => b.values, l)) },
    };
  }

  /** Keeps the whole blocks of `tokens` from a sequence's cache (per layer [heads, held, headDim], the first tokens.length positions being these tokens'). */
  insert(tokens: readonly number[], kv: KvArrays, held: number): void {
    if (this.#blockBytes > this.maxBytes) return;
    const B = this.blockTokens;
    const { layers, kvHeads: H, headDim: D } = this.shape;
    const chain: [string, KvArrays][] = [];
    let key = '';
    for (let i = 0; i < Math.floor(tokens.length / B); i++) {
      key = blockKey(key, tokens, i * B, B);
      let block = this.#blocks.get(key);
      if (!block) {
        const cut = (arrays: Float32Array[]): Float32Array[] =>
          Array.from({ length: layers }, (_, l) => {
            const out = new Float32Array(H * B * D);
            for (let h = 0; h < H; h++) out.set(arrays[l]!.subarray((h * held + i * B) * D, (h * held + (i + 1) * B) * D), h * B * D);
            return out;
          });
        block = { keys: cut(kv.keys), values: cut(kv.values) };
        this.#bytes += this.#blockBytes;
      }
      chain.push([key, block]);
    }
    this.#refresh(chain);
    // Least recently used first: a Map iterates in insertion order.
    for (const key of this.#blocks.keys()) {
      if (this.#bytes <= this.maxBytes) break;
      this.#blocks.delete(key);
      this.#bytes -= this.#blockBytes;
    }
  }

  /** Prompt tokens looked up and found since the last call, reset. */
  takeCounts(): { prefix_queried: number; prefix_hit: number } {
    const out = { prefix_queried: this.#queried, prefix_hit: this.#hit };
    this.#queried = this.#hit = 0;
    return out;
  }

  /** Makes a chain the most recently used, its first block most of all. */
  #refresh(chain: readonly [string, KvArrays][]): void {
    for (let j = chain.length - 1; j >= 0; j--) {
      const [key, block] = chain[j]!;
      this.#blocks.delete(key);
      this.#blocks.set(key, block);
    }
  }
}

/** A block's key: a hash of the key before it and the block's tokens. */
function blockKey(parent: string, tokens: readonly number[], from: number, count: number): string {
  return createHash('sha256').update(parent).update(new Uint8Array(Int32Array.from(tokens.slice(from, from + count)).buffer)).digest('base64');
}
