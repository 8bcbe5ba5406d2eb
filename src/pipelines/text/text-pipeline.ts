// Text generation over a decoder and its KV cache (kv-decoder.ts), in the step API the
// scheduling layer drives: `begin` prefills newcomers and chooses each one's first token, `step`
// gives every active sequence its next token(s), `finish` returns the text.
//
// A step is ONE decoder call over every active sequence, or, with a draft model (speculative
// decoding), one round: the draft proposes up to k tokens per sequence (k small calls over the
// batch), the target scores every sequence's last token and proposals in one call, and each
// sequence keeps the longest prefix the target agrees with plus one token of the target's own —
// a different number per sequence; both caches forget what was not kept. Greedy requests keep
// exactly the tokens of plain decoding; sampled ones follow the acceptance rule of Leviathan et
// al. and Chen et al. (accept a proposal with min(1, p/q), else draw from the residual
// max(0, p - q)), so their tokens are distributed as the target's.
//
// A guided sequence (guided.ts) has its grammar's mask applied to its logits before each choice —
// the draft's proposals too, its matcher advanced over them and rolled back before the target's
// verification advances it over the tokens kept — so that guided speculative decoding keeps exactly
// the tokens of guided plain decoding.
import { EaselError } from '../../errors/easel-error.js';
import type { SessionOptions } from '../../runtime/onnx-runtime.js';
import { CacheRow, KvDecoder, type TextModelInfo } from './kv-decoder.js';
import type { GuideMatcher } from './guided.js';
import { chooseToken, processLogits, scoreToken, SequenceRandom, type SamplingParams, type TokenChoice } from './sampling.js';
import { TextTokenizer } from './text-tokenizer.js';

export type { TextModelInfo } from './kv-decoder.js';

export interface TextGenerationRequest {
  readonly promptTokens: readonly number[];
  readonly maxNewTokens: number;
  readonly sampling: SamplingParams;
  readonly seed: number;
  /** Generation ends at any of these tokens (not included in the text). */
  readonly stopTokenIds: readonly number[];
  /** Tokens generated before an end-of-sequence or stop token may be chosen (vLLM's min_tokens). */
  readonly minTokens?: number | undefined;
  /** Generation goes on past the model's end-of-sequence token (vLLM's ignore_eos); stop tokens still end it. */
  readonly ignoreEos?: boolean | undefined;
  /** Score each prompt token (after the first) under the model, with this many alternatives (vLLM's prompt_logprobs). */
  readonly promptLogprobs?: number | undefined;
  /**
   * Tokens an earlier attempt already generated (its worker died): prefilled after the prompt,
   * they count as generated (max tokens, penalties, the text), and generation goes on from there —
   * with the position-keyed draws, exactly as the uninterrupted run would have.
   */
  readonly resumeTokens?: readonly number[] | undefined;
  /** Generation ends where the text contains any of these (the text stops before it). */
  readonly stop: readonly string[];
  /** The grammar the text follows (guided decoding): this sequence's own matcher, at its start; whoever made it disposes of it. */
  readonly guide?: GuideMatcher | undefined;
}

export type FinishReason = 'stop' | 'length';

export interface TextOutput {
  readonly text: string;
  readonly tokens: readonly number[];
  readonly promptTokens: number;
  readonly finishReason: FinishReason;
  readonly choices: readonly TokenChoice[];
  /** Each prompt token's score after the first, when asked (promptLogprobs). */
  readonly promptChoices?: readonly TokenChoice[] | undefined;
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
  /** Its place in the target's cache, and in the draft's (speculative decoding). */
  readonly row: CacheRow;
  readonly draftRow: CacheRow | undefined;
  /** Tokens the draft proposes for it next round (its own, when k adapts). */
  draftK: number;
  promptChoices?: TokenChoice[] | undefined;
}

/** Speculative decoding: a draft model that shares the target's tokenizer, and how many tokens it proposes per round. */
export interface SpeculativeOptions {
  readonly draftDir: string;
  readonly k: number;
  /** Rounds fall back to plain decoding steps while more sequences than this are active (batching already fills the machine). */
  readonly maxBatch?: number | undefined;
  /**
   * Each sequence's k follows its acceptance (transformers' "heuristic" schedule): two more after
   * a round that kept every proposal, one fewer (at least 1) after one that did not; k is where it starts.
   */
  readonly adaptive?: boolean | undefined;
}

/** Counts since the last `takeCounts()`: what speculative decoding's metrics are made of. */
export interface SpeculationCounts {
  /** Draft tokens proposed, and those the target kept. */
  proposed: number;
  accepted: number;
  /** Tokens the verify calls gave (kept proposals plus the target's own), over the sequences verified (one per sequence per call). */
  emitted: number;
  verified: number;
}

/** The most tokens an adaptive k grows to. */
const MAX_ADAPTIVE_K = 8;

/** Prompt tokens decoded before the first generated one, so that its text reads as it does after them. */
const DETOKENIZE_CONTEXT = 4;

export class TextPipeline {
  readonly #counts: SpeculationCounts = { proposed: 0, accepted: 0, emitted: 0, verified: 0 };

  private constructor(
    private readonly target: KvDecoder,
    readonly tokenizer: TextTokenizer,
    private readonly speculation: { readonly draft: KvDecoder; readonly k: number; readonly maxBatch: number; readonly adaptive: boolean } | undefined,
  ) {}

  /** `prefixCacheBytes`: each decoder's budget for prompts' cached prefixes (0: none). */
  static async load(dir: string, options: SessionOptions, speculative?: SpeculativeOptions, prefixCacheBytes = 0): Promise<TextPipeline> {
    const target = await KvDecoder.load(dir, options, prefixCacheBytes);
    if (!speculative) return new TextPipeline(target, TextTokenizer.load(dir), undefined);
    // Its tokenizer is checked where the model is registered (checkDraft); its logits must index the same tokens.
    const draft = await KvDecoder.load(speculative.draftDir, options, prefixCacheBytes);
    if (draft.info.vocabSize !== target.info.vocabSize) {
      throw new EaselError('EASEL_MODEL_INVALID', `speculative.draft must share the target's vocabulary: its logits have ${draft.info.vocabSize} entries, the target's ${target.info.vocabSize}`, { field: 'speculative.draft' });
    }
    return new TextPipeline(target, TextTokenizer.load(dir), { draft, k: speculative.k, maxBatch: speculative.maxBatch ?? Infinity, adaptive: speculative.adaptive ?? false });
  }

  get info(): TextModelInfo {
    return this.target.info;
  }

  /** Prefills the newcomers' prompts in one call (the draft's too) and chooses each one's first token. */
  async begin(requests: readonly TextGenerationRequest[]): Promise<Sequence[]> {
    if (requests.length === 0) return [];
    const prompts = requests.map((r) => r.promptTokens);
    const seqs = requests.map((request): Sequence => ({
      request, random: new SequenceRandom(request.seed), tokens: [...request.promptTokens], generated: [], choices: [],
      seen: countTokens(request.promptTokens), counts: new Map(), text: '', finishReason: undefined,
      committed: '', prefixOffset: Math.max(0, request.promptTokens.length - DETOKENIZE_CONTEXT), readOffset: request.promptTokens.length,
      row: new CacheRow(), draftRow: this.speculation ? new CacheRow() : undefined, draftK: this.speculation?.k ?? 0,
    }));
    // A resumed sequence takes its earlier tokens back one by one, as they were made (its text is
    // detokenized the same way); their scores went to the client with them.
    for (const s of seqs) {
      for (const token of s.request.resumeTokens ?? []) {
        s.tokens.push(token);
        s.generated.push(token);
        s.choices.push({ token, logprob: Number.NaN, top: [] });
        s.request.guide?.accept(token);
        countToken(s, token, 1);
        this.#detokenize(s);
      }
    }
    // Prompt log-probabilities need every position's logits: then no prompt takes a cached prefix.
    const scored = requests.some((r) => r.promptLogprobs !== undefined);
    const logits = await this.target.prefill(seqs.map((s) => s.row), seqs.map((s) => s.tokens), scored ? (b, after) => {
      const top = requests[b]!.promptLogprobs;
      const prompt = prompts[b]!;
      if (top !== undefined) seqs[b]!.promptChoices = prompt.slice(1).map((token, p) => scoreToken(after(p), token, top));
    } : undefined);
    if (this.speculation) await this.speculation.draft.prefill(seqs.map((s) => s.draftRow!), seqs.map((s) => s.tokens));
    // max_new_tokens 0 (prompt log-probabilities only), or a resumed run already at its end: nothing more is generated.
    for (const [i, s] of seqs.entries()) {
      if (s.generated.length >= s.request.maxNewTokens) s.finishReason = 'length';
      else this.#accept(s, await this.#choose(s, logits[i]!));
    }
    return seqs;
  }

  /** Every unfinished sequence gets its next token (one decoder call), or its next tokens (a speculative round). */
  async step(states: readonly Sequence[]): Promise<void> {
    const active = states.filter((s) => !this.isFinished(s));
    if (active.length === 0) return;
    if (this.speculation && active.length <= this.speculation.maxBatch) return this.#speculate(active, this.speculation.draft, this.speculation.adaptive);
    const logits = await this.target.feed(active.map((s) => s.row), active.map((s) => s.tokens.slice(-1)));
    for (let i = 0; i < active.length; i++) {
      const s = active[i]!;
      const choice = this.#choose(s, logits[i]![0]!);
      this.#accept(s, choice instanceof Promise ? await choice : choice);
    }
  }

  /**
   * One speculative round: up to k draft calls, one target call, and for each sequence the
   * proposals the target keeps plus one token of its own.
   */
  async #speculate(active: Sequence[], draft: KvDecoder, adaptive: boolean): Promise<void> {
    // Each proposes at most what it may still generate, less the target's own token, and only
    // positions the model has.
    const room = active.map((s) => Math.max(0, Math.min(s.draftK, s.request.maxNewTokens - s.generated.length - 1, this.info.contextLength - s.tokens.length)));
    const proposals = active.map((): number[] => []);
    const rounds = Math.max(...room);
    // A guided sequence's matcher follows its proposals, and is rolled back over them after.
    const guided = active.map(() => 0);
    for (let j = 0; j < rounds; j++) {
      // The first call also gives the draft what it has not seen (the target's last token, and a
      // proposal kept last round that the draft never fed).
      const fed = active.map((s, i) => (room[i]! <= j ? [] : j === 0 ? s.tokens.slice(s.draftRow!.pastLength) : [proposals[i]![j - 1]!]));
      const logits = await draft.feed(active.map((s) => s.draftRow!), fed);
      for (const [i, s] of active.entries()) {
        if (room[i]! <= j) continue;
        const l = logits[i]!.at(-1)!;
        const p = s.request.sampling;
        // The penalties see the proposals so far, as they would have seen them as tokens.
        this.#process(s, l, s.generated.length + j);
        await s.request.guide?.mask(l);
        // The draft chooses as the target would at this position, with the same draw: where the
        // two models agree the proposal is the target's own token.
        const token = chooseToken(l, p.logprobs || p.topLogprobs > 0 ? { ...p, logprobs: false, topLogprobs: 0 } : p, s.random.at(s.generated.length + j)).token;
        proposals[i]!.push(token);
        countToken(s, token, 1);
        // A proposal its grammar refuses (an end the grammar does not yet allow) is the sequence's last this round.
        if (s.request.guide) {
          if (s.request.guide.accept(token)) guided[i]!++;
          else room[i] = j + 1;
        }
      }
    }
    for (const [i, s] of active.entries()) {
      for (const token of proposals[i]!) countToken(s, token, -1);
      s.request.guide?.rollback(guided[i]!);
    }

    const logits = await this.target.feed(active.map((s) => s.row), active.map((s, i) => [s.tokens.at(-1)!, ...proposals[i]!]));
    const counts = this.#counts;
    for (const [i, s] of active.entries()) {
      const proposed = proposals[i]!;
      const before = s.generated.length;
      let j = 0;
      for (; j < proposed.length && !this.isFinished(s); j++) {
        const l = logits[i]![j]!;
        const p = s.request.sampling;
        this.#process(s, l, s.generated.length);
        await s.request.guide?.mask(l);
        // The target's own choice with the position's draw, kept whatever was proposed: the text is
        // exactly what decoding without a draft makes, greedy or seeded, wherever the rounds fall
        // (a resumed run's rounds fall elsewhere). A proposal that differs ends the round.
        const choice = chooseToken(l, p, s.random.at(s.generated.length));
        this.#accept(s, choice);
        if (choice.token !== proposed[j]!) break;
      }
      // Every proposal kept: the target's token after them comes free with the same call.
      if (j === proposed.length && !this.isFinished(s)) this.#accept(s, await this.#choose(s, logits[i]![j]!));
      // j: the proposals kept.
      if (adaptive) s.draftK = j === s.draftK ? Math.min(s.draftK + 2, MAX_ADAPTIVE_K) : Math.max(1, s.draftK - 1);
      counts.proposed += proposed.length;
      counts.accepted += j;
      counts.emitted += s.generated.length - before;
      counts.verified++;
      // Each cache keeps what precedes the last token, and forgets the rest.
      this.target.rollback(s.row, s.row.pastLength - (s.tokens.length - 1));
      draft.rollback(s.draftRow!, s.draftRow!.pastLength - (s.tokens.length - 1));
    }
  }

  /** The counts since the last call (zero without a draft model), reset. */
  takeCounts(): SpeculationCounts {
    const out = { ...this.#counts };
    Object.assign(this.#counts, { proposed: 0, accepted: 0, emitted: 0, verified: 0 });
    return out;
  }

  /** The model's prompt tokens looked up in its prefix cache and found there since the last call (zeros without one), reset. */
  takePrefixCounts(): { prefix_queried: number; prefix_hit: number } {
    return this.target.prefixCache?.takeCounts() ?? { prefix_queried: 0, prefix_hit: 0 };
  }

  /** The speculative settings in effect, or undefined. */
  get speculative(): { k: number; maxBatch: number | null } | undefined {
    const s = this.speculation;
    return s ? { k: s.k, maxBatch: Number.isFinite(s.maxBatch) ? s.maxBatch : null } : undefined;
  }

  /** Bytes of KV cache one position of one sequence takes (keys and values of every layer, float32; the draft's too). */
  cacheBytesPerPosition(): number {
    return this.target.cacheBytesPerPosition() + (this.speculation?.draft.cacheBytesPerPosition() ?? 0);
  }

  /** Bytes of the batch's KV cache (keys and values of every layer), as float32. */
  cacheBytes(): number {
    return this.target.cacheBytes() + (this.speculation?.draft.cacheBytes() ?? 0);
  }

  isFinished(s: Sequence): boolean {
    return s.finishReason !== undefined;
  }

  async finish(states: readonly Sequence[]): Promise<TextOutput[]> {
    for (const s of states) {
      this.target.release(s.row);
      if (s.draftRow) this.speculation?.draft.release(s.draftRow);
    }
    return states.map((s) => ({ text: s.text, tokens: [...s.generated], promptTokens: s.request.promptTokens.length, finishReason: s.finishReason ?? 'length', choices: [...s.choices], promptChoices: s.promptChoices }));
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
    await this.target.close();
    await this.speculation?.draft.close();
  }

  /** The next token from a sequence's logits (its own row of a call's output, changed in place). */
  #choose(s: Sequence, logits: Float32Array): TokenChoice | Promise<TokenChoice> {
    this.#process(s, logits, s.generated.length);
    const choose = (): TokenChoice => chooseToken(logits, s.request.sampling, s.random.at(s.generated.length));
    // Unguided, the choice is made now: no promise per token.
    return s.request.guide ? s.request.guide.mask(logits).then(choose) : choose();
  }

  /** Sampling's logit processing, and the tokens that may not end the sequence yet (min_tokens) at this position of its output. */
  #process(s: Sequence, logits: Float32Array, position: number): void {
    processLogits(logits, s.request.sampling, s.seen, s.counts);
    if (position >= (s.request.minTokens ?? 0)) return;
    for (const id of [...s.request.stopTokenIds, ...(s.request.ignoreEos ? [] : this.info.eosTokenIds)]) if (id < logits.length) logits[id] = Number.NEGATIVE_INFINITY;
  }

  /** Appends a chosen token and applies the ways a generation ends. */
  #accept(s: Sequence, choice: TokenChoice): void {
    const token = choice.token;
    if (s.request.stopTokenIds.includes(token) || (!s.request.ignoreEos && this.info.eosTokenIds.includes(token))) {
      s.finishReason = 'stop';
      return;
    }
    s.tokens.push(token);
    s.generated.push(token);
    s.choices.push(choice);
    s.request.guide?.accept(token);
    countToken(s, token, 1);
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

  /** The logits of the last position of `tokens`, run whole with no cache: the reference for tests. */
  logitsWithoutCache(tokens: readonly number[]): Promise<Float32Array> {
    return this.target.logitsWithoutCache(tokens);
  }
}

/** A token counted in (or, for a proposal not yet kept, out of) the counts the penalties read. */
function countToken(s: Sequence, token: number, by: 1 | -1): void {
  for (const m of [s.seen, s.counts]) {
    const n = (m.get(token) ?? 0) + by;
    if (n === 0) m.delete(token);
    else m.set(token, n);
  }
}

function countTokens(tokens: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const t of tokens) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}
