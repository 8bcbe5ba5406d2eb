// Token ids on the OpenAI surface, as vLLM serves them: POST /tokenize and /detokenize, and
// completion prompts given as token ids (one list, or a list of lists), which answer exactly as
// the same prompts given as text.
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, waitHealthy, type EaselProcess } from '../helpers/easel-process.js';

let easel: EaselProcess;
let client: OpenAI;
beforeAll(async () => {
  easel = await startEasel(['--models', `tiny-lm=${path.join(ROOT, 'models', 'tiny-lm')},tiny-llama=${path.join(ROOT, 'models', 'tiny-llama')},tiny-sd=${path.join(ROOT, 'models', 'tiny-sd')}`]);
  await waitHealthy(easel, 60_000);
  client = new OpenAI({ baseURL: `${easel.inference}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 90_000);
afterAll(() => easel?.stop());

const post = async (route: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
  const res = await fetch(`${easel.inference}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};

/** The prompt tokens admission makes of a job's input (queued, then cancelled). */
async function admitted(model: string, input: Record<string, unknown>): Promise<number[]> {
  const job = (await post('/v1/jobs', { model, input: { ...input, max_new_tokens: 1 } })).json as { id: string; input: { prompt_tokens: number[] } };
  await fetch(`${easel.inference}/v1/jobs/${job.id}`, { method: 'DELETE' });
  return job.input.prompt_tokens;
}

describe.each(['tiny-lm', 'tiny-llama'])('%s: /tokenize and /detokenize', (model) => {
  it('tokenize as admission does, prompts and chats; detokenize gives the text back', async () => {
    const prompt = 'Once upon a time, Tom had a red ball.';
    const t = await post('/tokenize', { model, prompt });
    expect(t.status).toBe(200);
    expect(t.json).toMatchObject({ count: (t.json.tokens as number[]).length, max_model_len: model === 'tiny-llama' ? 1024 : 256 });
    expect(t.json.tokens).toEqual(await admitted(model, { prompt }));
    const messages = [{ role: 'user', content: 'What color is the sky?' }];
    expect((await post('/tokenize', { model, messages, add_generation_prompt: true })).json.tokens).toEqual(await admitted(model, { messages }));
    const plain = (await post('/tokenize', { model, prompt, add_special_tokens: false })).json.tokens as number[];
    expect((await post('/detokenize', { model, tokens: plain })).json).toEqual({ prompt });
  });
});

describe('token ids on the OpenAI surface', () => {
  it('refuses what is not a text model or not a token id, naming the field', async () => {
    const sd = await post('/tokenize', { model: 'tiny-sd', prompt: 'a red circle' });
    expect(sd.status).toBe(400);
    expect(sd.json).toMatchObject({ error: { param: 'model', message: expect.stringMatching(/tiny-sd is a text-to-image model; \/tokenize serves/) } });
    const bad = await post('/detokenize', { model: 'tiny-lm', tokens: [1, 999_999] });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ error: { param: 'tokens[1]' } });
    const badPrompt = await post('/v1/completions', { model: 'tiny-lm', prompt: [1, 999_999] });
    expect(badPrompt.status).toBe(400);
    expect(badPrompt.json).toMatchObject({ error: { param: 'prompt_tokens[1]' } });
  });

  it('a completion of token ids is the completion of their text; several lists are several prompts; echo decodes them', async () => {
    const texts = ['Once upon a time', 'Tom had a'];
    const ids = await Promise.all(texts.map(async (prompt) => (await post('/tokenize', { model: 'tiny-lm', prompt })).json.tokens as number[]));
    const asText = await client.completions.create({ model: 'tiny-lm', prompt: texts, max_tokens: 12, temperature: 0 });
    const asIds = await client.completions.create({ model: 'tiny-lm', prompt: ids, max_tokens: 12, temperature: 0 });
    expect(asIds.choices.map((c) => c.text)).toEqual(asText.choices.map((c) => c.text));
    expect(asIds.usage).toEqual(asText.usage);
    const one = await client.completions.create({ model: 'tiny-lm', prompt: ids[0]!, max_tokens: 12, temperature: 0, echo: true });
    expect(one.choices[0]!.text).toBe(texts[0]! + asText.choices[0]!.text);
  });
});
