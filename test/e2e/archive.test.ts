// `easel archive`, registering archives over the management API, versions, and safe extraction.
import { execFile } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
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

/** A raw tar header block (ustar), for archives node-tar would not write. */
function tarHeader(name: string, type: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write(type, 156);
  h.write('ustar\u000000', 257, 'latin1');
  h.write('        ', 148);
  const sum = h.reduce((a, b) => a + b, 0);
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** gzip of `megabytes` MiB of zeros, streamed (never held whole). */
async function gzipZeros(megabytes: number): Promise<Buffer> {
  const gz = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gz.on('data', (c: Buffer) => chunks.push(c));
  const zeros = Buffer.alloc(1 << 20);
  for (let i = 0; i < megabytes; i++) if (!gz.write(zeros)) await new Promise((r) => gz.once('drain', r));
  await new Promise((r) => gz.end(r));
  return Buffer.concat(chunks);
}

describe('archives cannot reach outside their folder', () => {
  const extracted = (): string[] => (existsSync(path.join(easel.dataDir, 'models')) ? readdirSync(path.join(easel.dataDir, 'models')) : []);
  const staged = (files: Record<string, string>): string => {
    const staging = mkdtempSync(path.join(tmpdir(), 'easel-evil-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(path.join(staging, name), text);
    return staging;
  };

  it('refuses a chain of links that is lexically inside and physically outside, leaving nothing extracted', async () => {
    const staging = staged({ 'easel.yaml': 'handler: tensor\nmodel: model.onnx\n' });
    // deep/…/l -> ../…/.. is the archive's root; x -> deep/…/l/../…/.. is lexically the root too, physically
    // far above it (the file system's root); model.onnx -> x/etc/passwd.
    const depth = 12;
    const deep = Array.from({ length: depth }, () => 'd').join('/');
    mkdirSync(path.join(staging, deep), { recursive: true });
    symlinkSync(Array.from({ length: depth }, () => '..').join('/'), path.join(staging, deep, 'l'));
    symlinkSync(`${deep}/l/${Array.from({ length: depth + 1 }, () => '..').join('/')}`, path.join(staging, 'x'));
    symlinkSync('x/etc/passwd', path.join(staging, 'model.onnx'));
    // In this order node-tar writes every link (model.onnx before x exists, so it is not written through a link).
    const dirs = Array.from({ length: depth }, (_, i) => Array.from({ length: i + 1 }, () => 'd').join('/'));
    await tar.create({ gzip: true, file: path.join(store, 'chain.easel'), cwd: staging, portable: true, noDirRecurse: true }, ['easel.yaml', 'model.onnx', ...dirs, `${deep}/l`, 'x']);
    rmSync(staging, { recursive: true, force: true });
    const before = extracted();
    const res = await register('chain.easel');
    const body = (await res.json()) as { code: string; message: string };
    expect(res.status, body.message).toBe(400);
    expect(body.code).toBe('EASEL_ARCHIVE_INVALID');
    expect(body.message).toMatch(/link that leads outside/);
    expect(body.message).not.toMatch(/root:/);
    expect(extracted()).toEqual(before);
  });

  it('refuses model: and runtime.variant: paths that leave the folder, naming the field, and removes what it extracted', async () => {
    const before = extracted();
    for (const [yaml, field] of [['handler: tensor\nmodel: ../../../add-one/model.onnx\n', 'model'], ['handler: tensor\nmodel: model.onnx\nruntime: {variant: ../../../x}\n', 'runtime.variant']] as const) {
      const staging = staged({ 'easel.yaml': yaml });
      copyFileSync(path.join(FIXTURES, 'add-one', 'model.onnx'), path.join(staging, 'model.onnx'));
      await tar.create({ gzip: true, file: path.join(store, 'outside.easel'), cwd: staging, portable: true }, ['easel.yaml', 'model.onnx']);
      rmSync(staging, { recursive: true, force: true });
      const res = await register('outside.easel');
      const body = (await res.json()) as { code: string; field: string; message: string };
      expect(res.status, body.message).toBe(400);
      expect(body).toMatchObject({ code: 'EASEL_MODEL_INVALID', field });
      expect(body.message).not.toContain(store);
      expect(body.message).not.toContain(easel.dataDir);
    }
    expect(extracted()).toEqual(before);
  });

  it('reads a tar.gz no further than its end-of-archive marker: a gzip bomb after it is never inflated', async () => {
    const staging = staged({ 'easel.yaml': 'handler: tensor\nmodel: model.onnx\nminWorkers: 1\n' });
    copyFileSync(path.join(FIXTURES, 'add-one', 'model.onnx'), path.join(staging, 'model.onnx'));
    const file = path.join(store, 'trailing.easel');
    await tar.create({ gzip: true, file, cwd: staging, portable: true }, ['easel.yaml', 'model.onnx']);
    rmSync(staging, { recursive: true, force: true });
    // 16 more gzip members of 1 GiB of zeros each: 16 GiB that a reader past the end would inflate.
    const member = await gzipZeros(1024);
    for (let i = 0; i < 16; i++) appendFileSync(file, member);
    const started = Date.now();
    const res = await register('trailing.easel', '&model_name=trailing');
    expect(res.status, await res.text()).toBe(200);
    const predicted = await fetch(`${easel.inference}/predictions/trailing`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: [1, 2] }) });
    expect(await predicted.json()).toMatchObject({ outputs: [{ name: 'y', data: [2, 3] }] });
    console.log(`registered an archive followed by 16 GiB of gzip'd zeros in ${Date.now() - started} ms`);
  }, 60_000);

  it('counts decompressed bytes, headers included, against the archive budget', async () => {
    // A 3 MiB pax header: no entry's size says so, the decompressed stream does.
    const pax = Buffer.concat([tarHeader('PaxHeader', 'x', 3 << 20), Buffer.alloc(3 << 20, 'a'), tarHeader('easel.yaml', '0', 0), Buffer.alloc(1024)]);
    const gz = await new Promise<Buffer>((resolve) => {
      const z = createGzip();
      const chunks: Buffer[] = [];
      z.on('data', (c: Buffer) => chunks.push(c));
      z.on('end', () => resolve(Buffer.concat(chunks)));
      z.end(pax);
    });
    writeFileSync(path.join(store, 'pax.easel'), gz);
    const small = await startEasel(['--model-store', store, '--models', ''], { EASEL_MAX_ARCHIVE_BYTES: String(1024 * 1024) });
    try {
      const res = await fetch(`${small.management}/models?url=pax.easel`, { method: 'POST' });
      const body = (await res.json()) as { code: string; message: string };
      expect(res.status, body.message).toBe(400);
      expect(body).toMatchObject({ code: 'EASEL_ARCHIVE_INVALID' });
      expect(body.message).toMatch(/limit of 1048576 bytes/);
    } finally {
      await small.stop();
    }
  });
});
