// A decoder LM's tokenizer from its tokenizer.json and tokenizer_config.json
// (@huggingface/tokenizers), with the chat template rendered by @huggingface/jinja.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { EaselError } from '../../errors/easel-error.js';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
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

  private constructor(tokenizer: Tokenizer, config: Record<string, unknown>, maxTokenChars: number) {
    this.#tokenizer = tokenizer;
    this.maxTokenChars = maxTokenChars;
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
   * `<s>`; none for GPT-2's), as transformers and vLLM encode a completion prompt.
   */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.#tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** The chat template's prompt for these messages, ready for the assistant's turn: the template writes its own special tokens. */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    return this.encode(this.chatPrompt(messages), false);
  }

  decode(ids: readonly number[]): string {
    return ids.length === 0 ? '' : this.#tokenizer.decode([...ids], { skip_special_tokens: true });
  }

  /** One token's text as it reads inside a sequence (`▁The` is " The", where decode([id]) gives "The"). */
  tokenText(id: number): string {
    return this.decode([this.#anchor.id, id]).slice(this.#anchor.text.length);
  }

  /** The text the chat template makes of these messages, ready for the assistant's turn. */
  chatPrompt(messages: readonly ChatMessage[]): string {
    if (!this.#template) throw new EaselError('EASEL_INVALID_PARAMETER', 'this model has no chat template (tokenizer_config.json chat_template); use /v1/completions with a prompt', { field: 'messages' });
    return this.#template.render({ messages: messages.map((m) => ({ role: m.role, content: m.content })), add_generation_prompt: true, ...this.#specials });
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
