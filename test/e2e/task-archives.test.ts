// DeepSpeed-MII's layout: an archive or folder whose setup_config.json names a model and a task,
// registered through the management API and served by the task's handler. `model_name` names a
// folder inside the archive or a model in the store; nothing is downloaded; an unknown task is
// refused at registration.
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createArchive } from '../../src/models/archive.js';
import { ROOT, startEasel, type EaselProcess } from '../helpers/easel-process.js';

describe('task archives (setup_config.json)', () => {
  const store = mkdtempSync(path.join(tmpdir(), 'easel-task-store-'));
  let easel: EaselProcess;

  beforeAll(async () => {
    cpSync(path.join(ROOT, 'models', 'tiny-lm'), path.join(store, 'tiny-lm'), { recursive: true });
    // Text generation: a folder naming a model of the store.
    mkdirSync(path.join(store, 'lm-task'));
    writeFileSync(path.join(store, 'lm-task', 'setup_config.json'), JSON.stringify({ model_name: 'tiny-lm', task: 'text-generation' }));
    // Text to image: an archive carrying its pipeline in a folder.
    const staging = mkdtempSync(path.join(tmpdir(), 'easel-task-src-'));
    writeFileSync(path.join(staging, 'setup_config.json'), JSON.stringify({ model_name: 'pipeline', task: 'text-to-image' }));
    cpSync(path.join(ROOT, 'models', 'tiny-sd'), path.join(staging, 'pipeline'), { recursive: true });
    await createArchive({ modelName: 'sd-task', version: '1.0', extraFiles: [staging], exportPath: store, format: 'tgz', force: true, archiverVersion: 'test' });
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(path.join(store, 'bad-task'));
    writeFileSync(path.join(store, 'bad-task', 'setup_config.json'), JSON.stringify({ model_name: 'tiny-lm', task: 'text-classification' }));
    mkdirSync(path.join(store, 'far-task'));
    writeFileSync(path.join(store, 'far-task', 'setup_config.json'), JSON.stringify({ model_name: 'meta-llama/Llama-2-7b-hf', task: 'text-generation' }));
    easel = await startEasel(['--model-store', store, '--models', 'tiny-lm']);
  }, 90_000);
  afterAll(async () => {
    await easel?.stop();
    rmSync(store, { recursive: true, force: true });
  });

  const register = (url: string, name: string): Promise<Response> =>
    fetch(`${easel.management}/models?url=${encodeURIComponent(url)}&model_name=${name}&initial_workers=1&synchronous=true`, { method: 'POST' });

  it('serves a text-generation task naming a model of the store', async () => {
    const reg = await register('lm-task', 'lm-task');
    expect(reg.status, await reg.clone().text()).toBe(200);
    const [desc] = (await (await fetch(`${easel.management}/models/lm-task`)).json()) as { handler: string }[];
    expect(desc!.handler).toBe('text-generation');
    const res = await fetch(`${easel.inference}/predictions/lm-task`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'Once upon a time', max_new_tokens: 20, temperature: 0 }) });
    expect(res.status).toBe(200);
    const direct = await fetch(`${easel.inference}/predictions/tiny-lm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'Once upon a time', max_new_tokens: 20, temperature: 0 }) });
    expect(await res.text()).toBe(await direct.text());
  }, 60_000);

  it('serves a text-to-image task archive carrying its pipeline', async () => {
    const reg = await register('sd-task.easel', 'sd-task');
    expect(reg.status, await reg.clone().text()).toBe(200);
    const res = await fetch(`${easel.inference}/predictions/sd-task`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a red circle', num_inference_steps: 4, seed: 1 }) });
    expect(res.status).toBe(200);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  }, 60_000);

  it('refuses an unknown task and a model_name that is not here (never a download)', async () => {
    const bad = await register('bad-task', 'bad-task');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'EASEL_MODEL_INVALID', field: 'task', message: expect.stringMatching(/text-classification.*known tasks: text-generation, text-to-image/) });
    const far = await register('far-task', 'far-task');
    expect(far.status).toBe(400);
    expect(await far.json()).toMatchObject({ code: 'EASEL_MODEL_INVALID', field: 'model_name', message: expect.stringMatching(/never downloaded/) });
  });
});
