// `easel generate` and `easel jobs` against a running server, as a user runs them.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, serveModel, type EaselProcess } from '../helpers/easel-process.js';

const run = promisify(execFile);

async function easelCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('easel generate and easel jobs', () => {
  let easel: EaselProcess;
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-cli-'));
  beforeAll(async () => {
    easel = await serveModel('tiny-sd', path.join(ROOT, 'models', 'tiny-sd'));
  }, 90_000);
  afterAll(async () => {
    await easel?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('saves a valid PNG and shows a progress bar', async () => {
    const file = path.join(dir, 'circle.png');
    const result = await easelCli(['generate', 'a red circle on a blue background', '--url', easel.inference, '--steps', '30', '--seed', '1', '-o', file]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`saved ${file}`);
    expect(result.stderr).toMatch(/100% \| step 30\/30/);
    const meta = await sharp(file).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  });

  it('lists, shows and refuses to cancel a finished job; reports a bad model in one line', async () => {
    // Its own finished 30-step job, whatever ran before this test.
    expect((await easelCli(['generate', 'a blue square', '--url', easel.inference, '--steps', '30', '-o', path.join(dir, 'square.png')])).code).toBe(0);
    const list = await easelCli(['jobs', 'list', '--url', easel.inference, '--limit', '5']);
    expect(list.code).toBe(0);
    const id = /^([0-9a-f-]{36})\s+tiny-sd\s+succeeded\s+30\/30/m.exec(list.stdout)?.[1];
    expect(id, list.stdout).toBeDefined();
    const shown = await easelCli(['jobs', 'get', id!, '--url', easel.inference]);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id, status: 'succeeded' });
    const cancel = await easelCli(['jobs', 'cancel', id!, '--url', easel.inference]);
    expect(cancel.code).toBe(1);
    expect(cancel.stderr).toMatch(/409 EASEL_JOB_FINISHED/);
    const bad = await easelCli(['generate', 'x', '--url', easel.inference, '--model', 'nope']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe('easel: 404 EASEL_MODEL_NOT_FOUND: model "nope" is not registered');
  });
});
