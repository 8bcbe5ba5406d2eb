// The playground page in a real browser (Debian's chromium driven by playwright-core), against a
// real server with tiny-sd and tiny-lm: what a person sees and clicks. Screenshots of each state,
// at desktop and phone widths, go to test-results/playground/.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel, startEasel, waitHealthy, type EaselProcess } from '../helpers/easel-process.js';
import { meanDiff, rgbPixels } from '../helpers/pixels.js';

const CHROMIUM = process.env.EASEL_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'test-results', 'playground');
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const PROMPT = 'a red circle on a blue background';

// Browser-side code (this file is type-checked for Node, without the DOM's types):
/** Records each different preview image the page shows, in window.previews. */
const RECORD_PREVIEWS = `
  window.previews = [];
  new MutationObserver(() => {
    for (const img of document.querySelectorAll('img[data-testid=preview]')) if (window.previews.at(-1) !== img.src) window.previews.push(img.src);
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['src'] });
`;
/** The pixels of the <img> at a selector as the page decoded them: [width, height, RGBA]. */
const readPixels = (selector: string): string => `(async () => {
  const img = document.querySelector(${JSON.stringify(selector)});
  await img.decode();
  const canvas = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return [img.naturalWidth, img.naturalHeight, Array.from(ctx.getImageData(0, 0, img.naturalWidth, img.naturalHeight).data)];
})()`;

/** Every URL the pages asked for. */
const requested: string[] = [];

describe('playground (chromium)', () => {
  let easel: EaselProcess;
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    easel = await startEasel(['--models', `tiny-sd=${path.join(ROOT, 'models', 'tiny-sd')},tiny-lm=${path.join(ROOT, 'models', 'tiny-lm')}`]);
    await waitHealthy(easel);
    // Loopback only: every host name but 127.0.0.1 resolves to nothing, so no request of the
    // browser's own (updates, safe browsing) or of the page can leave this machine.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'] });
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await easel?.stop();
  });

  /** A fresh page (its own storage) that records every preview image it shows. */
  async function open(viewport = DESKTOP): Promise<Page> {
    const context = await browser.newContext({ viewport });
    context.on('request', (r) => requested.push(r.url()));
    const page = await context.newPage();
    await page.addInitScript({ content: RECORD_PREVIEWS });
    await page.goto(easel.inference);
    await page.getByTestId('image-form').waitFor();
    return page;
  }

  async function submit(page: Page, fields: Record<string, string>): Promise<void> {
    for (const [name, value] of Object.entries(fields)) await page.locator(`[name=${name}]`).fill(value);
    await page.getByTestId('generate').click();
  }

  async function generate(page: Page, fields: Record<string, string>): Promise<string> {
    const before = await page.getByTestId('job-card').count();
    await submit(page, fields);
    // The submission (an init image and a painted mask encoded in the page first) can take seconds on a loaded machine.
    await expect.poll(() => page.getByTestId('job-card').count(), { timeout: 30_000 }).toBe(before + 1);
    return (await page.getByTestId('job-card').first().getAttribute('data-job'))!;
  }

  const card = (page: Page, id: string) => page.locator(`[data-job="${id}"]`);

  async function output(id: string): Promise<Buffer> {
    return Buffer.from(await (await fetch(`${easel.inference}/v1/jobs/${id}/outputs/0`)).arrayBuffer());
  }

  it('generates an image: the preview changes at least three times, then the final image, whose pixels are the output\'s; the card never moves', async () => {
    const page = await open();
    expect(await page.getByTestId('health').textContent()).toBe('healthy');
    await page.screenshot({ path: path.join(SHOTS, 'image-empty-desktop.png') });
    const id = await generate(page, { prompt: PROMPT, num_inference_steps: '100', width: '128', height: '128' });
    const frame = card(page, id).locator('.frame');
    const boxBefore = await frame.boundingBox();
    await expect.poll(() => card(page, id).getAttribute('data-previews'), { timeout: 30_000 }).toBe('2');
    await page.screenshot({ path: path.join(SHOTS, 'image-running-desktop.png') });
    const final = card(page, id).getByTestId('final-image');
    await final.waitFor({ timeout: 60_000 });
    await page.screenshot({ path: path.join(SHOTS, 'image-done-desktop.png') });
    // Every preview came before the final image, each a different picture.
    const previews = (await page.evaluate('window.previews')) as string[];
    expect(new Set(previews).size).toBeGreaterThanOrEqual(3);
    expect(await card(page, id).getAttribute('data-status')).toBe('succeeded');
    // What the page shows is the API's output, pixel for pixel.
    const shown = (await page.evaluate(readPixels(`[data-job="${id}"] [data-testid=final-image]`))) as [number, number, number[]];
    const api = await sharp(await output(id)).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([shown[0], shown[1]]).toEqual([128, 128]);
    expect(Buffer.from(shown[2]).equals(api.data)).toBe(true);
    // Sized from the request before the first preview: nothing moved while previews arrived.
    expect(await frame.boundingBox()).toEqual(boxBefore);
    await page.context().close();
  });

  it('inpaints: a result used as the init image, a mask painted with the brush over its left half; the job repaints there and keeps the rest', async () => {
    const page = await open();
    await page.locator('[name=randomSeed]').uncheck();
    const source = await generate(page, { prompt: PROMPT, num_inference_steps: '20', width: '64', height: '64', seed: '4' });
    await card(page, source).getByTestId('final-image').waitFor({ timeout: 30_000 });
    await card(page, source).getByTestId('use-result').click();
    const canvas = page.getByTestId('mask-canvas');
    await canvas.waitFor();
    // Brush strokes across the left half (the canvas is the image's 64×64, shown larger).
    const box = (await canvas.boundingBox())!;
    const at = (x: number, y: number): [number, number] => [box.x + (x / 64) * box.width, box.y + (y / 64) * box.height];
    for (let y = 1; y < 64; y += 3) {
      await page.mouse.move(...at(1, y));
      await page.mouse.down();
      for (let x = 1; x <= 26; x += 2) await page.mouse.move(...at(x, y));
      await page.mouse.up();
    }
    await page.locator('[name=strength]').evaluate((el) => {
      const input = el as unknown as { value: string; dispatchEvent(e: unknown): void };
      input.value = '1';
      input.dispatchEvent(new (globalThis as unknown as { Event: new (t: string, o: object) => unknown }).Event('input', { bubbles: true }));
    });
    await page.screenshot({ path: path.join(SHOTS, 'image-mask-desktop.png') });
    const painted = await generate(page, { prompt: 'a green square on a yellow background', seed: '2' });
    await card(page, painted).getByTestId('final-image').waitFor({ timeout: 30_000 });
    const job = (await (await fetch(`${easel.inference}/v1/jobs/${painted}`)).json()) as { input: Record<string, unknown> };
    expect(job.input).toMatchObject({ strength: 1, width: 64, height: 64 });
    expect(job.input).toHaveProperty('mask_image');
    const [before, after] = await Promise.all([source, painted].map(async (id) => rgbPixels(await output(id))));
    // Unmasked columns away from the brush's edge are the init image within the VAE's round trip; the painted ones changed.
    expect(meanDiff(before!, after!, 64, (x) => x >= 40)).toBeLessThan(6);
    expect(meanDiff(before!, after!, 64, (x) => x < 24)).toBeGreaterThan(20);
    await page.context().close();
  });

  it('cancels a running job: its card says cancelled, and the API agrees', async () => {
    const page = await open();
    const id = await generate(page, { prompt: PROMPT, num_inference_steps: '100', width: '256', height: '256' });
    // Mid-run: some steps done.
    await expect.poll(() => card(page, id).getByTestId('job-status').textContent(), { timeout: 30_000 }).toMatch(/^running · step \d+ of 100$/);
    await card(page, id).getByTestId('cancel').click();
    await expect.poll(() => card(page, id).getAttribute('data-status'), { timeout: 30_000 }).toBe('cancelled');
    expect(await card(page, id).getByTestId('job-status').textContent()).toBe('cancelled');
    await page.screenshot({ path: path.join(SHOTS, 'image-cancelled-desktop.png') });
    const job = (await (await fetch(`${easel.inference}/v1/jobs/${id}`)).json()) as { status: string; error: { message: string } };
    expect(job.status).toBe('cancelled');
    expect(Number(/cancelled after (\d+) of 100 steps/.exec(job.error.message)?.[1])).toBeLessThan(100);
    await page.context().close();
  });

  it('reuses a gallery item\'s parameters and gets the same image; compares two seeds side by side', async () => {
    const page = await open();
    const first = await generate(page, { prompt: 'a green square on a yellow background', num_inference_steps: '20', width: '64', height: '64' });
    await card(page, first).getByTestId('final-image').waitFor({ timeout: 30_000 });
    const other = await generate(page, {});
    await card(page, other).getByTestId('final-image').waitFor({ timeout: 30_000 });
    // Newest first: the first job's image is the second item.
    const items = page.getByTestId('gallery-item');
    await expect.poll(() => items.count()).toBe(2);
    const seed = await items.nth(1).getAttribute('data-seed');
    await items.nth(1).getByTestId('reuse').click();
    expect(await page.locator('[name=seed]').inputValue()).toBe(seed);
    expect(await page.locator('[name=randomSeed]').isChecked()).toBe(false);
    const again = await generate(page, {});
    await card(page, again).getByTestId('final-image').waitFor({ timeout: 30_000 });
    expect((await output(again)).equals(await output(first))).toBe(true);
    expect((await output(other)).equals(await output(first))).toBe(false);
    // Two seeds side by side.
    await items.nth(1).getByTestId('compare-toggle').check();
    await items.nth(2).getByTestId('compare-toggle').check();
    await expect.poll(() => page.getByTestId('compare').locator('img').count()).toBe(2);
    await page.screenshot({ path: path.join(SHOTS, 'gallery-compare-desktop.png'), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: path.join(SHOTS, 'gallery-phone.png'), fullPage: true });
    // Usable at phone width: nothing wider than the screen.
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(PHONE.width);
    await page.context().close();
  });

  it('shows the API\'s own message beside the size field it names', async () => {
    const page = await open(PHONE);
    await submit(page, { prompt: PROMPT, width: '65' });
    const error = page.getByTestId('error-width');
    await error.waitFor();
    const api = await fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd', input: { prompt: PROMPT, width: 65 } }) });
    expect(api.status).toBe(400);
    const body = (await api.json()) as { message: string; field: string };
    expect(body.field).toBe('width');
    expect(await error.textContent()).toBe(body.message);
    // Beside the field it names: inside the width field's label.
    expect(await page.locator('[data-field=width] [data-testid=error-width]').count()).toBe(1);
    expect(await page.getByTestId('job-card').count()).toBe(0);
    await page.screenshot({ path: path.join(SHOTS, 'image-invalid-size-phone.png'), fullPage: true });
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(PHONE.width);
    await page.context().close();
  });

  it('streams a chat reply whose text is the API\'s non-streaming answer at temperature 0, with tokens/s', async () => {
    const messages = [{ role: 'user', content: 'What color is the sky?' }];
    const answer = (await (await fetch(`${easel.inference}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-lm', messages, temperature: 0, max_tokens: 30 }) })).json()) as { choices: { message: { content: string } }[] };
    for (const viewport of [DESKTOP, PHONE]) {
      const page = await open(viewport);
      await page.getByTestId('tab-chat').click();
      await page.locator('[name=temperature]').fill('0');
      await page.locator('[name=max_tokens]').fill('30');
      await page.getByTestId('chat-input').fill(messages[0]!.content);
      await page.getByTestId('chat-input').press('Enter');
      const reply = page.getByTestId('message-assistant').last();
      await expect.poll(() => reply.getAttribute('data-done'), { timeout: 30_000 }).toBe('true');
      expect(await reply.locator('p').textContent()).toBe(answer.choices[0]!.message.content);
      expect(await reply.getByTestId('tokens-per-second').textContent()).toMatch(/^\d+ tokens\/s$/);
      await page.screenshot({ path: path.join(SHOTS, `chat-${viewport === PHONE ? 'phone' : 'desktop'}.png`) });
      await page.context().close();
    }
  });

  it('chat with tools shows the call (name and arguments) and sends the result typed back; JSON mode answers JSON of the schema', async () => {
    const tools = [{ type: 'function', function: { name: 'time', parameters: { type: 'object', properties: { zone: { enum: ['utc', 'cet'] } }, required: ['zone'] } } }];
    const messages = [{ role: 'user', content: 'Time?' }];
    const api = (await (await fetch(`${easel.inference}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-lm', messages, tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_tokens: 64 }) })).json()) as { choices: { message: { tool_calls: { function: { name: string; arguments: string } }[] } }[] };
    expect(api.choices?.[0]?.message.tool_calls, JSON.stringify(api)).toHaveLength(1);
    const expected = api.choices[0]!.message.tool_calls[0]!.function;
    const page = await open(DESKTOP);
    const bodies: unknown[] = [];
    page.on('request', (r) => r.url().endsWith('/v1/chat/completions') && bodies.push(r.postDataJSON()));
    await page.getByTestId('tab-chat').click();
    await page.locator('[name=temperature]').fill('0');
    await page.locator('[name=max_tokens]').fill('64');
    await page.locator('.structured summary').click();
    await page.getByTestId('tools').fill(JSON.stringify(tools));
    await page.getByTestId('tool-choice').selectOption('required');
    await page.getByTestId('chat-input').fill('Time?');
    await page.getByTestId('chat-input').press('Enter');
    const call = page.getByTestId('tool-call').first();
    await call.getByTestId('tool-result').waitFor({ timeout: 30_000 });
    expect(await call.getByTestId('tool-call-name').textContent()).toBe(expected.name);
    expect(await call.getByTestId('tool-call-arguments').textContent()).toBe(expected.arguments);
    await page.screenshot({ path: path.join(SHOTS, 'chat-tool-call-desktop.png') });
    await call.getByTestId('tool-result').fill('9:00');
    await page.getByTestId('tool-choice').selectOption('none');
    // The demo models' context is 256 tokens: the functions, the call and its result leave little room.
    await page.locator('[name=max_tokens]').fill('8');
    await page.getByTestId('send').click();
    await expect.poll(() => page.getByTestId('message-assistant').count(), { timeout: 30_000 }).toBe(2);
    await expect.poll(() => page.getByTestId('message-assistant').last().getAttribute('data-done'), { timeout: 30_000 }).toBe('true');
    // The second request carried the call and its result.
    const second = bodies.at(-1) as { messages: { role: string; content: string; tool_calls?: unknown[]; tool_call_id?: string }[] };
    expect(second.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(second.messages[2]!.content).toBe('9:00');
    expect(second.messages[1]!.tool_calls).toHaveLength(1);

    // JSON mode with a schema: the reply is JSON that follows it.
    await page.getByTestId('tools').fill('');
    await page.locator('[name=max_tokens]').fill('40');
    await page.getByTestId('json-mode').check();
    await page.getByTestId('json-schema').fill(JSON.stringify({ type: 'object', properties: { color: { enum: ['red', 'blue'] } }, required: ['color'] }));
    await page.getByTestId('chat-input').fill('What color is the sky?');
    await page.getByTestId('chat-input').press('Enter');
    await expect.poll(() => page.getByTestId('message-assistant').count(), { timeout: 30_000 }).toBe(3);
    const reply = page.getByTestId('message-assistant').last();
    await expect.poll(() => reply.getAttribute('data-done'), { timeout: 30_000 }).toBe('true');
    expect(['red', 'blue']).toContain((JSON.parse((await reply.locator('p').textContent())!) as { color: string }).color);
    // A schema that is not JSON is refused beside its box, before anything is sent.
    await page.getByTestId('json-schema').fill('{not json');
    await page.getByTestId('chat-input').fill('Again?');
    await page.getByTestId('chat-input').press('Enter');
    await page.getByTestId('error-response_format').waitFor();
    await page.context().close();
  });

  it('asks for an API key when the server requires one, and works with it', async () => {
    const keyed = await serveModel('tiny-sd', path.join(ROOT, 'models', 'tiny-sd'), [], { EASEL_API_KEYS: 'playground=pg-secret' });
    try {
      const context = await browser.newContext({ viewport: DESKTOP });
      context.on('request', (r) => requested.push(r.url()));
      const page = await context.newPage();
      await page.goto(keyed.inference);
      const key = page.getByTestId('api-key');
      await key.waitFor();
      expect(await page.locator('.empty').first().textContent()).toBe('No text-to-image model is served.');
      await key.fill('pg-secret');
      await key.press('Enter');
      await page.getByTestId('image-form').waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'api-key-desktop.png') });
      const id = await generate(page, { prompt: PROMPT, num_inference_steps: '10' });
      await card(page, id).getByTestId('final-image').waitFor({ timeout: 30_000 });
      expect(await card(page, id).getAttribute('data-previews')).not.toBe('0');
      await page.context().close();
    } finally {
      await keyed.stop();
    }
  });

  it('is small: HTML, JS and CSS under 100 KB compressed, served compressed', async () => {
    const html = await (await fetch(`${easel.inference}/`)).text();
    const assets = [...html.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.some((a) => a.endsWith('.js')) && assets.some((a) => a.endsWith('.css'))).toBe(true);
    let bytes = gzipSync(html).byteLength;
    for (const a of assets) {
      const res = await fetch(`${easel.inference}${a}`, { headers: { 'accept-encoding': 'gzip' } });
      expect(res.headers.get('content-encoding')).toBe('gzip');
      bytes += Number(res.headers.get('content-length'));
    }
    console.log(`playground transfer size (gzip): ${(bytes / 1024).toFixed(1)} KB`);
    expect(bytes).toBeLessThan(100 * 1024);
  });

  it('asked nothing of any host but the loopback servers (the public API only)', () => {
    expect(requested.length).toBeGreaterThan(20);
    const elsewhere = requested.filter((u) => !/^(data|blob):/.test(u) && new URL(u).hostname !== '127.0.0.1');
    expect(elsewhere).toEqual([]);
    // Only the page's files and the public API's routes.
    const paths = new Set(requested.filter((u) => u.startsWith('http')).map((u) => new URL(u).pathname.replace(/\/[0-9a-f-]{36}(\/.*)?$/, '/{id}$1').replace(/\/outputs\/\d+$/, '/outputs/{n}')));
    for (const p of paths) expect(p, p).toMatch(/^(\/|\/ui\/.+|\/ping|\/v1\/models|\/v1\/jobs(\/\{id\}(\/events|\/outputs\/\{n\})?)?|\/v1\/chat\/completions)$/);
  });
});
