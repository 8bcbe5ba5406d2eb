// Speculative decoding through the server: tiny-lm with `speculative: {draft: tiny-lm-draft}` in
// its easel.yaml answers greedy requests with exactly plain tiny-lm's text, alone and under
// concurrent load; GET /models shows the settings in effect; the acceptance metrics are exported;
// GPT-Fast's model-config.yaml names turn it on too; a draft with another tokenizer, or one that
// is not there, is refused at registration with the field named.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, textModelVariant, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const PROMPTS = ['Once upon a time, there was a little girl named Lily.', 'Tom had a red ball.', 'The cat', 'One day, Ben went to the park with his mom.', 'Mia liked to play', 'Lily and Tom', 'It was a sunny day.', 'The little bird'];

/** A copy of tiny-lm under another name, with easel.yaml (or TorchServe's model-config.yaml) settings added. */
function variant(store: string, name: string, extra: string, file = 'easel.yaml'): void {
  const dir = path.join(store, name);
  textModelVariant('tiny-lm', dir, name, file === 'easel.yaml' ? extra : '');
  if (file === 'easel.yaml') return;
  rmSync(path.join(dir, 'easel.yaml'));
  writeFileSync(path.join(dir, file), extra);
}

describe('speculative decoding through the server (tiny-lm, draft tiny-lm-draft)', () => {
  const store = mkdtempSync(path.join(tmpdir(), 'easel-spec-store-'));
  let easel: EaselProcess;

  beforeAll(async () => {
    for (const m of ['tiny-lm', 'tiny-lm-draft', 'tiny-llama']) cpSync(path.join(ROOT, 'models', m), path.join(store, m), { recursive: true });
    variant(store, 'tiny-lm-fast', 'speculative:\n  draft: tiny-lm-draft\n  k: 4\n');
    variant(store, 'gpt-fast', 'minWorkers: 1\nbatchSize: 8\nhandler:\n  draft_checkpoint_path: tiny-lm-draft\n  speculate_k: 3\n', 'model-config.yaml');
    variant(store, 'other-tokenizer', 'speculative:\n  draft: tiny-llama\n');
    variant(store, 'no-draft', 'speculative:\n  draft: tiny-lm-drafty\n');
    easel = await startEasel(['--model-store', store, '--models', 'tiny-lm=tiny-lm', 'tiny-lm-fast=tiny-lm-fast']);
    await waitModelLive(easel, 'tiny-lm');
    await waitModelLive(easel, 'tiny-lm-fast');
  }, 90_000);
  afterAll(async () => {
    await easel?.stop();
    rmSync(store, { recursive: true, force: true });
  });

  const complete = async (model: string, prompt: string): Promise<string> => {
    const res = await fetch(`${easel.inference}/predictions/${model}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: prompt, max_new_tokens: 48, temperature: 0 }) });
    expect(res.status).toBe(200);
    return res.text();
  };

  it('greedy: the same text as plain tiny-lm, one at a time and all at once', async () => {
    const plain = await Promise.all(PROMPTS.map((p) => complete('tiny-lm', p)));
    for (const [i, p] of PROMPTS.entries()) expect(await complete('tiny-lm-fast', p), p).toBe(plain[i]);
    expect(await Promise.all(PROMPTS.map((p) => complete('tiny-lm-fast', p)))).toEqual(plain);
  }, 60_000);

  it('shows its settings in GET /models and exports proposed and accepted tokens', async () => {
    const [desc] = (await (await fetch(`${easel.management}/models/tiny-lm-fast`)).json()) as { speculative?: unknown }[];
    expect(desc!.speculative).toEqual({ draft: 'tiny-lm-draft', k: 4, adaptive: false, maxBatch: null });
    const [plain] = (await (await fetch(`${easel.management}/models/tiny-lm`)).json()) as { speculative?: unknown }[];
    expect(plain!.speculative).toBeUndefined();
    const metrics = await (await fetch(`${easel.metrics}/metrics`)).text();
    const value = (name: string): number => Number(new RegExp(`^${name}\\{model="tiny-lm-fast"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
    const proposed = value('easel_spec_decode_draft_tokens_total');
    const accepted = value('easel_spec_decode_accepted_tokens_total');
    expect(proposed).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThanOrEqual(proposed);
    expect(value('easel_spec_decode_acceptance_rate')).toBeCloseTo(accepted / proposed, 6);
    expect(value('easel_spec_decode_tokens_per_target_call')).toBeGreaterThan(1);
    expect(metrics).not.toMatch(/easel_spec_decode_draft_tokens_total\{model="tiny-lm"\}/);
  });

  it('GPT-Fast\'s model-config.yaml names (draft_checkpoint_path, speculate_k) turn it on', async () => {
    const reg = await fetch(`${easel.management}/models?url=gpt-fast&model_name=gpt-fast&initial_workers=1&synchronous=true`, { method: 'POST' });
    expect(reg.status, await reg.clone().text()).toBe(200);
    const [desc] = (await (await fetch(`${easel.management}/models/gpt-fast`)).json()) as { speculative?: unknown }[];
    expect(desc!.speculative).toEqual({ draft: 'tiny-lm-draft', k: 3, adaptive: false, maxBatch: null });
    expect(await complete('gpt-fast', PROMPTS[0]!)).toBe(await complete('tiny-lm', PROMPTS[0]!));
  }, 60_000);

  it('refuses at registration a draft with another tokenizer, and one that is not there', async () => {
    const other = await fetch(`${easel.management}/models?url=other-tokenizer&model_name=other-tokenizer&initial_workers=1&synchronous=true`, { method: 'POST' });
    expect(other.status).toBe(400);
    expect(await other.json()).toMatchObject({ code: 'EASEL_MODEL_INVALID', field: 'speculative.draft', message: expect.stringMatching(/must share the target's tokenizer.*vocabulary/) });
    const missing = await fetch(`${easel.management}/models?url=no-draft&model_name=no-draft&initial_workers=1&synchronous=true`, { method: 'POST' });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ code: 'EASEL_MODEL_INVALID', field: 'speculative.draft', message: expect.stringMatching(/"tiny-lm-drafty" is neither a folder inside the model nor a model in the model store/) });
    // Nothing half-registered: the names are free.
    expect((await fetch(`${easel.management}/models/other-tokenizer`)).status).toBe(404);
  });
});
