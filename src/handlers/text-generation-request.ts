// The text-generation request (TorchServe's GPT-Fast contract, with OpenAI's and vLLM's sampling
// names): a prompt (`prompt`, or `data` as TorchServe sends it) or chat `messages`, and how to
// sample. Admission tokenizes it (the chat template applied), so a prompt longer than the context
// is a 400 with the limit, and the worker receives token ids. Defaults: easel.yaml `defaults:`,
// then generation_config.json, then greedy.
import { randomInt } from 'node:crypto';
import { EaselError, invalidField } from '../errors/easel-error.js';
import type { TextTools } from '../models/model-control.js';
import type { ModelEntry, ModelSpec } from '../models/model-spec.js';
import type { GuideSpec } from '../pipelines/text/guided.js';
import { readTextLayout } from '../pipelines/text/text-layout.js';
import { sameTokenizer, TextTokenizer, type ChatMessage } from '../pipelines/text/text-tokenizer.js';
import { GUIDE_FIELDS, parseGuide } from './guided-request.js';
import { parseToolRequest, refuseMarkup, TOOL_FIELDS, type ToolChoice } from './tool-calls.js';

export interface TextGenerationParameters {
  /** The prompt as token ids (after the chat template, for messages). */
  prompt_tokens: number[];
  max_new_tokens: number;
  temperature: number;
  top_k: number;
  top_p: number;
  min_p: number;
  repetition_penalty: number;
  presence_penalty: number;
  frequency_penalty: number;
  /** [token id, bias] pairs. */
  logit_bias: [number, number][];
  seed: number;
  stop: string[];
  stop_token_ids: number[];
  /** Tokens before an end (EOS or a stop token) may be chosen. */
  min_tokens: number;
  /** Go on past the model's end-of-sequence token. */
  ignore_eos: boolean;
  /** Score the prompt's tokens, with this many alternatives each (vLLM's); absent: not scored. */
  prompt_logprobs?: number | undefined;
  /** A retried attempt's starting point: the tokens an earlier one made, and the characters of text its client already has. */
  resume_tokens?: number[] | undefined;
  resume_chars?: number | undefined;
  logprobs: boolean;
  top_logprobs: number;
  /** Tokens reach the client as they are made (progress events carry the text so far). */
  stream: boolean;
  /** The grammar the text follows (guided decoding), from response_format, a guided_* field or tools. */
  guide?: GuideSpec | undefined;
  /** With tools offered: how they may be called (the answer's calls are parsed out of its text unless "none"). */
  tool_choice?: ToolChoice | undefined;
}

export interface TextGenerationRules {
  readonly tokenizer: TextTokenizer;
  readonly contextLength: number;
  /** The most characters a prompt (or a chat's messages together) can have and still fit the context: longer is refused before tokenizing. */
  readonly maxPromptChars: number;
  /** easel.yaml specialTokensInText: special tokens' strings in user text are those tokens (else text). */
  readonly specialTokensInText: boolean;
  readonly vocabSize: number;
  readonly defaults: Readonly<Record<string, unknown>>;
}

const FIELDS = new Set([
  'prompt', 'data', 'messages', 'max_new_tokens', 'max_tokens', 'temperature', 'top_k', 'top_p', 'min_p', 'repetition_penalty', 'presence_penalty',
  'frequency_penalty', 'logit_bias', 'seed', 'stop', 'stop_token_ids', 'min_tokens', 'ignore_eos', 'logprobs', 'top_logprobs', 'prompt_logprobs', 'resume_tokens', 'resume_chars', 'stream', 'prompt_tokens',
  ...GUIDE_FIELDS,
  ...TOOL_FIELDS,
]);
const MAX_PROMPT_CHARS = 100_000;
const MAX_STOPS = 8;

/** Built once per registered model: the tokenizer (the pipeline's, where one is loaded) and the model's limits and defaults. */
export function textGenerationRules(spec: ModelSpec, dir: string, tokenizer = TextTokenizer.load(dir)): TextGenerationRules {
  const layout = readTextLayout(dir);
  const maxPromptChars = Math.min(MAX_PROMPT_CHARS, layout.contextLength * tokenizer.maxTokenChars);
  return { tokenizer, contextLength: layout.contextLength, maxPromptChars, specialTokensInText: spec.specialTokensInText, vocabSize: layout.vocabSize ?? Number.MAX_SAFE_INTEGER, defaults: { ...layout.generationDefaults, ...spec.defaults } };
}

/** The model's tokenizer as admission uses it: the same character bound, the same treatment of special tokens' strings. */
export function textTools(rules: TextGenerationRules): TextTools {
  return {
    contextLength: rules.contextLength,
    tokenize: ({ prompt, messages: chat, addSpecialTokens }) => {
      if (chat !== undefined) return rules.tokenizer.encodeChat(messages(chat, rules), rules.specialTokensInText);
      if (prompt === undefined) throw invalidField('prompt', 'send "prompt" (a string) or chat "messages"');
      if (prompt.length > rules.maxPromptChars) throw invalidField('prompt', `the prompt has ${prompt.length} characters; more than ${rules.maxPromptChars} cannot fit this model's ${rules.contextLength}-token context`);
      return rules.tokenizer.encode(prompt, addSpecialTokens ?? true, rules.specialTokensInText);
    },
    detokenize: (ids) => {
      const bad = ids.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= rules.vocabSize);
      if (bad >= 0) throw invalidField(`tokens[${bad}]`, `token ids must be integers from 0 to ${rules.vocabSize - 1}`);
      return rules.tokenizer.decode(ids);
    },
  };
}

/** The public form of the rules: the defaults, the context length, and whether it chats (has a chat template). */
export function textGenerationParameters(rules: TextGenerationRules): Record<string, unknown> {
  return { defaults: rules.defaults, context_length: rules.contextLength, chat: rules.tokenizer.chats };
}

/** A speculative draft model must be there and read text as the target does: the same tokenizer, the same vocabulary size. */
export function checkDraft(entry: ModelEntry): void {
  const name = entry.spec.name;
  const draft = entry.spec.speculative?.draft;
  const refuse = (why: string): never => {
    throw new EaselError('EASEL_MODEL_INVALID', `model ${name}: speculative.draft ${JSON.stringify(draft)} ${why}`, { field: 'speculative.draft' });
  };
  if (!entry.draftDir) return refuse('is neither a folder inside the model nor a model in the model store');
  const differs = sameTokenizer(entry.dir, entry.draftDir);
  if (differs) refuse(`must share the target's tokenizer, and ${differs}`);
  const [target, own] = [readTextLayout(entry.dir).vocabSize, readTextLayout(entry.draftDir).vocabSize];
  if (target !== own) refuse(`must share the target's vocabulary: config.json vocab_size ${own}, the target's ${target}`);
}

function number(input: Readonly<Record<string, unknown>>, rules: TextGenerationRules, field: string, min: number, max: number, fallback: number, integer = false): number {
  const v = Object.hasOwn(input, field) ? input[field] : rules.defaults[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw invalidField(field, `${field} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function messages(value: unknown, rules: TextGenerationRules): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 256) throw invalidField('messages', 'messages must be a list of 1 to 256 {role, content} objects');
  let total = 0;
  return value.map((m: unknown, i) => {
    const o = m as Record<string, unknown> | null;
    if (!o || typeof o !== 'object' || typeof o.role !== 'string' || !['system', 'user', 'assistant', 'developer', 'tool'].includes(o.role)) {
      throw invalidField(`messages[${i}].role`, 'each message needs a role: system, user, assistant, developer or tool');
    }
    // An assistant turn that called functions may have no text.
    const calls = o.role === 'assistant' && o.tool_calls !== undefined && o.tool_calls !== null ? toolCalls(o.tool_calls, `messages[${i}].tool_calls`, rules) : undefined;
    if (calls && (o.content === null || o.content === undefined)) return { role: 'assistant', content: '', tool_calls: calls };
    if (Array.isArray(o.content)) {
      // A part that is not text (an image_url, audio) is refused: these models read text only.
      for (const [j, p] of (o.content as { type?: unknown; text?: unknown }[]).entries()) {
        if (p?.type !== 'text' || typeof p.text !== 'string') throw invalidField(`messages[${i}].content[${j}]`, `this model reads text only: each content part must be {"type": "text", "text": "..."}, got type ${JSON.stringify(p?.type)}`);
      }
    }
    const content = typeof o.content === 'string' ? o.content : Array.isArray(o.content) ? (o.content as { text: string }[]).map((p) => p.text).join('') : undefined;
    if (content === undefined) throw invalidField(`messages[${i}].content`, 'each message needs text content');
    total += content.length;
    if (total > rules.maxPromptChars) {
      throw invalidField(`messages[${i}].content`, `the messages have ${total} characters by message ${i}; more than ${rules.maxPromptChars} cannot fit this model's ${rules.contextLength}-token context`);
    }
    const toolCallId = o.role === 'tool' && typeof o.tool_call_id === 'string' ? { tool_call_id: o.tool_call_id } : {};
    return { role: o.role === 'developer' ? 'system' : o.role, content, ...(calls ? { tool_calls: calls } : {}), ...toolCallId };
  });
}

/** An assistant turn's calls (OpenAI's shape, arguments as JSON text), with their arguments parsed for the template. */
function toolCalls(value: unknown, field: string, rules: TextGenerationRules): NonNullable<ChatMessage['tool_calls']> {
  if (!Array.isArray(value) || value.length > 64) throw invalidField(field, 'tool_calls must be a list of at most 64 calls');
  return value.map((c: unknown, j) => {
    const f = (c as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
    const at = `${field}[${j}]`;
    if (!f || typeof f.name !== 'string' || typeof f.arguments !== 'string') throw invalidField(at, 'each call is {"id", "type": "function", "function": {"name", "arguments": JSON text}}');
    let args: unknown;
    try {
      args = JSON.parse(f.arguments);
    } catch {
      throw invalidField(`${at}.function.arguments`, 'a call\'s arguments are JSON text');
    }
    refuseMarkup(f.name + f.arguments, rules.specialTokensInText ? [] : rules.tokenizer.addedTokenStrings, at);
    const id = (c as { id?: unknown }).id;
    return { id: typeof id === 'string' ? id : '', type: 'function', function: { name: f.name, arguments: args } };
  });
}

/** The validated request, or a 400 naming the field. Idempotent: its output parses to itself. */
export function parseTextGeneration(input: Readonly<Record<string, unknown>>, rules: TextGenerationRules): TextGenerationParameters {
  for (const key of Object.keys(input)) if (!FIELDS.has(key)) throw invalidField(key, `unknown field ${key}; allowed: ${[...FIELDS].filter((f) => f !== 'prompt_tokens' && f !== 'guide').join(', ')}`);
  // Tools go into the prompt through the chat template (so they come with messages); an admitted
  // request has its prompt's tokens, its guide and tool_choice already.
  const admitted = Array.isArray(input.prompt_tokens);
  const tools = admitted ? undefined : parseToolRequest(input, rules.specialTokensInText ? [] : rules.tokenizer.addedTokenStrings);
  if ((tools || (admitted && input.tools !== undefined)) && input.messages === undefined) throw invalidField('tools', 'tools come with chat messages (the chat template writes them into the prompt)');
  let tokens: number[];
  if (Array.isArray(input.prompt_tokens)) {
    // Already admitted (a job parsed again on the worker node).
    tokens = input.prompt_tokens.map((t, i) => {
      if (!Number.isInteger(t) || (t as number) < 0 || (t as number) >= rules.vocabSize) throw invalidField(`prompt_tokens[${i}]`, `token ids must be integers from 0 to ${rules.vocabSize - 1}`);
      return t as number;
    });
  } else {
    // Lengths are checked before anything is tokenized: tokenizing is the API process's work.
    if (input.messages !== undefined) tokens = rules.tokenizer.encodeChat(messages(input.messages, rules), rules.specialTokensInText, tools?.tools);
    else {
      const text = input.prompt ?? input.data;
      if (typeof text !== 'string') throw invalidField('prompt', 'send "prompt" (or "data") as a string, or chat "messages"');
      if (text.length > rules.maxPromptChars) throw invalidField('prompt', `the prompt has ${text.length} characters; more than ${rules.maxPromptChars} cannot fit this model's ${rules.contextLength}-token context`);
      tokens = rules.tokenizer.encode(text, true, rules.specialTokensInText);
    }
  }
  if (tokens.length === 0) throw invalidField('prompt', 'the prompt is empty');
  // Worded as OpenAI's and vLLM's, which clients recognise ("maximum context length is N tokens").
  if (tokens.length >= rules.contextLength) throw invalidField(input.messages !== undefined ? 'messages' : 'prompt', `This model's maximum context length is ${rules.contextLength} tokens. However, the prompt is ${tokens.length} tokens (at most ${rules.contextLength - 1}, leaving room for one generated token); reduce its length`);
  const room = rules.contextLength - tokens.length;
  const promptLogprobs = input.prompt_logprobs === undefined || input.prompt_logprobs === null ? undefined : number(input, rules, 'prompt_logprobs', 0, 20, 0, true);
  // Scoring a prompt may generate nothing (lm-evaluation-harness's log-likelihoods).
  const fewest = promptLogprobs === undefined ? 1 : 0;
  const asked = Object.hasOwn(input, 'max_new_tokens') ? 'max_new_tokens' : Object.hasOwn(input, 'max_tokens') ? 'max_tokens' : 'max_new_tokens';
  const explicit = Object.hasOwn(input, asked);
  // A default (easel.yaml, generation_config.json) gives way to a long prompt; a request's own does not.
  const maxNew = explicit ? number(input, rules, asked, fewest, Number.MAX_SAFE_INTEGER, room, true) : Math.min(room, number(input, rules, asked, fewest, Number.MAX_SAFE_INTEGER, Math.min(256, room), true));
  if (maxNew > room) throw invalidField(asked, `This model's maximum context length is ${rules.contextLength} tokens. However, you requested ${tokens.length + maxNew} tokens (${tokens.length} in the prompt, ${maxNew} in ${asked}); the prompt leaves room for ${room}`);
  const stop = input.stop === undefined || input.stop === null ? [] : typeof input.stop === 'string' ? [input.stop] : input.stop;
  if (!Array.isArray(stop) || stop.length > MAX_STOPS || !stop.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 256)) throw invalidField('stop', `stop must be a string or a list of at most ${MAX_STOPS} non-empty strings`);
  const stopIds = input.stop_token_ids ?? [];
  if (!Array.isArray(stopIds) || stopIds.length > 64 || !stopIds.every((t) => Number.isInteger(t) && t >= 0 && t < rules.vocabSize)) throw invalidField('stop_token_ids', `stop_token_ids must be a list of token ids from 0 to ${rules.vocabSize - 1}`);
  const bias = parseBias(input.logit_bias, rules.vocabSize);
  const logprobs = input.logprobs ?? false;
  if (typeof logprobs !== 'boolean') throw invalidField('logprobs', 'logprobs must be true or false');
  const topLogprobs = number(input, rules, 'top_logprobs', 0, 20, 0, true);
  const stream = input.stream ?? false;
  if (typeof stream !== 'boolean') throw invalidField('stream', 'stream must be true or false');
  const ignoreEos = input.ignore_eos ?? false;
  if (typeof ignoreEos !== 'boolean') throw invalidField('ignore_eos', 'ignore_eos must be true or false');
  const minTokens = number(input, rules, 'min_tokens', 0, maxNew, 0, true);
  const requested = parseGuide(input);
  if (requested && tools?.guide) {
    const field = requested.field.split('.')[0]!;
    throw invalidField(field, `send either tools (with tool_choice "${tools.choice.mode}") or ${field}; to use both, set tool_choice to "none"`);
  }
  const guide = tools?.guide ?? requested;
  const toolChoice = tools ? tools.choice : admittedChoice(input.tool_choice);
  return {
    prompt_tokens: tokens,
    max_new_tokens: maxNew,
    temperature: number(input, rules, 'temperature', 0, 2, 0),
    top_k: number(input, rules, 'top_k', 0, rules.vocabSize, 0, true),
    top_p: number(input, rules, 'top_p', 0.001, 1, 1),
    min_p: number(input, rules, 'min_p', 0, 1, 0),
    repetition_penalty: number(input, rules, 'repetition_penalty', 0.01, 10, 1),
    presence_penalty: number(input, rules, 'presence_penalty', -2, 2, 0),
    frequency_penalty: number(input, rules, 'frequency_penalty', -2, 2, 0),
    logit_bias: bias,
    seed: number(input, rules, 'seed', 0, 2 ** 32 - 1, randomInt(0, 2 ** 32 - 1), true),
    stop: stop as string[],
    stop_token_ids: stopIds as number[],
    min_tokens: minTokens,
    ignore_eos: ignoreEos,
    ...(promptLogprobs === undefined ? {} : { prompt_logprobs: promptLogprobs }),
    ...resumePoint(input, rules, maxNew),
    // Asking for alternatives asks for log-probabilities.
    logprobs: logprobs || topLogprobs > 0,
    top_logprobs: topLogprobs,
    stream,
    ...(guide ? { guide } : {}),
    ...(toolChoice ? { tool_choice: toolChoice } : {}),
  };
}

/** tool_choice in its admitted form ({mode, name}), read back; undefined where there were no tools. */
function admittedChoice(value: unknown): ToolChoice | undefined {
  if (value === undefined || value === null) return undefined;
  const c = value as { mode?: unknown; name?: unknown };
  if (c.mode === 'none' || c.mode === 'auto' || c.mode === 'required') return { mode: c.mode };
  if (c.mode === 'named' && typeof c.name === 'string') return { mode: 'named', name: c.name };
  throw invalidField('tool_choice', 'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}');
}

/** Where a retried attempt starts (the batcher merges it in when a worker died under the request): checked as any field is. */
function resumePoint(input: Readonly<Record<string, unknown>>, rules: TextGenerationRules, maxNew: number): { resume_tokens?: number[]; resume_chars?: number } {
  if (input.resume_tokens === undefined) return {};
  const tokens = input.resume_tokens;
  if (!Array.isArray(tokens) || tokens.length > maxNew || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < rules.vocabSize)) {
    throw invalidField('resume_tokens', `resume_tokens must be at most ${maxNew} token ids from 0 to ${rules.vocabSize - 1}`);
  }
  return { resume_tokens: tokens as number[], resume_chars: number(input, rules, 'resume_chars', 0, Number.MAX_SAFE_INTEGER, 0, true) };
}

function parseBias(value: unknown, vocab: number): [number, number][] {
  if (value === undefined || value === null) return [];
  // Admitted form: pairs; client form: {"token id": bias} (OpenAI).
  const entries: [unknown, unknown][] = Array.isArray(value) ? (value as [unknown, unknown][]) : typeof value === 'object' ? Object.entries(value as Record<string, unknown>) : [];
  if ((!Array.isArray(value) && typeof value !== 'object') || entries.length > 300) throw invalidField('logit_bias', 'logit_bias must map token ids to a bias from -100 to 100 (at most 300 entries)');
  return entries.map(([k, v]) => {
    const id = Number(k);
    if (!Number.isInteger(id) || id < 0 || id >= vocab || typeof v !== 'number' || v < -100 || v > 100) {
      throw invalidField('logit_bias', `logit_bias maps token ids (0 to ${vocab - 1}) to a bias from -100 to 100; got ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
    }
    return [id, v];
  });
}
