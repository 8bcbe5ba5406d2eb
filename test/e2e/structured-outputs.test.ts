// Structured outputs through the official client: `chat.completions.parse()` with zod schemas
// (openai's zodResponseFormat) on both demo chat models, streamed and not — 50 seeded random
// schemas (objects, arrays, enums, nesting, nullable fields, string formats) — every answer parses
// and validates unless it ended by length, and the streamed answer is the non-streamed one;
// vLLM's guided_choice, guided_regex, guided_grammar and guided_json on the OpenAI routes and on
// /predictions; a schema the server cannot use is a 400 naming the path at fault, before or after
// the grammar engine sees it.
import OpenAI from 'openai';
import { LengthFinishReasonError } from 'openai/error';
import { zodResponseFormat } from 'openai/helpers/zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { serveChatModels } from '../helpers/chat-models.js';
import type { EaselProcess } from '../helpers/easel-process.js';
import { seededRandom } from '../helpers/seeded-random.js';

let easel: EaselProcess;
let client: OpenAI;
beforeAll(async () => ({ easel, client } = await serveChatModels()), 90_000);
afterAll(() => easel?.stop());

const WORDS = ['red', 'blue', 'cat', 'dog', 'sun', 'tree', 'ball', 'kite', 'park', 'moon'];

/** A random zod schema: an object of 1–4 fields, each a bounded string, integer, boolean, enum, string format, array, nullable or nested object. */
function randomSchema(next: () => number, depth = 0): z.ZodObject {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  const field = (): z.ZodType => {
    // No bounded floats: xgrammar 0.1.27's range for {"type": "number", "maximum": 2} lets "2.5" through.
    const kind = pick(['string', 'integer', 'boolean', 'enum', 'format', 'array', 'nullable', depth < 1 ? 'object' : 'enum'] as const);
    switch (kind) {
      case 'string':
        return z.string().max(int(3, 16));
      case 'integer':
        return z.number().int().min(int(-5, 5)).max(int(6, 500));
      case 'boolean':
        return z.boolean();
      case 'enum':
        return z.enum([...new Set(Array.from({ length: int(2, 4) }, () => pick(WORDS)))].concat(['other']) as [string, ...string[]]);
      case 'format':
        return pick([z.email(), z.iso.date(), z.ipv4()]);
      case 'array':
        return z.array(pick([z.boolean(), z.enum(['a', 'b', 'c']), z.number().int().min(0).max(9)])).min(int(0, 1)).max(int(1, 3));
      case 'nullable':
        return z.string().max(int(2, 8)).nullable();
      case 'object':
        return randomSchema(next, depth + 1);
    }
  };
  const names = [...new Set(Array.from({ length: int(1, 4) }, () => pick(['name', 'color', 'count', 'size', 'kind', 'ok', 'items', 'where', 'when', 'score'])))];
  return z.object(Object.fromEntries(names.map((n) => [n, field()])));
}

const PROMPTS = ['Describe a cat as JSON.', 'What color is the sky?', 'Tell me about a dog.', 'Give me a ball.', 'What does a cow say?'];

describe('structured outputs (response_format)', () => {
  it('chat.completions.parse() with 50 random zod schemas on both chat models, streamed and not: every answer that ends parses and validates; the stream says what the answer says', async () => {
    const next = seededRandom(29);
    let ended = 0;
    let cut = 0;
    for (let i = 0; i < 50; i++) {
      const schema = randomSchema(next);
      const model = i % 2 === 0 ? 'tiny-llama' : 'tiny-lm';
      const request = { model, messages: [{ role: 'user' as const, content: PROMPTS[i % PROMPTS.length]! }], max_tokens: 160, temperature: 0, response_format: zodResponseFormat(schema, `schema_${i}`) };
      const completion = await client.chat.completions.parse(request).catch((err: Error) => err);
      const streamed = await client.chat.completions.stream(request).finalChatCompletion().catch((err: Error) => err);
      if (completion instanceof LengthFinishReasonError) {
        // Cut short by max_tokens: OpenAI's client refuses to parse it, and so does the stream's.
        expect(streamed, `schema ${i} streamed`).toBeInstanceOf(LengthFinishReasonError);
        cut++;
        continue;
      }
      if (completion instanceof Error) throw completion;
      const message = completion.choices[0]!.message;
      expect(completion.choices[0]!.finish_reason).toBe('stop');
      // parse() validated it against the zod schema; validate again to say which schema failed.
      expect(schema.safeParse(JSON.parse(message.content!)).success, `schema ${i} on ${model}: ${message.content}`).toBe(true);
      expect(message.parsed, `schema ${i}`).toEqual(schema.parse(JSON.parse(message.content!)));
      if (streamed instanceof Error) throw streamed;
      expect(streamed.choices[0]!.message.content, `schema ${i} streamed`).toBe(message.content);
      ended++;
    }
    console.log(`structured outputs: ${ended} of 50 answers ended, ${cut} were cut by max_tokens`);
    // Most answers end: the grammars bound every number and string.
    expect(ended, `${ended} ended, ${cut} cut by length`).toBeGreaterThanOrEqual(35);
  }, 300_000);

  it('json_object gives a JSON object (or a prefix of one, cut by length)', async () => {
    for (const model of ['tiny-llama', 'tiny-lm']) {
      const res = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'What does a cat say?' }], max_tokens: 40, temperature: 0, response_format: { type: 'json_object' } });
      const { content } = res.choices[0]!.message;
      expect(content!.startsWith('{'), content!).toBe(true);
      if (res.choices[0]!.finish_reason === 'stop') expect(typeof JSON.parse(content!)).toBe('object');
    }
  });
});

describe("vLLM's guided decoding fields", () => {
  it('guided_choice, guided_regex and guided_grammar on completions and chat, streamed and not', async () => {
    const choices = ['yes', 'no', 'maybe'];
    for (const model of ['tiny-llama', 'tiny-lm']) {
      const chosen = await client.completions.create({ model, prompt: 'Is the sky blue?', max_tokens: 10, temperature: 0, guided_choice: choices } as never);
      expect(choices).toContain(chosen.choices[0]!.text);
      const phone = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Call me.' }], max_tokens: 20, temperature: 0, guided_regex: '[0-9]{3}-[0-9]{4}' } as never);
      expect(phone.choices[0]!.message.content).toMatch(/^[0-9]{3}-[0-9]{4}$/);
      const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'What does a dog say?' }], max_tokens: 30, temperature: 0, stream: true, guided_grammar: 'root ::= "The " animal " says " [a-z]+ "."\nanimal ::= "dog" | "cat"' } as never);
      let text = '';
      for await (const chunk of stream as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>) text += chunk.choices[0]?.delta.content ?? '';
      expect(text).toMatch(/^The (dog|cat) says [a-z]+\.$/);
    }
  });

  it('/predictions and jobs take the same fields: guided_json', async () => {
    const schema = { type: 'object', properties: { animal: { enum: ['cat', 'dog'] }, legs: { type: 'integer', minimum: 0, maximum: 8 } }, required: ['animal', 'legs'] };
    const res = await fetch(`${easel.inference}/predictions/tiny-llama`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'A cat has', max_new_tokens: 40, temperature: 0, guided_json: schema }) });
    expect(res.status).toBe(200);
    const answer = JSON.parse(await res.text()) as { animal: string; legs: number };
    expect(['cat', 'dog']).toContain(answer.animal);
    expect(answer.legs).toBeGreaterThanOrEqual(0);
    const job = (await (await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-lm', input: { prompt: 'A dog has', max_new_tokens: 40, temperature: 0, guided_json: JSON.stringify(schema) } }) })).json()) as { id: string };
    let done: { status: string; result?: unknown } | undefined;
    for (let i = 0; i < 100 && done?.status !== 'succeeded'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      done = (await (await fetch(`${easel.inference}/v1/jobs/${job.id}`)).json()) as { status: string };
    }
    expect(done?.status).toBe('succeeded');
    const output = await (await fetch(`${easel.inference}/v1/jobs/${job.id}/outputs/0`)).text();
    expect(JSON.parse(output)).toMatchObject({ animal: expect.stringMatching(/^(cat|dog)$/) });
  });
});

describe('schemas the server cannot use', () => {
  /** The 400 the client raises, with the field it names. */
  const refusal = async (call: () => Promise<unknown>): Promise<{ param: string | null | undefined; message: string }> => {
    const err = await call().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    return { param: e.param, message: e.message };
  };
  const ask = { model: 'tiny-lm', messages: [{ role: 'user' as const, content: 'Hi' }], max_tokens: 8 };
  const withSchema = (schema: unknown): Record<string, unknown> => ({ ...ask, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });

  it('a 400 naming the schema path: a wrong type name, a $ref that points nowhere; a 400 for nesting past the limit, a schema too large, two guides', async () => {
    for (const stream of [false, true]) {
      const typo = await refusal(() => client.chat.completions.create({ ...withSchema({ type: 'object', properties: { age: { type: 'int' } } }), stream } as never));
      expect(typo.param).toBe('response_format.json_schema.schema.properties.age.type');
      expect(typo.message).toMatch(/type must be one of string, number, integer/);
    }
    const ref = await refusal(() => client.chat.completions.create(withSchema({ type: 'object', properties: { a: { $ref: '#/$defs/missing' } } }) as never));
    expect(ref.param).toBe('response_format.json_schema.schema.properties.a.$ref');
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) deep = { type: 'object', properties: { a: deep } };
    // The body's own depth limit (32) refuses it before the schema is read.
    expect((await refusal(() => client.chat.completions.create(withSchema(deep) as never))).message).toMatch(/nested deeper than 32/);
    const huge = { type: 'object', properties: { a: { type: 'string', description: 'words '.repeat(4000) } } };
    expect((await refusal(() => client.chat.completions.create(withSchema(huge) as never))).message).toMatch(/at most 16384/);
    const two = await refusal(() => client.chat.completions.create({ ...ask, response_format: { type: 'json_object' }, guided_regex: 'a+' } as never));
    expect(two.param).toBe('guided_regex');
  });

  it("what only the grammar engine can judge is a 400 too, naming the field, and the worker goes on serving", async () => {
    const regex = await refusal(() => client.chat.completions.create({ ...ask, guided_regex: '([a-z' } as never));
    expect(regex.param).toBe('guided_regex');
    expect(regex.message).toMatch(/xgrammar.*Unclosed/);
    const grammar = await refusal(() => client.completions.create({ model: 'tiny-lm', prompt: 'Hi', max_tokens: 4, guided_grammar: 'root ::= ' } as never));
    expect(grammar.param).toBe('guided_grammar');
    const ok = await client.completions.create({ model: 'tiny-lm', prompt: 'Hi', max_tokens: 4, guided_choice: ['ok'] } as never);
    expect(ok.choices[0]!.text).toBe('ok');
  });

  it('hostile schemas: each is a 4xx or an answer within seconds, and the API process answers /ping all the while', async () => {
    let arrays: Record<string, unknown> = { type: 'string', maxLength: 1000 };
    for (let i = 0; i < 3; i++) arrays = { type: 'array', maxItems: 1000, items: arrays };
    const hostile: [string, Record<string, unknown>][] = [
      ['nested arrays', { guided_json: arrays }],
      ['a huge enum', { guided_json: { enum: Array.from({ length: 1200 }, (_, i) => `v${i}`) } }],
      ['a recursion that never ends', { guided_json: { type: 'object', properties: { child: { $ref: '#' } }, required: ['child'] } }],
      ['200 alternatives', { guided_json: { anyOf: Array.from({ length: 200 }, (_, i) => ({ type: 'object', properties: { [`k${i}`]: { type: 'integer' } }, required: [`k${i}`] })) } }],
      ['a billion characters', { guided_json: { type: 'string', maxLength: 1e9 } }],
      ['nested repetitions', { guided_regex: '((a{100}){100}){100}' }],
      ['a 1 MB schema', { guided_json: { type: 'object', description: 'x'.repeat(1 << 20) } }],
    ];
    let slowest = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const t0 = performance.now();
        await fetch(`${easel.inference}/ping`);
        slowest = Math.max(slowest, performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    for (const [what, guide] of hostile) {
      const t0 = performance.now();
      const res = await fetch(`${easel.inference}/predictions/tiny-lm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Hi', max_new_tokens: 24, ...guide }), signal: AbortSignal.timeout(20_000) });
      const seconds = (performance.now() - t0) / 1000;
      expect(res.status === 200 || (res.status >= 400 && res.status < 500), `${what}: ${res.status} ${await res.text()}`).toBe(true);
      expect(seconds, what).toBeLessThan(10);
    }
    polling = false;
    await poll;
    expect(slowest, 'the slowest /ping (ms)').toBeLessThan(500);
  }, 120_000);
});
