// Text-generation metrics tell the truth after the fact: the gauges of active sequences and KV
// cache bytes return to 0 when the work ends, and a generation its client abandoned counts the
// tokens it made.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, serveModel, waitFor, type EaselProcess } from '../helpers/easel-process.js';

const TINY_LM = path.join(ROOT, 'models', 'tiny-lm');
let easel: EaselProcess;
beforeAll(async () => {
  easel = await serveModel('tiny-lm', TINY_LM);
}, 60_000);
afterAll(() => easel?.stop());

const metric = async (name: string): Promise<number> => {
  const line = (await (await fetch(`${easel.metrics}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${name}{model="tiny-lm"}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
};

describe('text-generation metrics after the fact', () => {
  it('active sequences and KV cache bytes fall to 0 when the work ends', async () => {
    const res = await fetch(`${easel.inference}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-lm', prompt: 'Once upon a time', max_tokens: 20, n: 4 }) });
    expect(res.status).toBe(200);
    await waitFor(async () => (await metric('easel_active_sequences')) === 0 && (await metric('easel_kv_cache_bytes')) === 0, 10_000, 'the gauges to rest');
    expect(await metric('easel_generation_tokens_total')).toBeGreaterThan(0);
    // The four sequences counted by why they ended (vLLM's request_success_total{finished_reason}).
    const reasons = ((await res.json()) as { choices: { finish_reason: string }[] }).choices.map((c) => c.finish_reason);
    const text = await (await fetch(`${easel.metrics}/metrics`)).text();
    for (const reason of new Set(reasons)) {
      expect(text, reason).toContain(`easel_generations_finished_total{model="tiny-lm",finish_reason="${reason}"} ${reasons.filter((r) => r === reason).length}`);
    }
  });

  it('a generation abandoned by its client counts the tokens it made', async () => {
    const eos = (JSON.parse(readFileSync(path.join(TINY_LM, 'tokenizer.json'), 'utf8')) as { added_tokens: { id: number; content: string }[] }).added_tokens.find((t) => t.content === '<|endoftext|>')!.id;
    const before = await metric('easel_generation_tokens_total');
    const controller = new AbortController();
    const res = await fetch(`${easel.inference}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: controller.signal,
      body: JSON.stringify({ model: 'tiny-lm', prompt: 'Once upon a time', max_tokens: 200, stream: true, logit_bias: { [eos]: -100 } }),
    });
    const reader = res.body!.getReader();
    let chunks = 0;
    while (chunks < 5) {
      const { value } = await reader.read();
      chunks += (new TextDecoder().decode(value).match(/^data: \{/gm) ?? []).length;
    }
    controller.abort();
    await waitFor(async () => (await metric('easel_generation_tokens_total')) > before, 10_000, 'the abandoned tokens to be counted');
    const counted = (await metric('easel_generation_tokens_total')) - before;
    expect(counted).toBeGreaterThanOrEqual(4);
    expect(counted).toBeLessThan(200);
  });
});
