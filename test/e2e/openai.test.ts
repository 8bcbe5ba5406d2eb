// OpenAI's API through the official `openai` client against the real server: models, chat and
// text completions with and without streaming, n, stop strings, usage that matches the tokenizer
// (of both demo architectures: tiny-lm is GPT-2-like, tiny-llama is Llama), errors in OpenAI's
// shape, and image generation.
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/pipelines/text/text-tokenizer.js';
import { ROOT, startEasel, waitHealthy, type EaselProcess } from '../helpers/easel-process.js';
import { meanDiff, rgbPixels } from '../helpers/pixels.js';

const TINY_LM = path.join(ROOT, 'models', 'tiny-lm');
const TINY_LLAMA = path.join(ROOT, 'models', 'tiny-llama');
const TINY_SD = path.join(ROOT, 'models', 'tiny-sd');
const QUESTION = [{ role: 'user' as const, content: 'What color is the sky?' }];

describe('OpenAI-compatible API (official client)', () => {
  let easel: EaselProcess;
  let client: OpenAI;
  beforeAll(async () => {
    easel = await startEasel(['--models', `tiny-lm=${TINY_LM},tiny-llama=${TINY_LLAMA},tiny-sd=${TINY_SD}`]);
    await waitHealthy(easel, 60_000);
    client = new OpenAI({ baseURL: `${easel.inference}/v1`, apiKey: 'unused', maxRetries: 0 });
  }, 90_000);
  afterAll(() => easel?.stop());

  it('lists the models', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(expect.arrayContaining(['tiny-lm', 'tiny-llama', 'tiny-sd']));
  });

  it("says each model's task and request parameters (what a form may offer), and 404 for an unknown one", async () => {
    type Described = { id: string; easel: { task: string; parameters: Record<string, unknown> } };
    const sd = (await client.models.retrieve('tiny-sd')) as unknown as Described;
    expect(sd.easel.task).toBe('text-to-image');
    expect(sd.easel.parameters).toMatchObject({ defaults: { width: 64, height: 64 }, limits: { max_width: 256, max_num_images: 4 }, size_multiple: 16 });
    expect(sd.easel.parameters.schedulers).toEqual(expect.arrayContaining(['ddim', 'euler_a']));
    const lm = (await client.models.retrieve('tiny-llama')) as unknown as Described;
    expect(lm.easel).toMatchObject({ task: 'text-generation', parameters: { chat: true, context_length: expect.any(Number) } });
    // The list says the same for each.
    const listed = (await (await fetch(`${easel.inference}/v1/models`)).json()) as { data: Described[] };
    expect(listed.data.find((m) => m.id === 'tiny-sd')).toEqual(sd);
    const missing = await fetch(`${easel.inference}/v1/models/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('EASEL_MODEL_NOT_FOUND');
  });

  it.each([['tiny-lm', TINY_LM], ['tiny-llama', TINY_LLAMA]])('chat (%s): an answer with usage that matches the tokenizer; streamed, the same text', async (model, dir) => {
    const tokens = TextTokenizer.load(dir);
    const done = await client.chat.completions.create({ model, messages: QUESTION, temperature: 0, max_tokens: 30 });
    const answer = done.choices[0]!.message.content!;
    // The demo models learned this answer; it reads as text (a SentencePiece decoder's leading space is not left on it).
    expect(answer).toBe('The sky is blue.');
    expect(done.choices[0]!.finish_reason).toBe('stop');
    expect(done.usage!.prompt_tokens).toBe(tokens.encodeChat(QUESTION).length);
    // The answer's tokens are what the prompt and the answer encode to, less the prompt.
    expect(done.usage!.completion_tokens).toBe(tokens.encode(tokens.chatPrompt(QUESTION) + answer, false, true).length - done.usage!.prompt_tokens);
    expect(done.usage!.total_tokens).toBe(done.usage!.prompt_tokens + done.usage!.completion_tokens);
    const stream = await client.chat.completions.create({ model, messages: QUESTION, temperature: 0, max_tokens: 30, stream: true, stream_options: { include_usage: true } });
    let streamed = '';
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      chunks++;
      streamed += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(streamed).toBe(answer);
    expect(chunks).toBeGreaterThan(3);
    expect(usage).toMatchObject({ prompt_tokens: done.usage!.prompt_tokens, completion_tokens: done.usage!.completion_tokens });
  }, 60_000);

  it('n: 2 seeded choices, and a stop string ends the text before it', async () => {
    const two = await client.chat.completions.create({ model: 'tiny-lm', messages: QUESTION, temperature: 0.8, seed: 3, n: 2, max_tokens: 20 });
    expect(two.choices.map((c) => c.index)).toEqual([0, 1]);
    const again = await client.chat.completions.create({ model: 'tiny-lm', messages: QUESTION, temperature: 0.8, seed: 3, n: 2, max_tokens: 20 });
    expect(again.choices.map((c) => c.message.content)).toEqual(two.choices.map((c) => c.message.content));
    const story = await client.completions.create({ model: 'tiny-lm', prompt: 'Once upon a time', temperature: 0, max_tokens: 40 });
    const text = story.choices[0]!.text;
    const word = text.trim().split(/\s+/)[2]!;
    const cut = await client.completions.create({ model: 'tiny-lm', prompt: 'Once upon a time', temperature: 0, max_tokens: 40, stop: [word] });
    expect(cut.choices[0]!.text).toBe(text.slice(0, text.indexOf(word)));
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    let streamed = '';
    for await (const chunk of await client.completions.create({ model: 'tiny-lm', prompt: 'Once upon a time', temperature: 0, max_tokens: 40, stop: [word], stream: true })) streamed += chunk.choices[0]?.text ?? '';
    expect(streamed).toBe(cut.choices[0]!.text);
  }, 60_000);

  it('logprobs: the tokens spell the text, each with its offset, log-probability and the asked alternatives (tiny-llama: a word keeps its space)', async () => {
    const done = await client.completions.create({ model: 'tiny-llama', prompt: 'Once upon a time', temperature: 0, max_tokens: 8, logprobs: 2 });
    const { text, logprobs } = done.choices[0]!;
    expect(logprobs!.tokens!.join('')).toBe(text);
    expect(logprobs!.tokens![1]).toMatch(/^ \S/);
    expect(logprobs!.text_offset).toEqual(logprobs!.tokens!.map((_, i) => logprobs!.tokens!.slice(0, i).join('').length));
    for (const [i, lp] of logprobs!.token_logprobs!.entries()) {
      expect(lp).toBeLessThanOrEqual(0);
      // Greedy: the chosen token is the best of its alternatives.
      const top = logprobs!.top_logprobs![i]!;
      expect(Object.keys(top)).toHaveLength(2);
      expect(Math.max(...Object.values(top))).toBeCloseTo(lp, 6);
    }
    // logprobs: 0: the chosen tokens' log-probabilities, no alternatives.
    const bare = (await client.completions.create({ model: 'tiny-llama', prompt: 'Once upon a time', temperature: 0, max_tokens: 8, logprobs: 0 })).choices[0]!.logprobs!;
    // The same tokens; their log-probabilities to float32 rounding (masked padding left by earlier requests changes the order of sums).
    expect(bare.tokens).toEqual(logprobs!.tokens);
    bare.token_logprobs!.forEach((lp, i) => expect(lp).toBeCloseTo(logprobs!.token_logprobs![i]!, 4));
    expect(bare.top_logprobs!.every((t) => Object.keys(t).length === 0)).toBe(true);
    const chat = await client.chat.completions.create({ model: 'tiny-llama', messages: QUESTION, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 1 });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content.map((c) => c.token).join('')).toBe(chat.choices[0]!.message.content);
    expect(content.every((c) => c.top_logprobs.length === 1 && c.top_logprobs[0]!.token === c.token)).toBe(true);
  });

  it('echo: the completion starts with its prompt, streamed or not; with logprobs the prompt is scored too', async () => {
    const plain = await client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', temperature: 0, max_tokens: 12 });
    const echoed = await client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', temperature: 0, max_tokens: 12, echo: true });
    expect(echoed.choices[0]!.text).toBe(`Tom had${plain.choices[0]!.text}`);
    let streamed = '';
    for await (const chunk of await client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', temperature: 0, max_tokens: 12, echo: true, stream: true })) streamed += chunk.choices[0]?.text ?? '';
    expect(streamed).toBe(echoed.choices[0]!.text);
    const scored = await client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', temperature: 0, max_tokens: 3, echo: true, logprobs: 1 });
    const lp = scored.choices[0]!.logprobs!;
    // The prompt's tokens first (the first unscored), then the three generated.
    expect(lp.tokens!.join('')).toBe(scored.choices[0]!.text);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.token_logprobs!.slice(1).every((x) => typeof x === 'number' && x <= 0)).toBe(true);
    await expect(client.completions.create({ model: 'tiny-lm', prompt: 'Tom had', max_tokens: 0 })).rejects.toMatchObject({ status: 400, error: { param: 'max_tokens' } });
  });

  it("answers errors in OpenAI's shape: an unknown model, a parameter out of range, a prompt past the context", async () => {
    await expect(client.chat.completions.create({ model: 'no-such-model', messages: QUESTION })).rejects.toMatchObject({ status: 404, error: { type: 'not_found_error', code: 'EASEL_MODEL_NOT_FOUND' } });
    await expect(client.chat.completions.create({ model: 'tiny-lm', messages: QUESTION, temperature: 7 })).rejects.toMatchObject({ status: 400, error: { type: 'invalid_request_error', param: 'temperature' } });
    await expect(client.completions.create({ model: 'tiny-lm', prompt: 'tom '.repeat(400) })).rejects.toMatchObject({ status: 400, error: { param: 'prompt', message: expect.stringMatching(/maximum context length is 256 tokens/) } });
  });

  it('generates images as b64_json at the asked size', async () => {
    const res = await client.images.generate({ model: 'tiny-sd', prompt: 'a red circle on a blue background', size: '64x64' as never, n: 2, response_format: 'b64_json' });
    expect(res.data).toHaveLength(2);
    for (const d of res.data ?? []) {
      const meta = await sharp(Buffer.from(d.b64_json!, 'base64')).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
    }
  }, 60_000);

  it('edits an image (images/edits, multipart): transparent mask pixels are repainted, the rest is the image within the VAE round trip', async () => {
    const generated = await client.images.generate({ model: 'tiny-sd', prompt: 'a red circle on a blue background', size: '64x64' as never, response_format: 'b64_json', seed: 4 } as never);
    const init = Buffer.from(generated.data![0]!.b64_json!, 'base64');
    // OpenAI's mask: transparent (the left half) repaints, opaque keeps.
    const alpha = Buffer.alloc(64 * 64 * 4);
    for (let i = 0; i < 64 * 64; i++) alpha[i * 4 + 3] = i % 64 < 32 ? 0 : 255;
    const mask = await sharp(alpha, { raw: { width: 64, height: 64, channels: 4 } }).png().toBuffer();
    const res = await client.images.edit({ model: 'tiny-sd', image: await toFile(init, 'init.png', { type: 'image/png' }), mask: await toFile(mask, 'mask.png', { type: 'image/png' }), prompt: 'a green square on a yellow background', size: '64x64' as never, seed: 2 } as never);
    expect(res.data).toHaveLength(1);
    const edited = Buffer.from(res.data![0]!.b64_json!, 'base64');
    expect((await sharp(edited).metadata()).format).toBe('png');
    const [a, b] = await Promise.all([init, edited].map(rgbPixels));
    // Columns away from the mask's edge (the tiny VAE's decoder sees the whole 8×8 latent).
    expect(meanDiff(a!, b!, 64, (x) => x >= 40)).toBeLessThan(6);
    expect(meanDiff(a!, b!, 64, (x) => x < 24)).toBeGreaterThan(20);
    // Without a mask: image-to-image. A bad form gets OpenAI's error shape naming the field.
    const whole = await client.images.edit({ model: 'tiny-sd', image: await toFile(init, 'init.png', { type: 'image/png' }), prompt: 'a yellow square on a green background' });
    expect(whole.data).toHaveLength(1);
    const form = new FormData();
    form.append('model', 'tiny-sd');
    form.append('prompt', 'x');
    const bad = await fetch(`${easel.inference}/v1/images/edits`, { method: 'POST', body: form });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { param: 'image' } });
  }, 60_000);

  it('counts its requests in easel_requests_total, streamed ones too', async () => {
    const text = await (await fetch(`${easel.metrics}/metrics`)).text();
    expect(text).toMatch(/^easel_requests_total\{model="tiny-lm",status="200"\} [1-9]/m);
    expect(text).toMatch(/^easel_request_duration_seconds_count\{model="tiny-llama"\} [1-9]/m);
  });
});
