// batching.streamIntervalMs: a step-mode worker's streamed tokens leave at most that often, the
// turns in between sharing one IPC message, and a request's first token at once. The same greedy
// text either way; with a long interval the tokens after the first arrive together, with 0 they
// arrive as they are made.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEasel, textModelVariant, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

/** tiny-llama copied into a new folder, with its own stream interval. */
const copyWith = (dir: string, name: string, interval: number): string => textModelVariant('tiny-llama', path.join(dir, name), name, `  streamIntervalMs: ${interval}\n`);

describe('batching.streamIntervalMs', () => {
  let dir: string;
  let easel: EaselProcess;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'easel-interval-'));
    easel = await startEasel(['--models', `every-turn=${copyWith(dir, 'every-turn', 0)}`, '--models', `held=${copyWith(dir, 'held', 1000)}`]);
    await waitModelLive(easel, 'every-turn');
    await waitModelLive(easel, 'held');
  }, 90_000);
  afterAll(async () => {
    await easel?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A streamed greedy completion of 400 tokens: its text, and when each token's event arrived (ms from the request). */
  async function stream(model: string): Promise<{ text: string; at: number[] }> {
    const t0 = performance.now();
    const res = await fetch(`${easel.inference}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: 400, temperature: 0, ignore_eos: true, stream: true }),
    });
    expect(res.status).toBe(200);
    const decoder = new TextDecoder();
    let buffer = '';
    let text = '';
    const at: number[] = [];
    for await (const chunk of res.body!) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      const events = buffer.split('\n\n');
      buffer = events.pop()!;
      for (const e of events) {
        const data = e.replace(/^data: /, '');
        if (data === '[DONE]') continue;
        const piece = (JSON.parse(data) as { choices: { text: string }[] }).choices[0]!.text;
        if (piece === '') continue;
        text += piece;
        at.push(performance.now() - t0);
      }
    }
    return { text, at };
  }

  it('the same text; held, every token after the first arrives at once with the end, the first as soon as it is made', async () => {
    const every = await stream('every-turn');
    const held = await stream('held');
    expect(held.text).toBe(every.text);
    expect(held.at.length).toBeGreaterThan(100);
    // Every turn: the tokens come as they are made, over the generation's time.
    expect(every.at.at(-1)! - every.at[1]!).toBeGreaterThan(50);
    // Held 1 s (longer than the whole generation): the second to the last come together.
    expect(held.at.at(-1)! - held.at[1]!).toBeLessThan(30);
    // And the first did not wait for them.
    expect(held.at[1]! - held.at[0]!).toBeGreaterThan(50);
  }, 60_000);
});
