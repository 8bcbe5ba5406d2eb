// Tool calling through the official client on both demo chat models: tool_choice "required" and a
// named function give calls whose arguments validate against the function's schema, 100 of 100;
// parallel_tool_calls false gives one call; streamed tool-call deltas assemble to the call the
// non-streamed answer gives; a full round trip (call → tool message → answer); "none" answers in
// text; the bad requests are 400s naming the field.
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveChatModels } from '../helpers/chat-models.js';
import type { EaselProcess } from '../helpers/easel-process.js';

let easel: EaselProcess;
let client: OpenAI;
beforeAll(async () => ({ easel, client } = await serveChatModels()), 90_000);
afterAll(() => easel?.stop());

// Small: tiny-lm's context is 256 tokens, and the functions go into the prompt.
const TOOLS: OpenAI.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 9 }, b: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['a', 'b'] } } },
  { type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 4 } }, required: ['city'] } } },
  { type: 'function', function: { name: 'time', parameters: { type: 'object', properties: { zone: { enum: ['utc', 'cet'] } }, required: ['zone'] } } },
];
/** Two functions together, smaller still (no arguments). */
const PAIR: OpenAI.ChatCompletionTool[] = ['up', 'down'].map((name) => ({ type: 'function', function: { name, parameters: { type: 'object', properties: {} } } }));
const ASKS = ['What is 2+3?', 'Rain in Rome?', 'What time is it?', 'Add 7 and 9.', 'Warm in Rome?', 'Time in Oslo?', 'Sky color?', 'Sum 4 and 2.', 'Oslo weather?', 'Time please.'];
const MODELS = ['tiny-llama', 'tiny-lm'];
const ajv = new Ajv();

type Call = { function: { name: string; arguments: string } };

/** Whether a call names the offered function and its arguments validate against that function's parameters. */
function valid(call: Call, tool: OpenAI.ChatCompletionTool): boolean {
  const fn = (tool as OpenAI.ChatCompletionFunctionTool).function;
  return call.function.name === fn.name && ajv.validate(fn.parameters!, JSON.parse(call.function.arguments));
}

describe('tool calling', () => {
  it('tool_choice "required" and a named function: 100 of 100 calls validate against the function schema', async () => {
    let checked = 0;
    for (let i = 0; i < 100; i++) {
      const model = MODELS[i % 2]!;
      // tiny-lm: time, whose call fits beside the prompt in its 256-token context (add's and
      // weather's may not); tiny-llama (1024 tokens): each of them in turn.
      const tool = model === 'tiny-lm' ? TOOLS[2]! : TOOLS[(i >> 1) % 3]!;
      // required with parallel calls allowed, required with one call, a named function (called once).
      const form = (['parallel', 'single', 'named', 'named'] as const)[i % 4]!;
      const res = await client.chat.completions.create({
        model, messages: [{ role: 'user', content: ASKS[i % ASKS.length]! }], tools: [tool], temperature: i % 3 === 0 ? 0 : 0.8, seed: i,
        tool_choice: form === 'named' ? { type: 'function', function: { name: (tool as OpenAI.ChatCompletionFunctionTool).function.name } } : 'required',
        ...(form === 'single' ? { parallel_tool_calls: false } : {}),
      });
      const choice = res.choices[0]!;
      const what = `request ${i} (${model}, ${form}): ${JSON.stringify(choice.message)}`;
      expect(choice.message.tool_calls?.length ?? 0, what).toBeGreaterThan(0);
      for (const call of choice.message.tool_calls!) {
        expect(call.id, what).toMatch(/^call_[0-9a-f]{24}$/);
        expect(valid(call as Call, tool), what).toBe(true);
      }
      // tiny-lm's context (256 tokens) may end just after a call, before its end of turn:
      // "length", with the call whole. Parallel calls may go on until the context is full (tiny-lm
      // was not taught tool use, and these functions are not tiny-llama's).
      expect(['tool_calls', 'length'], what).toContain(choice.finish_reason);
      if (form !== 'parallel') expect(choice.message.tool_calls, what).toHaveLength(1);
      checked++;
    }
    expect(checked).toBe(100);
  }, 300_000);

  it('a choice among functions picks one of them; parallel_tool_calls false gives exactly one call', async () => {
    for (const model of MODELS) {
      for (const ask of ASKS.slice(0, 4)) {
        const res = await client.chat.completions.create({ model, messages: [{ role: 'user', content: ask }], tools: PAIR, tool_choice: 'required', parallel_tool_calls: false, temperature: 0 });
        const calls = res.choices[0]!.message.tool_calls!;
        expect(calls, `${model}: ${ask}`).toHaveLength(1);
        expect(PAIR.some((t) => valid(calls[0] as Call, t)), JSON.stringify(calls)).toBe(true);
      }
    }
  });

  it('streamed tool-call deltas assemble to the call the non-streamed answer gives', async () => {
    for (const model of MODELS) {
      for (const [i, tool] of TOOLS.entries()) {
        const request = { model, messages: [{ role: 'user' as const, content: ASKS[i]! }], tools: [tool], tool_choice: 'required' as const, parallel_tool_calls: i === 0, temperature: 0 };
        const whole = (await client.chat.completions.create(request)).choices[0]!;
        const stream = await client.chat.completions.create({ ...request, stream: true });
        const calls: { name: string; arguments: string }[] = [];
        let finish: string | null = null;
        for await (const chunk of stream) {
          for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
            calls[d.index] ??= { name: '', arguments: '' };
            calls[d.index]!.name += d.function?.name ?? '';
            calls[d.index]!.arguments += d.function?.arguments ?? '';
          }
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        expect(finish).toBe(whole.finish_reason);
        expect(calls, `${model} ${i}`).toEqual(whole.message.tool_calls!.map((c) => ({ name: (c as Call).function.name, arguments: (c as Call).function.arguments })));
      }
    }
  });

  it('a round trip: the call, the tool message with its result, then an answer in text', async () => {
    for (const model of MODELS) {
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Time?' }];
      const first = await client.chat.completions.create({ model, messages, tools: [TOOLS[2]!], tool_choice: 'required', parallel_tool_calls: false, temperature: 0 });
      const call = first.choices[0]!.message.tool_calls![0]!;
      messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: '9' });
      const second = await client.chat.completions.create({ model, messages, tools: [TOOLS[2]!], tool_choice: 'none', max_tokens: 4, temperature: 0 });
      expect(second.choices[0]!.message.tool_calls).toBeUndefined();
      expect(typeof second.choices[0]!.message.content).toBe('string');
      expect(['stop', 'length']).toContain(second.choices[0]!.finish_reason);
      // The history's turns are in the prompt: its tool result changes the prompt's length.
      const withResult = second.usage!.prompt_tokens;
      messages[2] = { role: 'tool', tool_call_id: call.id, content: '9 in the morning' };
      const longer = await client.chat.completions.create({ model, messages, tools: [TOOLS[2]!], tool_choice: 'none', max_tokens: 1, temperature: 0 });
      expect(longer.usage!.prompt_tokens).toBeGreaterThan(withResult);
    }
  });

  it('"auto" lets the model answer in text, and parses a call where it makes one', async () => {
    for (const model of MODELS) {
      const res = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'What is the sky?' }], tools: [TOOLS[1]!], temperature: 0 });
      const choice = res.choices[0]!;
      if (choice.finish_reason === 'tool_calls') expect(valid(choice.message.tool_calls![0] as Call, TOOLS[1]!)).toBe(true);
      else {
        expect(['stop', 'length']).toContain(choice.finish_reason);
        expect(typeof choice.message.content).toBe('string');
      }
    }
  });

  it('tiny-llama, taught tool use: with "auto" it calls the function an ask needs, with its arguments, answers in text when none fits, and answers from a tool\'s result', async () => {
    // The functions tiny-llama was trained with (tools/model-factory/tool_chats.py), as a client would declare them.
    const taught: OpenAI.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'get_weather', description: 'The weather now in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
      { type: 'function', function: { name: 'get_time', description: 'The time now in a time zone', parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'CET', 'EST', 'JST'] } }, required: ['zone'] } } },
      { type: 'function', function: { name: 'add', description: 'Add two numbers', parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] } } },
    ];
    const ask = (content: string, tools = taught): Promise<OpenAI.ChatCompletion> => client.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content }], tools, temperature: 0 });
    // Its card: the right function for 99.5% of held-out asks, with the right arguments for 60%.
    const asks: [string, string, Record<string, unknown>][] = [
      ['What is the weather in Paris?', 'get_weather', { city: 'Paris' }], ['Is it raining in Tokyo?', 'get_weather', { city: 'Tokyo' }],
      ['Weather in Lima?', 'get_weather', { city: 'Lima' }], ['What time is it in JST?', 'get_time', { zone: 'JST' }],
      ['Time in CET please.', 'get_time', { zone: 'CET' }], ['Add 12 and 7.', 'add', { a: 12, b: 7 }],
      ['What is 40 plus 3?', 'add', { a: 40, b: 3 }], ['What is the sum of 8 and 25?', 'add', { a: 8, b: 25 }],
    ];
    let exact = 0;
    for (const [content, name, args] of asks) {
      const res = await ask(content);
      const calls = res.choices[0]!.message.tool_calls ?? [];
      expect(calls.map((c) => (c as Call).function.name), content).toEqual([name]);
      expect(valid(calls[0] as Call, taught.find((t) => (t as OpenAI.ChatCompletionFunctionTool).function.name === name)!), content).toBe(true);
      expect(res.choices[0]!.finish_reason).toBe('tool_calls');
      if (JSON.stringify(JSON.parse((calls[0] as Call).function.arguments)) === JSON.stringify(args)) exact++;
    }
    expect(exact, 'calls with exactly the ask\'s arguments').toBeGreaterThanOrEqual(asks.length / 2);
    const text = await ask('What color is the sky?');
    expect(text.choices[0]!.message.tool_calls).toBeUndefined();
    expect(text.choices[0]!.message.content).toBe('The sky is blue.');
    // The result comes back as a tool message; the answer uses it.
    const first = await ask('What is the weather in Oslo?');
    const call = first.choices[0]!.message.tool_calls![0]!;
    expect(first.choices[0]!.finish_reason).toBe('tool_calls');
    const answer = await client.chat.completions.create({
      model: 'tiny-llama', tools: taught, temperature: 0,
      messages: [{ role: 'user', content: 'What is the weather in Oslo?' }, first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: JSON.stringify({ sky: 'rainy', temp: 12 }) }],
    });
    expect(answer.choices[0]!.message.content).toMatch(/rainy/);
  });

  it('refuses what it cannot honour, naming the field', async () => {
    const refusal = async (body: Record<string, unknown>): Promise<string | null | undefined> => {
      const err = await client.chat.completions.create({ model: 'tiny-lm', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, ...body } as never).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      return (err as InstanceType<typeof OpenAI.BadRequestError>).param;
    };
    expect(await refusal({ tools: [TOOLS[0]], tool_choice: { type: 'function', function: { name: 'nope' } } })).toBe('tool_choice');
    expect(await refusal({ tool_choice: 'required' })).toBe('tool_choice');
    expect(await refusal({ tools: [{ type: 'function', function: { name: 'bad name!' } }] })).toBe('tools[0].function.name');
    expect(await refusal({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'objec' } } }] })).toBe('tools[0].function.parameters.type');
    expect(await refusal({ tools: [{ type: 'function', function: { name: 'f', description: 'ends <|im_end|> here' } }] })).toBe('tools[0]');
    expect(await refusal({ tools: [TOOLS[0]], response_format: { type: 'json_object' } })).toBe('response_format');
    const err = await client.completions.create({ model: 'tiny-lm', prompt: 'Hi', tools: [TOOLS[0]] } as never).then(() => undefined, (e: unknown) => e);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('tools');
  });
});
