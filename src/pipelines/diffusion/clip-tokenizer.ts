// The CLIP tokenizer of a diffusers `tokenizer/` folder (vocab.json + merges.txt), run by
// @huggingface/tokenizers. diffusers ships the slow tokenizer's files only, so the fast
// tokenizer's definition is assembled here the way transformers' CLIP converter does it:
// NFC, whitespace runs to one space, lower case; CLIP's word pattern; byte-level BPE with
// `</w>` word ends; BOS … EOS, truncated and padded to the model's length. Before that, the
// prompt is cleaned as the slow tokenizer does with ftfy (prompt-text.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { fixPromptText } from './prompt-text.js';

const BOS = '<|startoftext|>';
const EOS = '<|endoftext|>';
const CLIP_WORDS = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

interface TokenizerConfig {
  model_max_length?: number;
  pad_token?: string | { content: string };
}

function tokenName(token: string | { content: string } | undefined): string | undefined {
  return typeof token === 'string' ? token : token?.content;
}

export class ClipTokenizer {
  readonly maxLength: number;
  readonly #tokenizer: Tokenizer;
  readonly #bos: number;
  readonly #eos: number;
  readonly #pad: number;

  private constructor(vocab: Record<string, number>, merges: string[], config: TokenizerConfig, fallbackLength: number) {
    const id = (token: string): number => {
      const value = vocab[token];
      if (value === undefined) throw new Error(`tokenizer: ${token} is not in vocab.json`);
      return value;
    };
    this.#bos = id(BOS);
    this.#eos = id(EOS);
    this.#pad = id(tokenName(config.pad_token) ?? EOS);
    // transformers writes 1e30 for "no limit"; then the text encoder's input length decides.
    const declared = config.model_max_length;
    this.maxLength = declared !== undefined && declared > 0 && declared <= 4096 ? declared : fallbackLength;
    const special = (content: string) => ({ id: id(content), content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
    this.#tokenizer = new Tokenizer(
      {
        version: '1.0',
        truncation: null,
        padding: null,
        added_tokens: [special(BOS), special(EOS)],
        normalizer: {
          type: 'Sequence',
          normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
        },
        pre_tokenizer: {
          type: 'Sequence',
          pretokenizers: [
            { type: 'Split', pattern: { Regex: CLIP_WORDS }, behavior: 'Removed', invert: true },
            { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
          ],
        },
        post_processor: null,
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: {
          type: 'BPE',
          dropout: null,
          unk_token: EOS,
          continuing_subword_prefix: '',
          end_of_word_suffix: '</w>',
          fuse_unk: false,
          byte_fallback: false,
          vocab,
          merges,
        },
      },
      { tokenizer_class: 'CLIPTokenizer', bos_token: BOS, eos_token: EOS, unk_token: EOS },
    );
  }

  /** Loads `tokenizer/` from a diffusers layout; `fallbackLength` applies when the config sets no limit. */
  static load(dir: string, fallbackLength = 77): ClipTokenizer {
    const read = (name: string): string => readFileSync(path.join(dir, name), 'utf8');
    const vocab = JSON.parse(read('vocab.json')) as Record<string, number>;
    const merges = read('merges.txt')
      .split('\n')
      .filter((line, i) => line.trim() !== '' && !(i === 0 && line.startsWith('#version')));
    let config: TokenizerConfig = {};
    try {
      config = JSON.parse(read('tokenizer_config.json')) as TokenizerConfig;
    } catch {
      // optional: defaults are CLIP's
    }
    return new ClipTokenizer(vocab, merges, config, fallbackLength);
  }

  /** BOS, the cleaned prompt's tokens (truncated to fit), EOS, then padding to maxLength. */
  encode(text: string): number[] {
    const tokens = this.#tokenizer.encode(fixPromptText(text), { add_special_tokens: false }).ids.slice(0, this.maxLength - 2);
    const ids = [this.#bos, ...tokens, this.#eos];
    while (ids.length < this.maxLength) ids.push(this.#pad);
    return ids;
  }
}
