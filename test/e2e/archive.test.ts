// `easel archive`, registering archives over the management API, versions, and safe extraction.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, FIXTURES, startEasel, type EaselProcess } from '../helpers/easel-process.js';

const run = promisify(execFile);
let store: string;
let easel: EaselProcess;

async function archive(name: string, version: string, format = 'tgz'): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, 'archive', '--model-name', name, '--version', version, '--handler', 'tensor',
    '--serialized-file', path.join(FIXTURES, 'add-one', 'model.onnx'), '--config-file', path.join(store, 'src', 'easel.yaml'),
    '--export-path', store, '--archive-format', format, '--force']);
  return stdout.trim();
}

beforeAll(async () => {
  store = mkdtempSync(path.join(tmpdir(), 'easel-store-'));
  mkdirSync(path.join(store, 'src'));
  writeFileSync(path.join(store, 'src', 'easel.yaml'), 'handler: tensor\nmodel: model.onnx\nminWorkers: 1\n');
  easel = await startEasel(['--model-store', store, '--models', '']);
});
afterAll(async () => {
  await easel.stop();
  rmSync(store, { recursive: true, force: true });
});

const register = (url: string, extra = ''): Promise<Response> =>
  fetch(`${easel.management}/models?url=${encodeURIComponent(url)}&synchronous=true${extra}`, { method: 'POST' });

describe('archives', () => {
  it('easel archive writes an archive that the management API registers and serves', async () => {
    const file = await archive('adder', '1.0');
    expect(file).toBe(path.join(store, 'adder.easel'));
    const res = await register('adder.easel');
    expect(res.status).toBe(200);
    const out = await fetch(`${easel.inference}/predictions/adder`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"data":[1]}' });
    expect(out.status).toBe(200);
    expect(((await out.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data).toEqual([2]);
  });

  it('zip archives work too, as a second version with set-default and /all', async () => {
    // Its own first version (a tgz), whatever ran before this test.
    await archive('summer', '1.0');
    expect((await register('summer.easel')).status).toBe(200);
    await run(process.execPath, [CLI, 'archive', '--model-name', 'summer-v2', '--version', '2.0', '--handler', 'tensor',
      '--serialized-file', path.join(FIXTURES, 'add-one', 'model.onnx'), '--export-path', store, '--archive-format', 'zip']);
    const res = await register('summer-v2.easel', '&model_name=summer');
    expect(res.status).toBe(200);
    const all = (await (await fetch(`${easel.management}/models/summer/all`)).json()) as { modelVersion: string; isDefault: boolean }[];
    expect(all.map((d) => [d.modelVersion, d.isDefault]).sort()).toEqual([['1.0', true], ['2.0', false]]);
    expect((await fetch(`${easel.management}/models/summer/2.0/set-default`, { method: 'PUT' })).status).toBe(200);
    const [def] = (await (await fetch(`${easel.management}/models/summer`)).json()) as { modelVersion: string }[];
    expect(def!.modelVersion).toBe('2.0');
    expect((await fetch(`${easel.inference}/predictions/summer/1.0`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"data":[1]}' })).status).toBe(200);
    expect((await fetch(`${easel.management}/models/summer/1.0`, { method: 'DELETE' })).status).toBe(200);
    const left = (await (await fetch(`${easel.management}/models/summer/all`)).json()) as { modelVersion: string }[];
    expect(left.map((d) => d.modelVersion)).toEqual(['2.0']);
  });

  it('refuses an archive with ../ entries and writes nothing outside', async () => {
    const staging = mkdtempSync(path.join(tmpdir(), 'easel-evil-'));
    mkdirSync(path.join(staging, 'm'));
    writeFileSync(path.join(staging, 'm', 'easel.yaml'), 'handler: tensor\nmodel: model.onnx\n');
    writeFileSync(path.join(staging, 'escaped.txt'), 'pwned');
    // entry "m/../../escaped.txt" climbs out of the model directory
    await tar.create({ gzip: true, file: path.join(store, 'traversal.easel'), cwd: staging, portable: true, preservePaths: true }, ['m/easel.yaml', 'm/../escaped.txt', '../' + path.basename(staging) + '/escaped.txt']);
    const res = await register('traversal.easel');
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('EASEL_ARCHIVE_INVALID');
    expect(body.message).toMatch(/escapes|\.\./);
    expect(existsSync(path.join(easel.dataDir, 'escaped.txt'))).toBe(false);
    expect(existsSync(path.join(easel.dataDir, 'models', 'escaped.txt'))).toBe(false);
    rmSync(staging, { recursive: true, force: true });
  });

  it('refuses an archive with a symlink pointing out', async () => {
    const staging = mkdtempSync(path.join(tmpdir(), 'easel-evil-'));
    writeFileSync(path.join(staging, 'easel.yaml'), 'handler: tensor\nmodel: model.onnx\n');
    symlinkSync('/etc/passwd', path.join(staging, 'model.onnx'));
    symlinkSync('../../..', path.join(staging, 'up'));
    await tar.create({ gzip: true, file: path.join(store, 'symlink.easel'), cwd: staging, portable: true }, ['easel.yaml', 'model.onnx', 'up']);
    const res = await register('symlink.easel');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'EASEL_ARCHIVE_INVALID' });
    rmSync(staging, { recursive: true, force: true });
  });

  it('refuses an archive bomb beyond the size limit, and paths outside the store', async () => {
    const staging = mkdtempSync(path.join(tmpdir(), 'easel-bomb-'));
    writeFileSync(path.join(staging, 'easel.yaml'), 'handler: tensor\nmodel: model.onnx\n');
    writeFileSync(path.join(staging, 'zeros.bin'), Buffer.alloc(3 * 1024 * 1024));
    await tar.create({ gzip: true, file: path.join(store, 'bomb.easel'), cwd: staging }, ['easel.yaml', 'zeros.bin']);
    rmSync(staging, { recursive: true, force: true });
    const small = await startEasel(['--model-store', store, '--models', ''], { EASEL_MAX_ARCHIVE_BYTES: String(1024 * 1024) });
    try {
      const res = await fetch(`${small.management}/models?url=bomb.easel`, { method: 'POST' });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { message: string }).message).toMatch(/limit/);
      const outside = await fetch(`${small.management}/models?url=${encodeURIComponent('../../etc')}`, { method: 'POST' });
      expect(outside.status).toBe(403);
      const remote = await fetch(`${small.management}/models?url=${encodeURIComponent('http://127.0.0.1:1/m.easel')}`, { method: 'POST' });
      expect(remote.status).toBe(403);
      expect(((await remote.json()) as { message: string }).message).toMatch(/allow-list/);
    } finally {
      await small.stop();
    }
  });
});
