// A decoder LM's tokenizer from its tokenizer.json and tokenizer_config.json
// (@huggingface/tokenizers), with the chat template rendered by @huggingface/jinja.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer, type AddedToken } from '@huggingface/tokenizers';
import { EaselError } from '../../errors/easel-error.js';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  /** An assistant turn's function calls (OpenAI's shape; `arguments` as an object, as chat templates render it). */
  readonly tool_calls?: readonly ToolCall[] | undefined;
  /** A `tool` turn: the call it answers. */
  readonly tool_call_id?: string | undefined;
}

export interface ToolCall {
  readonly id: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: unknown };
}

/** A function the model may call (OpenAI's `tools[i]`). */
export interface ToolDefinition {
  readonly type: 'function';
  readonly function: { readonly name: string; readonly description?: string | undefined; readonly parameters?: unknown };
}

export class TextTokenizer {
  readonly #tokenizer: Tokenizer;
  readonly #template: Template | undefined;
  readonly #specials: { bos_token?: string; eos_token?: string };
  /** An ordinary token and its text: a token's own text is what it adds after this one (SentencePiece decoders drop a leading space). */
  readonly #anchor: { id: number; text: string };

  /**
   * The most characters one token stands for (its vocabulary's longest entry, added tokens
   * included): a text longer than context × this cannot fit the context, and is refused before
   * it is tokenized.
   */
  readonly maxTokenChars: number;

  /** The added tokens (special or not) by their text, and a pattern that finds them, longest first. */
  readonly #added: Map<string, AddedToken>;
  readonly #addedPattern: RegExp;
  /** Single tokens' decoded text, as decode gave it. */
  readonly #decoded = new Map<number, string>();

  private constructor(tokenizer: Tokenizer, config: Record<string, unknown>, maxTokenChars: number) {
    this.#tokenizer = tokenizer;
    this.maxTokenChars = maxTokenChars;
    this.#added = new Map([...tokenizer.get_added_tokens_decoder().values()].map((a) => [a.content, a]));
    const escaped = [...this.#added.keys()].sort((a, b) => b.length - a.length).map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.#addedPattern = new RegExp(`(${escaped.join('|') || '(?!)'})`);
    const chat = config.chat_template;
    this.#template = typeof chat === 'string' ? new Template(chat) : undefined;
    this.#specials = { bos_token: tokenText(config.bos_token), eos_token: tokenText(config.eos_token) };
    const anchor = tokenizer.encode('a', { add_special_tokens: false }).ids.at(-1) ?? 0;
    this.#anchor = { id: anchor, text: this.decode([anchor]) };
  }

  /** Whether it has a chat template (tokenizer_config.json chat_template). */
  get chats(): boolean {
    return this.#template !== undefined;
  }

  static load(dir: string): TextTokenizer {
    const read = (file: string): Record<string, unknown> => {
      try {
        return JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as Record<string, unknown>;
      } catch (err) {
        throw new EaselError('EASEL_MODEL_INVALID', `the text model needs a readable ${file}: ${(err as Error).message}`, { cause: err });
      }
    };
    const config = read('tokenizer_config.json');
    const json = read('tokenizer.json');
    return new TextTokenizer(new Tokenizer(json, config), config, longestToken(json));
  }

  get hasChatTemplate(): boolean {
    return this.#template !== undefined;
  }

  /**
   * A prompt's tokens, by default with the special tokens the tokenizer adds (a Llama tokenizer's
   * `<s>`; none for GPT-2's), as transformers and vLLM encode a completion prompt. A special
   * token's string in the text (`<|im_end|>`) is text, encoded as its characters are, as OpenAI
   * does; `specialTokensInText` makes it the special token (transformers' and vLLM's behaviour).
   */
  encode(text: string, addSpecialTokens = true, specialTokensInText = false): number[] {
    if (specialTokensInText) return this.#tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    return this.#encodeSections([{ text, user: true }], addSpecialTokens);
  }

  /**
   * The chat template's prompt for these messages, ready for the assistant's turn. Only the
   * template's own markup makes special tokens: what the messages say is text, whatever it spells
   * (unless `specialTokensInText`), so a user cannot write a system turn.
   */
  encodeChat(messages: readonly ChatMessage[], specialTokensInText = false, tools?: readonly ToolDefinition[]): number[] {
    if (specialTokensInText) return this.#tokenizer.encode(this.chatPrompt(messages, tools), { add_special_tokens: false }).ids;
    // Each message's content is a placeholder while the template renders (private-use characters
    // no message can hold: they are refused), then goes back into its section as text.
    const contents = new Map(messages.map((m, i) => [`\uE000${i}\uE001`, m.content]));
    for (const m of messages) if (/[\uE000\uE001]/.test(m.content)) throw new EaselError('EASEL_INVALID_PARAMETER', 'message content may not hold the private-use characters U+E000 or U+E001', { field: 'messages' });
    // (Tools and calls' arguments are markup: admission refuses the added tokens' strings in them.)
    const rendered = this.chatPrompt(messages.map((m, i) => ({ ...m, content: `\uE000${i}\uE001` })), tools);
    return this.#encodeSections(rendered.split(/(\uE000\d+\uE001)/).map((part) => (contents.has(part) ? { text: contents.get(part)!, user: true } : { text: part, user: false })), false);
  }

  /**
   * Encodes as the tokenizer does — the text split into sections at its added tokens, each section
   * normalized, pre-tokenized (knowing its index) and run through the model — except that the
   * added tokens are looked for in the markup only: a user's part joins its neighbours' section.
   */
  #encodeSections(parts: readonly { text: string; user: boolean }[], addSpecialTokens: boolean): number[] {
    const sections: { text: string; added?: AddedToken }[] = [{ text: '' }];
    for (const part of parts) {
      const pieces = part.user ? [part.text] : part.text.split(this.#addedPattern);
      for (const [j, piece] of pieces.entries()) {
        // split() with a capture group: odd pieces are the added tokens found.
        const added = part.user || j % 2 === 0 ? undefined : this.#added.get(piece);
        if (added) sections.push({ text: piece, added }, { text: '' });
        else sections[sections.length - 1]!.text += piece;
      }
    }
    // Added tokens that strip the whitespace beside them (lstrip / rstrip), as the tokenizer does.
    sections.forEach((s, i) => {
      if (s.added?.lstrip && i > 0) sections[i - 1]!.text = sections[i - 1]!.text.trimEnd();
      if (s.added?.rstrip && i + 1 < sections.length) sections[i + 1]!.text = sections[i + 1]!.text.trimStart();
    });
    const t = this.#tokenizer;
    const tokens = sections.flatMap((s, index) => {
      if (s.added) return [s.text];
      if (s.text === '') return [];
      const normalized = t.normalizer ? t.normalizer(s.text) : s.text;
      if (normalized === '') return [];
      return t.model!(t.pre_tokenizer ? t.pre_tokenizer(normalized, { section_index: index }) : [normalized]);
    });
    const processed: string[] = t.post_processor ? t.post_processor(tokens, null, addSpecialTokens).tokens : tokens;
    return processed.map((token) => t.token_to_id(token) ?? this.#added.get(token)?.id ?? this.#unknown(token));
  }

  #unknown(token: string): never {
    throw new EaselError('EASEL_INTERNAL', `the tokenizer made a token it has no id for: ${JSON.stringify(token)}`);
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return '';
    if (ids.length > 1) return this.#tokenizer.decode([...ids], { skip_special_tokens: true });
    // One token alone: what a stream's detokenizer asks for at every token (the context before the
    // newest), kept (at most one string per vocabulary entry).
    const id = ids[0]!;
    const known = this.#decoded.get(id);
    if (known !== undefined) return known;
    const text: string = this.#tokenizer.decode([id], { skip_special_tokens: true });
    this.#decoded.set(id, text);
    return text;
  }

  /** One token's text as it reads inside a sequence (`▁The` is " The", where decode([id]) gives "The"). */
  tokenText(id: number): string {
    return this.decode([this.#anchor.id, id]).slice(this.#anchor.text.length);
  }

  /** The text the chat template makes of these messages (and the functions it may call), ready for the assistant's turn. */
  chatPrompt(messages: readonly ChatMessage[], tools?: readonly ToolDefinition[]): string {
    if (!this.#template) throw new EaselError('EASEL_INVALID_PARAMETER', 'this model has no chat template (tokenizer_config.json chat_template); use /v1/completions with a prompt', { field: 'messages' });
    const turns = messages.map((m) => ({ role: m.role, content: m.content, ...(m.tool_calls ? { tool_calls: m.tool_calls } : {}), ...(m.tool_call_id ? { tool_call_id: m.tool_call_id } : {}) }));
    return this.#template.render({ messages: turns, add_generation_prompt: true, ...(tools?.length ? { tools } : {}), ...this.#specials });
  }

  /** The added tokens' strings (`<|im_end|>`): text that would become markup where a template renders it as such. */
  get addedTokenStrings(): readonly string[] {
    return [...this.#added.keys()];
  }
}

function tokenText(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string') return (t as { content: string }).content;
  return undefined;
}

/** The characters of a tokenizer.json's longest vocabulary entry or added token (BPE and WordPiece: a map; Unigram: [piece, score] pairs). */
function longestToken(json: Record<string, unknown>): number {
  const vocab = (json.model as { vocab?: unknown } | undefined)?.vocab;
  const entries = Array.isArray(vocab) ? vocab.map((e) => String((e as unknown[])[0] ?? '')) : vocab && typeof vocab === 'object' ? Object.keys(vocab) : [];
  const added = Array.isArray(json.added_tokens) ? json.added_tokens.map((t) => String((t as { content?: unknown }).content ?? '')) : [];
  // Unknown layouts get a generous bound rather than none.
  return Math.max(1, ...[...entries, ...added].map((t) => [...t].length)) || 64;
}

/**
 * What makes two models' tokenizers give different ids for the same text (undefined: nothing):
 * their tokenizer.json vocabularies, merges, special tokens, normalizers and pre-tokenizers.
 */
export function sameTokenizer(dirA: string, dirB: string): string | undefined {
  const read = (dir: string): Record<string, unknown> => {
    try {
      return JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new EaselError('EASEL_MODEL_INVALID', `the text model needs a readable tokenizer.json: ${(err as Error).message}`, { cause: err });
    }
  };
  const [a, b] = [read(dirA), read(dirB)];
  const model = (t: Record<string, unknown>): Record<string, unknown> => (t.model ?? {}) as Record<string, unknown>;
  const parts = new Map<string, (t: Record<string, unknown>) => unknown>([
    ['the vocabulary', (t) => model(t).vocab],
    ['the merges', (t) => model(t).merges],
    ['the tokenizer model', (t) => ({ ...model(t), vocab: undefined, merges: undefined })],
    ['the special (added) tokens', (t) => t.added_tokens],
    ['the normalizer', (t) => t.normalizer],
    ['the pre-tokenizer', (t) => t.pre_tokenizer],
    ['the post-processor', (t) => t.post_processor],
  ]);
  const differ = [...parts].filter(([, part]) => JSON.stringify(part(a)) !== JSON.stringify(part(b))).map(([name]) => name);
  return differ.length === 0 ? undefined : `the tokenizer.json files differ in ${differ.join(', ')}`;
}
