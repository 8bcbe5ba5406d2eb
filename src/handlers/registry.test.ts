// The worker's handler loading: a built-in by name, a custom module only with the operator's
// permission (checked again where the code would run), never an unknown name.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelSpec } from '../models/model-spec.js';
import { loadHandler } from './registry.js';

const dir = mkdtempSync(path.join(tmpdir(), 'easel-registry-'));
// Importing the module marks the process: a refused module must never run.
writeFileSync(path.join(dir, 'handler.mjs'), 'globalThis.__easelCustomRan = true;\nexport function createHandler() { return { custom: true }; }\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec = (handler: string): ModelSpec => ({ name: 'm', handler }) as ModelSpec;
const ran = (): boolean => (globalThis as { __easelCustomRan?: boolean }).__easelCustomRan === true;

describe('loadHandler', () => {
  it('refuses a custom module without --allow-custom-handlers, before importing it', async () => {
    await expect(loadHandler(spec('handler.mjs'), dir, false)).rejects.toMatchObject({ code: 'EASEL_FORBIDDEN', field: 'handler' });
    expect(ran()).toBe(false);
  });

  it('refuses a name that is neither built in nor a module, naming the built-ins', async () => {
    await expect(loadHandler(spec('constructor'), dir, true)).rejects.toMatchObject({ code: 'EASEL_MODEL_INVALID', message: expect.stringMatching(/tensor, text-to-image, text-generation/) });
  });

  it('loads a custom module with permission, and a built-in by name', async () => {
    expect(await loadHandler(spec('handler.mjs'), dir, true)).toEqual({ custom: true });
    expect(ran()).toBe(true);
    expect((await loadHandler(spec('tensor'), dir, false)).constructor.name).toBe('TensorHandler');
  });
});
