// Tool calling (OpenAI's `tools`, `tool_choice`, `parallel_tool_calls`), in the Hermes/Qwen
// format the demo chat templates use: the functions go into the prompt through the model's chat
// template; a call comes out as `<tool_call>{"name": …, "arguments": {…}}</tool_call>`. With
// `tool_choice` "required" or a named function the output is constrained to calls from its first
// token (xgrammar's structural tags); with "auto" the model may answer in text, and a call it
// starts is constrained from its opening tag on. The text is parsed back into calls here, whole
// (a finished answer) or as it streams.
import { randomUUID } from 'node:crypto';
import { invalidField } from '../errors/easel-error.js';
import type { GuideSpec } from '../pipelines/text/guided.js';
import type { ToolDefinition } from '../pipelines/text/text-tokenizer.js';
import { checkSchema } from './guided-request.js';

export const TOOL_FIELDS = ['tools', 'tool_choice', 'parallel_tool_calls'] as const;

/** How the model may call the tools: OpenAI's tool_choice, a named function as its name. */
export type ToolChoice = { readonly mode: 'none' | 'auto' | 'required' } | { readonly mode: 'named'; readonly name: string };

export interface ToolRequest {
  readonly tools: ToolDefinition[];
  readonly choice: ToolChoice;
  /** The grammar the answer follows (none for tool_choice "none"). */
  readonly guide: GuideSpec | undefined;
}

const MAX_TOOLS = 64;
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const OPEN = '<tool_call>';
const CLOSE = '</tool_call>';

/** The tools a request offers and how they may be called, or undefined without tools; a 400 naming the field otherwise. `markup`: strings that may not appear in what the template renders as markup (the added tokens'). */
export function parseToolRequest(input: Readonly<Record<string, unknown>>, markup: readonly string[]): ToolRequest | undefined {
  const { tools: raw, tool_choice: rawChoice, parallel_tool_calls: parallel } = input;
  if (raw === undefined || raw === null) {
    if (rawChoice !== undefined && rawChoice !== null && rawChoice !== 'none') throw invalidField('tool_choice', 'tool_choice needs tools');
    return undefined;
  }
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_TOOLS) throw invalidField('tools', `tools must be a list of 1 to ${MAX_TOOLS} functions`);
  const tools = raw.map((t: unknown, i): ToolDefinition => {
    const at = `tools[${i}]`;
    const f = (t as { type?: unknown; function?: Record<string, unknown> } | null)?.function;
    if ((t as { type?: unknown } | null)?.type !== 'function' || !f || typeof f !== 'object') throw invalidField(at, `${at} must be {"type": "function", "function": {"name", "description", "parameters"}}`);
    if (typeof f.name !== 'string' || !NAME.test(f.name)) throw invalidField(`${at}.function.name`, 'a function name is 1 to 64 letters, digits, underscores or dashes');
    if (f.description !== undefined && (typeof f.description !== 'string' || f.description.length > 1024)) throw invalidField(`${at}.function.description`, 'a description is a string of at most 1024 characters');
    const parameters = f.parameters === undefined ? undefined : checkSchema(f.parameters, `${at}.function.parameters`);
    const fn = { name: f.name, ...(f.description !== undefined ? { description: f.description } : {}), ...(parameters !== undefined ? { parameters } : {}) };
    refuseMarkup(JSON.stringify(fn), markup, at);
    return { type: 'function', function: fn };
  });
  const names = new Set(tools.map((t) => t.function.name));
  if (names.size !== tools.length) throw invalidField('tools', 'each function needs its own name');
  const choice = parseChoice(rawChoice, names);
  if (parallel !== undefined && parallel !== null && typeof parallel !== 'boolean') throw invalidField('parallel_tool_calls', 'parallel_tool_calls must be true or false');
  if (choice.mode === 'none') return { tools, choice, guide: undefined };
  const offered = choice.mode === 'named' ? tools.filter((t) => t.function.name === choice.name) : tools;
  return {
    tools,
    choice,
    guide: {
      type: 'tools',
      tools: offered.map((t) => ({ name: t.function.name, parameters: t.function.parameters ?? { type: 'object' } })),
      required: choice.mode !== 'auto',
      // A named function is called once; otherwise OpenAI's default: calls may come together.
      parallel: choice.mode !== 'named' && parallel !== false,
      field: 'tools',
    },
  };
}

function parseChoice(value: unknown, names: ReadonlySet<string>): ToolChoice {
  if (value === undefined || value === null || value === 'auto') return { mode: 'auto' };
  if (value === 'none' || value === 'required') return { mode: value };
  const name = (value as { type?: unknown; function?: { name?: unknown } }).function?.name;
  if ((value as { type?: unknown }).type !== 'function' || typeof name !== 'string') throw invalidField('tool_choice', 'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}');
  if (!names.has(name)) throw invalidField('tool_choice', `tool_choice names ${JSON.stringify(name)}, which is not among tools: ${[...names].join(', ')}`);
  return { mode: 'named', name };
}

/** A 400 when text the template renders as markup spells an added token (`<|im_end|>`): a request may not write turns. */
export function refuseMarkup(text: string, markup: readonly string[], field: string): void {
  const found = markup.find((m) => text.includes(m));
  if (found !== undefined) throw invalidField(field, `${field} may not contain the model's special token ${JSON.stringify(found)}`);
}

/** A call parsed from the model's text: `arguments` as JSON text (OpenAI's). */
export interface ParsedToolCall {
  readonly id: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: string };
}

/** A call's id, as OpenAI's look. */
export function toolCallId(): string {
  return `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`;
}

/** One `<tool_call>` block's JSON as a call, or undefined when it is not `{"name": string, "arguments": object}`. */
function parseCall(body: string): ParsedToolCall | undefined {
  try {
    const call = JSON.parse(body) as { name?: unknown; arguments?: unknown };
    if (typeof call.name !== 'string' || typeof call.arguments !== 'object' || call.arguments === null || Array.isArray(call.arguments)) return undefined;
    return { id: toolCallId(), type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments) } };
  } catch {
    return undefined;
  }
}

/** A finished answer's text split into its calls and the text around them (null when there is none). */
export function extractToolCalls(text: string): { content: string | null; calls: ParsedToolCall[] } {
  const stream = new ToolCallStream();
  const parts = [...stream.push(text), ...stream.end()];
  const content = parts.flatMap((p) => ('text' in p ? [p.text] : [])).join('');
  return { content: content.trim() === '' ? null : content, calls: parts.flatMap((p) => ('call' in p ? [p.call] : [])) };
}

export type ToolStreamPart = { readonly text: string } | { readonly call: ParsedToolCall };

/**
 * Splits streamed text into text and calls: text passes on at once, except an end that may be the
 * start of `<tool_call>`; a call is held until its `</tool_call>` and then passed on whole. A
 * block that does not parse as a call passes on as the text it was.
 */
export class ToolCallStream {
  #held = '';
  /** A call just ended: a newline after it (between parallel calls, as Hermes's format writes them) belongs to it. */
  #afterCall = false;

  push(delta: string): ToolStreamPart[] {
    this.#held += delta;
    const out: ToolStreamPart[] = [];
    for (;;) {
      if (this.#afterCall && this.#held !== '') {
        if (this.#held.startsWith('\n')) this.#held = this.#held.slice(1);
        this.#afterCall = false;
      }
      const open = this.#held.indexOf(OPEN);
      if (open < 0) {
        // Keep back what may be the start of an opening tag.
        const keep = partialTag(this.#held, OPEN);
        if (this.#held.length > keep) out.push({ text: this.#held.slice(0, this.#held.length - keep) });
        this.#held = this.#held.slice(this.#held.length - keep);
        return out;
      }
      if (open > 0) out.push({ text: this.#held.slice(0, open) });
      const close = this.#held.indexOf(CLOSE, open);
      if (close < 0) {
        this.#held = this.#held.slice(open);
        return out;
      }
      const block = this.#held.slice(open, close + CLOSE.length);
      const call = parseCall(this.#held.slice(open + OPEN.length, close).trim());
      out.push(call ? { call } : { text: block });
      this.#afterCall = call !== undefined;
      this.#held = this.#held.slice(close + CLOSE.length);
    }
  }

  /**
   * What is still held at the end. A call cut by length whose JSON is whole (its closing tag not
   * written, or written in part) is a call, as vLLM's Hermes parser reads an unclosed last
   * `<tool_call>`; anything else passes on as text.
   */
  end(): ToolStreamPart[] {
    const rest = this.#held;
    this.#held = '';
    if (rest.startsWith(OPEN)) {
      const body = rest.slice(OPEN.length);
      const call = parseCall(body.slice(0, body.length - partialTag(body, CLOSE)).trim());
      if (call) return [{ call }];
    }
    return rest ? [{ text: rest }] : [];
  }
}

/** How many characters at the end of `text` may be the start of `tag` (the longest such end; 0 when none). */
function partialTag(text: string, tag: string): number {
  for (let k = Math.min(tag.length - 1, text.length); k > 0; k--) if (tag.startsWith(text.slice(-k))) return k;
  return 0;
}
