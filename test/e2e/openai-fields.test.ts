// The OpenAI routes' field policy, row by row, through the official client: fields Easel cannot
// honour are refused with a 400 naming them (never silently ignored), unknown fields are refused,
// a non-text content part is refused, stop_token_ids is honoured, a chat route asked for an image
// model says so, and a request that fails validation fails before its stream starts (the client
// raises BadRequestError, streamed or not).
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, waitHealthy, type EaselProcess } from '../helpers/easel-process.js';

let easel: EaselProcess;
let client: OpenAI;
beforeAll(async () => {
  easel = await startEasel(['--models', `tiny-lm=${path.join(ROOT, 'models', 'tiny-lm')},tiny-sd=${path.join(ROOT, 'models', 'tiny-sd')}`]);
  await waitHealthy(easel, 60_000);
  client = new OpenAI({ baseURL: `${easel.inference}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 90_000);
afterAll(() => easel?.stop());

const ask = { model: 'tiny-lm', messages: [{ role: 'user' as const, content: 'What color is the sky?' }], max_tokens: 8, temperature: 0 };

/** The 400 the client raises, with the field it names. */
async function refusal(call: () => Promise<unknown>): Promise<{ param: string | null | undefined; message: string }> {
  const err = await call().then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  const e = err as InstanceType<typeof OpenAI.BadRequestError>;
  return { param: e.param, message: e.message };
}

describe('the OpenAI field policy', () => {
  it.each([
    ['functions', { functions: [{ name: 'f' }] }, /function calling is not supported/],
    ['frobnicate', { frobnicate: true }, /unknown field frobnicate/],
  ])('chat refuses %s with a 400 naming it, streamed or not', async (field, extra, why) => {
    for (const stream of [false, true]) {
      const r = await refusal(() => client.chat.completions.create({ ...ask, ...extra, stream } as never));
      expect(r.message).toMatch(why);
      expect(r.param).toBe(field);
    }
  });

  it('completions refuse suffix and best_of > 1, and take best_of 1', async () => {
    expect((await refusal(() => client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', suffix: ' the end.' }))).param).toBe('suffix');
    expect((await refusal(() => client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', best_of: 3 }))).param).toBe('best_of');
    const ok = await client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', best_of: 1, max_tokens: 2 });
    expect(ok.choices).toHaveLength(1);
  });

  it('refuses an image part for a text model, naming the part', async () => {
    const r = await refusal(() => client.chat.completions.create({ model: 'tiny-lm', messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }] }));
    expect(r.param).toBe('messages[0].content[1]');
    expect(r.message).toMatch(/reads text only/);
  });

  it('a prompt past the context fails before the stream starts: BadRequestError, not a 200 with an error chunk', async () => {
    const long = 'Tom had a red ball and a blue kite. '.repeat(60);
    const r = await refusal(() => client.chat.completions.create({ model: 'tiny-lm', messages: [{ role: 'user', content: long }], stream: true }));
    expect(r.message).toMatch(/context/);
  });

  it('says a chat route cannot serve an image model', async () => {
    const r = await refusal(() => client.chat.completions.create({ ...ask, model: 'tiny-sd' }));
    expect(r.param).toBe('model');
    expect(r.message).toMatch(/tiny-sd is a text-to-image model; \/v1\/chat\/completions serves text-generation models/);
  });

  it('honours stop_token_ids as /predictions does', async () => {
    const free = await client.completions.create({ model: 'tiny-lm', prompt: 'Once upon a time', max_tokens: 12, temperature: 0, logprobs: 0 });
    const ids = (free.choices[0]!.logprobs as unknown as { tokens: string[] }).tokens;
    expect(ids.length).toBeGreaterThan(3);
    // Stop at the id of the third token the free run made: the text ends before it.
    const predicted = (await (await fetch(`${easel.inference}/predictions/tiny-lm`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify({ prompt: 'Once upon a time', max_new_tokens: 12, temperature: 0, logprobs: true }) })).json()) as { logprobs: { token_id: number }[] };
    const third = predicted.logprobs[2]!.token_id;
    const stopped = await client.completions.create({ model: 'tiny-lm', prompt: 'Once upon a time', max_tokens: 12, temperature: 0, stop_token_ids: [third] } as never);
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(free.choices[0]!.text.startsWith(stopped.choices[0]!.text)).toBe(true);
    expect(stopped.choices[0]!.text.length).toBeLessThan(free.choices[0]!.text.length);
  });

  it("words the context error as OpenAI's, naming the field the client sent, refuses top_logprobs without logprobs, and lists max_model_len", async () => {
    const r = await refusal(() => client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', max_tokens: 1000 }));
    expect(r.param).toBe('max_tokens');
    expect(r.message).toMatch(/This model's maximum context length is 256 tokens\. However, you requested \d+ tokens/);
    expect((await refusal(() => client.chat.completions.create({ ...ask, top_logprobs: 2 }))).param).toBe('top_logprobs');
    const models = await client.models.list();
    expect(models.data.find((m) => m.id === 'tiny-lm')).toMatchObject({ max_model_len: 256 });
    expect(models.data.find((m) => m.id === 'tiny-sd')).not.toHaveProperty('max_model_len');
  });

  it('honours ignore_eos and min_tokens as vLLM does', async () => {
    const plain = await client.chat.completions.create({ ...ask, max_tokens: 40 });
    expect(plain.choices[0]!.finish_reason).toBe('stop');
    const short = plain.usage!.completion_tokens;
    expect(short).toBeLessThan(30);
    const ignoring = await client.chat.completions.create({ ...ask, max_tokens: 40, ignore_eos: true } as never);
    expect(ignoring.choices[0]!.finish_reason).toBe('length');
    expect(ignoring.usage!.completion_tokens).toBe(40);
    const atLeast = await client.chat.completions.create({ ...ask, max_tokens: 40, min_tokens: short + 5 } as never);
    expect(atLeast.usage!.completion_tokens).toBeGreaterThanOrEqual(short + 5);
    expect(atLeast.choices[0]!.message.content!.startsWith(plain.choices[0]!.message.content!)).toBe(true);
    expect((await refusal(() => client.chat.completions.create({ ...ask, max_tokens: 4, min_tokens: 9 } as never))).param).toBe('min_tokens');
  });

  it('streams logprobs in the chunks, chat and completions, the same as the unstreamed answer', async () => {
    const done = await client.completions.create({ model: 'tiny-lm', prompt: 'Once upon a time', max_tokens: 10, temperature: 0, logprobs: 2 });
    const tokens: string[] = [];
    const lps: number[] = [];
    for await (const c of await client.completions.create({ model: 'tiny-lm', prompt: 'Once upon a time', max_tokens: 10, temperature: 0, logprobs: 2, stream: true })) {
      const lp = c.choices[0]?.logprobs;
      if (lp) {
        tokens.push(...lp.tokens!);
        lps.push(...(lp.token_logprobs as number[]));
      }
    }
    expect(tokens).toEqual(done.choices[0]!.logprobs!.tokens);
    // Two runs of the same greedy request: the same tokens, scores equal but for float noise of their batches.
    lps.forEach((lp, i) => expect(lp).toBeCloseTo(done.choices[0]!.logprobs!.token_logprobs![i]!, 4));
    const chatDone = await client.chat.completions.create({ ...ask, logprobs: true, top_logprobs: 2 });
    const content: { token: string; logprob: number; top_logprobs: unknown[] }[] = [];
    for await (const c of await client.chat.completions.create({ ...ask, logprobs: true, top_logprobs: 2, stream: true })) content.push(...(c.choices[0]?.logprobs?.content ?? []));
    expect(content.map((c) => c.token)).toEqual(chatDone.choices[0]!.logprobs!.content!.map((c) => c.token));
    content.forEach((c, i) => expect(c.logprob).toBeCloseTo(chatDone.choices[0]!.logprobs!.content![i]!.logprob, 4));
    expect(content[0]!.top_logprobs).toHaveLength(2);
  });
});
