// Guided decoding: a grammar per sequence that says which tokens may come next (xgrammar).
// `Guides` is a model's grammar compiler over its vocabulary, with the compiled grammars cached
// per guide; a `GuideMatcher` is one sequence's place in its grammar: the mask of allowed tokens
// before each choice, advanced by each token kept, rolled back over draft proposals the target
// did not keep (speculative decoding).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CompiledGrammar, GrammarCompiler, GrammarMatcher } from '@mlc-ai/web-xgrammar';
import { EaselError } from '../../errors/easel-error.js';
import { explained, xgrammar } from './xgrammar.js';

/** What a request asks its text to be (admitted form: see text-generation-request.ts). */
export type GuideSpec =
  /** JSON matching a JSON Schema (`{"type": "object"}`: any object, OpenAI's json_object). */
  | { readonly type: 'json_schema'; readonly schema: unknown; readonly field: string }
  | { readonly type: 'regex'; readonly pattern: string; readonly field: string }
  | { readonly type: 'choice'; readonly choices: readonly string[]; readonly field: string }
  /** xgrammar's EBNF, its rule `root` first. */
  | { readonly type: 'grammar'; readonly grammar: string; readonly field: string }
  /**
   * Function calls, `<tool_call>{"name": NAME, "arguments": ARGS}</tool_call>`, ARGS following
   * the function's parameters: from the first token (`required`), or wherever the model opens one.
   */
  | { readonly type: 'tools'; readonly tools: readonly { readonly name: string; readonly parameters: unknown }[]; readonly required: boolean; readonly parallel: boolean; readonly field: string };

/** The text a tool call opens with, as the demo chat templates write it (Hermes's). */
export const TOOL_CALL_OPEN = '<tool_call>';

/** Compiled grammars kept per model (least recently used dropped first). */
const CACHED_GRAMMARS = 64;

/** A cached compiled grammar: disposed once evicted and no matcher is being made from it. */
interface CacheEntry {
  readonly grammar: Promise<CompiledGrammar>;
  users: number;
  evicted: boolean;
}

export class Guides {
  readonly #cache = new Map<string, CacheEntry>();

  private constructor(
    private readonly compiler: GrammarCompiler,
    private readonly stopTokenIds: readonly number[],
  ) {}

  /** The grammar compiler over a text model's vocabulary (its tokenizer.json; `vocabSize`: the logits' width). */
  static async load(dir: string, vocabSize: number, stopTokenIds: readonly number[]): Promise<Guides> {
    const xg = await xgrammar();
    const { vocab, type, prependSpace } = readVocabulary(dir, vocabSize);
    const info = await xg.TokenizerInfo.createTokenizerInfo(vocab, type, prependSpace, vocabSize, [...stopTokenIds]);
    return new Guides(await xg.GrammarCompiler.createGrammarCompiler(info, true), stopTokenIds);
  }

  /**
   * A matcher at the start of the guide's grammar (compiled once per guide, then cached), or a 400
   * naming the request field whose grammar xgrammar refused. `stopTokenIds`: tokens beside the
   * model's end of sequence that end the text once the grammar is complete (the request's own).
   */
  async matcher(spec: GuideSpec, stopTokenIds: readonly number[] = []): Promise<GuideMatcher> {
    const entry = this.#entry(spec);
    entry.users++;
    try {
      const grammar = await entry.grammar;
      const xg = await xgrammar();
      const stops = [...new Set([...this.stopTokenIds, ...stopTokenIds])];
      return new GuideMatcher(await xg.GrammarMatcher.createGrammarMatcher(grammar, stops, false));
    } catch (err) {
      throw new EaselError('EASEL_INVALID_PARAMETER', `${spec.field}: the grammar engine (xgrammar) cannot use this ${describe(spec)}: ${(err as Error).message}`, { field: spec.field, cause: err });
    } finally {
      entry.users--;
      release(entry);
    }
  }

  #entry(spec: GuideSpec): CacheEntry {
    const { field: _, ...rest } = spec;
    const key = JSON.stringify(rest);
    let entry = this.#cache.get(key);
    // Most recently used last.
    if (entry) this.#cache.delete(key);
    else {
      entry = { grammar: explained(() => this.#compile(spec)), users: 0, evicted: false };
      // A refused grammar is not kept.
      entry.grammar.catch(() => this.#cache.get(key) === entry && this.#cache.delete(key));
    }
    this.#cache.set(key, entry);
    for (const [old, e] of this.#cache) {
      if (this.#cache.size <= CACHED_GRAMMARS) break;
      this.#cache.delete(old);
      e.evicted = true;
      release(e);
    }
    return entry;
  }

  async #compile(spec: GuideSpec): Promise<CompiledGrammar> {
    switch (spec.type) {
      case 'json_schema':
        // Compact JSON (indent -1: none; no free whitespace): a small model cannot pad its answer with spaces forever.
        return this.compiler.compileJSONSchema(JSON.stringify(spec.schema, patternOverFormat), false, -1, [',', ':'], true);
      case 'regex':
        return this.compiler.compileStructuralTag({ type: 'structural_tag', format: { type: 'regex', pattern: spec.pattern } });
      case 'choice':
        return this.compiler.compileGrammar(`root ::= ${spec.choices.map(ebnfString).join(' | ')}`);
      case 'grammar':
        return this.compiler.compileGrammar(spec.grammar, 'root');
      case 'tools': {
        // Each call's arguments as JSON with fixed separators, ", " and ": " as the chat templates'
        // tojson renders a call in the history (a structural tag's own json_schema content allows
        // free whitespace, which a small model fills forever): its schema's grammar, written out.
        const xg = await xgrammar();
        const tags = [];
        for (const t of spec.tools) {
          const grammar = await xg.Grammar.fromJSONSchema(JSON.stringify(t.parameters, patternOverFormat), false, -1, [', ', ': '], true);
          tags.push({ type: 'tag', begin: `${TOOL_CALL_OPEN}{"name": ${JSON.stringify(t.name)}, "arguments": `, content: { type: 'grammar', grammar: grammar.toString() }, end: '}</tool_call>' });
          grammar.dispose();
        }
        const stopAfterFirst = !spec.parallel;
        const format = spec.required
          ? { type: 'tags_with_separator', tags, separator: '\n', at_least_one: true, stop_after_first: stopAfterFirst }
          : { type: 'triggered_tags', triggers: [TOOL_CALL_OPEN], tags, at_least_one: false, stop_after_first: stopAfterFirst };
        return this.compiler.compileStructuralTag(JSON.stringify({ type: 'structural_tag', format }, patternOverFormat));
      }
    }
  }
}

/** An evicted grammar no matcher is being made from is freed (a matcher holds its own reference to it). */
function release(entry: CacheEntry): void {
  if (entry.evicted && entry.users === 0) void entry.grammar.then((g) => g.dispose(), () => undefined);
}

/**
 * A JSON.stringify replacer: a string schema with both `pattern` and `format` keeps only the
 * pattern. xgrammar follows one of them, and takes the format's looser grammar (a date's day
 * 01–31 in any month) where a client's pattern (zod's, through openai's zodResponseFormat) says
 * exactly what its validator accepts.
 */
function patternOverFormat(this: unknown, key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const node = value as Record<string, unknown>;
  if (typeof node.pattern !== 'string' || node.format === undefined) return value;
  const { format: _, ...rest } = node;
  return rest;
}

function describe(spec: GuideSpec): string {
  return { json_schema: 'JSON schema', regex: 'regular expression', choice: 'list of choices', grammar: 'grammar', tools: 'list of functions' }[spec.type];
}

/** A string literal of xgrammar's EBNF (its escapes are JSON's). */
function ebnfString(s: string): string {
  return JSON.stringify(s);
}

export class GuideMatcher {
  constructor(private readonly matcher: GrammarMatcher) {}

  /** Sets every token the grammar does not allow next to -∞, in place. */
  async mask(logits: Float32Array): Promise<void> {
    if (this.matcher.isTerminated()) return;
    const words = await this.matcher.getNextTokenBitmask();
    for (let w = 0; w < words.length; w++) {
      const bits = words[w]!;
      if (bits === -1) continue;
      const base = w * 32;
      const end = Math.min(32, logits.length - base);
      for (let b = 0; b < end; b++) if ((bits & (1 << b)) === 0) logits[base + b] = Number.NEGATIVE_INFINITY;
    }
  }

  /** Advances past a chosen token; false when the grammar does not allow it (it does not advance then). */
  accept(token: number): boolean {
    return !this.matcher.isTerminated() && this.matcher.acceptToken(token);
  }

  /** Undoes the last `n` accepted tokens. */
  rollback(n: number): void {
    if (n > 0) this.matcher.rollBack(n);
  }

  get terminated(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

/**
 * The vocabulary as xgrammar reads it: each id's token string as tokenizer.json spells it (special
 * tokens as empty strings), and how those strings encode bytes — byte-level (GPT-2's), byte fallback
 * (SentencePiece's `<0xNN>` and `▁`), or raw text.
 */
function readVocabulary(dir: string, vocabSize: number): { vocab: string[]; type: 'byte_level' | 'byte_fallback' | 'raw'; prependSpace: boolean } {
  const json = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as {
    model?: { vocab?: Record<string, number> | [string, number][]; byte_fallback?: boolean };
    added_tokens?: { id: number; content: string; special?: boolean }[];
    decoder?: unknown;
    pre_tokenizer?: unknown;
    normalizer?: unknown;
  };
  const vocab = new Array<string>(vocabSize).fill('');
  const entries = Array.isArray(json.model?.vocab) ? json.model.vocab.map(([s], i) => [s, i] as const) : Object.entries(json.model?.vocab ?? {});
  for (const [s, id] of entries) if (id < vocabSize) vocab[id] = s;
  // A special token (`<|im_start|>`) is no text a grammar may match: decoding drops it. xgrammar
  // never allows a token whose string is empty, except as a stop token once the grammar is complete.
  for (const t of json.added_tokens ?? []) if (t.id < vocabSize) vocab[t.id] = t.special ? '' : t.content;
  const types = (node: unknown): string[] => {
    const n = node as { type?: string; decoders?: unknown[]; pretokenizers?: unknown[]; normalizers?: unknown[]; prepend_scheme?: string } | null;
    if (!n) return [];
    return [n.type ?? '', ...(n.decoders ?? n.pretokenizers ?? n.normalizers ?? []).flatMap(types)];
  };
  const decoders = types(json.decoder);
  const type = decoders.includes('ByteLevel') ? 'byte_level' : decoders.includes('ByteFallback') || json.model?.byte_fallback ? 'byte_fallback' : 'raw';
  // SentencePiece models put `▁` before the first word (Metaspace's prepend_scheme, or a Prepend normalizer).
  const prependSpace = /"prepend_scheme":"(first|always)"|"type":"Prepend"/.test(JSON.stringify([json.pre_tokenizer, json.normalizer]));
  return { vocab, type, prependSpace };
}
