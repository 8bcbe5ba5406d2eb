// Choosing the next token from a sequence's logits, as OpenAI's and vLLM's parameters describe:
// logit bias, repetition / presence / frequency penalties, then greedy (temperature 0) or a
// draw from the temperature-scaled distribution cut by top-k, top-p and min-p. Each sequence
// has its own seeded generator, so its tokens depend only on its request, never on batch-mates.

export interface SamplingParams {
  /** 0: greedy. */
  readonly temperature: number;
  /** 0: no cut. */
  readonly topK: number;
  /** 1: no cut. */
  readonly topP: number;
  /** 0: no cut. */
  readonly minP: number;
  /** 1: none (HF's repetition_penalty, over prompt and output). */
  readonly repetitionPenalty: number;
  /** OpenAI's, over the output so far. */
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  /** Token id → added to its logit (OpenAI's logit_bias, -100..100). */
  readonly logitBias: ReadonlyMap<number, number>;
  /** How many alternatives to report with each token's log-probability (0: none). */
  readonly topLogprobs: number;
  readonly logprobs: boolean;
}

export interface TokenChoice {
  readonly token: number;
  /** Log-probability of the chosen token under the processed distribution (before temperature). */
  readonly logprob: number;
  readonly top: readonly { token: number; logprob: number }[];
}

/**
 * Seeded uniforms in [0, 1), keyed by where they are drawn — (seed, token position, the nth draw
 * there) hashed, as a counter-based generator (Philox in PyTorch and JAX) works — rather than by
 * how many were drawn before. A token's draws depend only on the request and its position: a
 * sequence resumed at position i, or decoded in another batch, draws for token i what an
 * uninterrupted run draws (and a speculative draft proposing token i draws what the target will).
 */
export class SequenceRandom {
  readonly #seed: number;
  #position = 0;
  #draw = 0;

  constructor(seed: number) {
    this.#seed = seed >>> 0;
  }

  /** The next draws are for token `position` (0: the first generated). */
  at(position: number): this {
    this.#position = position >>> 0;
    this.#draw = 0;
    return this;
  }

  uniform(): number {
    const key = [this.#position, this.#draw++];
    // Two independent 32-bit hashes make a 53-bit fraction.
    const hi = mix(this.#seed, key, 0x9e3779b9) >>> 5;
    const lo = mix(this.#seed, key, 0x85ebca6b) >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

/** MurmurHash3's 32-bit mixing of the words after `seed` (salted), with its finaliser. */
function mix(seed: number, words: readonly number[], salt: number): number {
  let h = (seed ^ salt) >>> 0;
  for (const w of words) {
    let k = Math.imul(w >>> 0, 0xcc9e2d51);
    k = rotl(k >>> 0, 15);
    k = Math.imul(k, 0x1b873593);
    h ^= k >>> 0;
    h = rotl(h >>> 0, 13);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  h ^= words.length * 4;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Applies bias and penalties in place: `seen` counts each token of prompt + output, `generated` of the output. */
export function processLogits(logits: Float32Array, p: SamplingParams, seen: ReadonlyMap<number, number>, generated: ReadonlyMap<number, number>): void {
  for (const [token, bias] of p.logitBias) if (token < logits.length) logits[token]! += bias;
  if (p.repetitionPenalty !== 1) {
    for (const token of seen.keys()) {
      const v = logits[token]!;
      logits[token] = v > 0 ? v / p.repetitionPenalty : v * p.repetitionPenalty;
    }
  }
  if (p.presencePenalty !== 0 || p.frequencyPenalty !== 0) {
    for (const [token, count] of generated) logits[token]! -= p.presencePenalty + p.frequencyPenalty * count;
  }
}

/** Picks the next token from processed logits. */
export function chooseToken(logits: Float32Array, p: SamplingParams, random: SequenceRandom): TokenChoice {
  if (p.temperature === 0) return describeChoice(logits, p, argmax(logits));
  if (!cuts(p)) return describeChoice(logits, p, drawAll(logits, p.temperature, random));
  const { order, scaled, keep } = candidates(logits, p);
  // The draw walks the kept tokens in vocabulary order, as drawAll does: a draft model choosing
  // with the same draw (speculative decoding) then lands on the target's token more often than
  // if each walked its own ranking.
  const byId = Array.from({ length: keep }, (_, i) => i).sort((a, b) => order[a]! - order[b]!);
  let kept = 0;
  for (let i = 0; i < keep; i++) kept += scaled[i]!;
  let u = random.uniform() * kept;
  for (const i of byId) {
    u -= scaled[i]!;
    if (u < 0) return describeChoice(logits, p, order[i]!);
  }
  return describeChoice(logits, p, order[byId[keep - 1]!]!);
}

/** A chosen token with its log-probability (and the top alternatives) under processed logits, as the request asked. */
export function describeChoice(logits: Float32Array, p: SamplingParams, token: number): TokenChoice {
  const logZ = p.logprobs || p.topLogprobs > 0 ? logSumExp(logits, 1) : 0;
  return { token, logprob: p.logprobs ? logits[token]! - logZ : 0, top: p.topLogprobs > 0 ? topLogprobs(logits, logZ, p.topLogprobs) : [] };
}

/** A given token's log-probability under the model's own distribution (no sampling applied), with the `top` likeliest: a prompt token's score. */
export function scoreToken(logits: Float32Array, token: number, top: number): TokenChoice {
  const logZ = logSumExp(logits, 1);
  return { token, logprob: logits[token]! - logZ, top: top > 0 ? topLogprobs(logits, logZ, top) : [] };
}

/** The distribution chooseToken draws from, per token id, written into `out` (greedy: all of it on the argmax). */
export function tokenProbabilities(logits: Float32Array, p: SamplingParams, out: Float64Array): Float64Array {
  out.fill(0);
  if (p.temperature === 0) {
    out[argmax(logits)] = 1;
    return out;
  }
  if (!cuts(p)) temperatureWeights(logits, p.temperature, out);
  else {
    const { order, scaled, keep } = candidates(logits, p);
    for (let i = 0; i < keep; i++) out[order[i]!] = scaled[i]!;
  }
  let total = 0;
  for (const w of out) total += w;
  for (let i = 0; i < out.length; i++) out[i]! /= total;
  return out;
}

function cuts(p: SamplingParams): boolean {
  return p.topK > 0 || p.topP < 1 || p.minP > 0;
}

/** The candidates of a cut draw: token ids by descending logit, their weights (unnormalised), and how many of them the top-k, min-p and top-p cuts keep. */
function candidates(logits: Float32Array, p: SamplingParams): { order: number[]; scaled: Float64Array; keep: number } {
  // Only the top k are candidates when top-k cuts; the other cuts keep a prefix.
  const order = p.topK > 0 ? topK(logits, p.topK) : byLogit(logits, logits.length);
  let keep = order.length;
  const scaled = new Float64Array(keep);
  const max = logits[order[0]!]! / p.temperature;
  let total = 0;
  for (let i = 0; i < keep; i++) total += scaled[i] = Math.exp(logits[order[i]!]! / p.temperature - max);
  if (p.minP > 0) {
    // Keep tokens at least minP × the most likely one's probability.
    const floor = p.minP * (scaled[0]! / total);
    let k = 1;
    while (k < keep && scaled[k]! / total >= floor) k++;
    keep = k;
  }
  if (p.topP < 1) {
    let mass = 0;
    let k = 0;
    while (k < keep) {
      mass += scaled[k]! / total;
      k++;
      if (mass >= p.topP) break;
    }
    keep = k;
  }
  return { order, scaled, keep };
}

/** A draw from the whole temperature-scaled distribution, in vocabulary order: no sort when nothing is cut. */
function drawAll(logits: Float32Array, temperature: number, random: SequenceRandom): number {
  return drawFrom(temperatureWeights(logits, temperature, scratch(logits.length).subarray(0, logits.length)), random);
}

/** A draw from weights per token id (not necessarily summing to 1), in vocabulary order. */
function drawFrom(weights: Float64Array, random: SequenceRandom): number {
  let total = 0;
  for (const w of weights) total += w;
  let u = random.uniform() * total;
  let last = 0;
  for (let i = 0; i < weights.length; i++) {
    if (weights[i] === 0) continue;
    last = i;
    u -= weights[i]!;
    if (u < 0) return i;
  }
  return last;
}

/** exp((logit - max) / temperature) per token id, into `out`. */
function temperatureWeights(logits: Float32Array, temperature: number, out: Float64Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  for (let i = 0; i < logits.length; i++) out[i] = Math.exp((logits[i]! - max) / temperature);
  return out;
}

let scratchBuffer = new Float64Array(0);

/** A reused buffer of at least n values (a draw per token per sequence would otherwise allocate one each time). */
function scratch(n: number): Float64Array {
  if (scratchBuffer.length < n) scratchBuffer = new Float64Array(n);
  return scratchBuffer;
}

/** The k highest logits' token ids, best first (ties: lower id first), in O(V log k). */
function topK(logits: Float32Array, k: number): number[] {
  if (k >= logits.length) return byLogit(logits, logits.length);
  const better = (a: number, b: number): boolean => logits[a]! > logits[b]! || (logits[a] === logits[b] && a < b);
  // A min-heap of the best k so far: its root is the worst of them.
  const heap: number[] = [];
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let worst = i;
      if (l < heap.length && better(heap[worst]!, heap[l]!)) worst = l;
      if (r < heap.length && better(heap[worst]!, heap[r]!)) worst = r;
      if (worst === i) return;
      [heap[i], heap[worst]] = [heap[worst]!, heap[i]!];
      i = worst;
    }
  };
  for (let t = 0; t < logits.length; t++) {
    if (heap.length < k) {
      heap.push(t);
      for (let i = heap.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!better(heap[parent]!, heap[i]!)) break;
        [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
        i = parent;
      }
    } else if (better(t, heap[0]!)) {
      heap[0] = t;
      down(0);
    }
  }
  return heap.sort((a, b) => (better(a, b) ? -1 : 1));
}

/** Token ids by descending logit (ties: lower id first), the first n. */
function byLogit(logits: Float32Array, n: number): number[] {
  const order = Array.from(logits.keys());
  order.sort((a, b) => logits[b]! - logits[a]! || a - b);
  return n < order.length ? order.slice(0, n) : order;
}

export function argmax(xs: Float32Array): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

function logSumExp(xs: Float32Array, temperature: number): number {
  let max = -Infinity;
  for (const x of xs) if (x > max) max = x;
  let sum = 0;
  for (const x of xs) sum += Math.exp((x - max) / temperature);
  return max + Math.log(sum) * temperature;
}

function topLogprobs(logits: Float32Array, logZ: number, n: number): { token: number; logprob: number }[] {
  return topK(logits, n).map((token) => ({ token, logprob: logits[token]! - logZ }));
}
