// Tool calls in and out: the request's tools become a grammar that takes one call or several as
// parallel_tool_calls says; an answer's text splits into its calls and the text around them,
// the same whether it comes whole or in any pieces.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Guides } from '../pipelines/text/guided.js';
import { TextTokenizer } from '../pipelines/text/text-tokenizer.js';
import { extractToolCalls, parseToolRequest, ToolCallStream } from './tool-calls.js';

const MODEL = path.resolve(import.meta.dirname, '../../models/tiny-lm');
const ADD = { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'] } } };
const TIME = { type: 'function', function: { name: 'time', parameters: { type: 'object', properties: { zone: { enum: ['utc', 'cet'] } }, required: ['zone'] } } };
const TWO = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n<tool_call>{"name": "time", "arguments": {"zone": "utc"}}</tool_call>';

describe('tool calls', () => {
  it('parallel_tool_calls decides whether the grammar takes a second call; a named function takes only itself', async () => {
    const tokenizer = TextTokenizer.load(MODEL);
    const guides = await Guides.load(MODEL, 741, [0, 2]);
    /** Whether the grammar takes the text token by token, and is complete after it. */
    const takes = async (input: Record<string, unknown>, text: string): Promise<boolean> => {
      const m = await guides.matcher(parseToolRequest(input, [])!.guide!);
      const ok = tokenizer.encode(text, false).every((t) => m.accept(t));
      const complete = ok && m.accept(0);
      m.dispose();
      return complete;
    };
    const one = TWO.split('\n')[0]!;
    expect(await takes({ tools: [ADD, TIME], tool_choice: 'required' }, TWO)).toBe(true);
    expect(await takes({ tools: [ADD, TIME], tool_choice: 'required', parallel_tool_calls: false }, TWO)).toBe(false);
    expect(await takes({ tools: [ADD, TIME], tool_choice: 'required', parallel_tool_calls: false }, one)).toBe(true);
    expect(await takes({ tools: [ADD, TIME], tool_choice: { type: 'function', function: { name: 'time' } } }, one)).toBe(false);
    // Arguments follow the function's parameters.
    expect(await takes({ tools: [ADD], tool_choice: 'required' }, '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')).toBe(false);
    // auto: text, or text and then a call.
    expect(await takes({ tools: [ADD, TIME] }, 'It is late.')).toBe(true);
    expect(await takes({ tools: [ADD, TIME] }, `Let me add. ${one}`)).toBe(true);
    expect(parseToolRequest({ tools: [ADD], tool_choice: 'none' }, [])!.guide).toBeUndefined();
  });

  it('splits an answer into its calls and its text, whole or in any pieces', () => {
    const text = `Sure. ${TWO} Done <tool_call>{"broken"}</tool_call><tool_ca`;
    const whole = extractToolCalls(text);
    expect(whole.calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([['add', { a: 1, b: 2 }], ['time', { zone: 'utc' }]]);
    expect(whole.content).toBe('Sure.  Done <tool_call>{"broken"}</tool_call><tool_ca');
    for (const size of [1, 2, 3, 7, 13]) {
      const stream = new ToolCallStream();
      const parts = [];
      for (let i = 0; i < text.length; i += size) parts.push(...stream.push(text.slice(i, i + size)));
      parts.push(...stream.end());
      expect(parts.flatMap((p) => ('text' in p ? [p.text] : [])).join(''), `pieces of ${size}`).toBe(whole.content);
      expect(parts.flatMap((p) => ('call' in p ? [p.call.function] : [])), `pieces of ${size}`).toEqual(whole.calls.map((c) => c.function));
    }
    expect(extractToolCalls('no calls here')).toEqual({ content: 'no calls here', calls: [] });
    // Cut by length after a whole call's JSON (its closing tag unwritten or in part): a call; inside the JSON: text.
    for (const cut of ['', '</tool', '</tool_call']) {
      const last = extractToolCalls(`<tool_call>{"name": "time", "arguments": {"zone": "utc"}}${cut}`);
      expect(last.calls.map((c) => [c.function.name, c.function.arguments]), cut).toEqual([['time', '{"zone":"utc"}']]);
      expect(last.content).toBeNull();
    }
    expect(extractToolCalls('<tool_call>{"name": "time", "arguments": {"zone": "u')).toEqual({ content: '<tool_call>{"name": "time", "arguments": {"zone": "u', calls: [] });
  });
});
