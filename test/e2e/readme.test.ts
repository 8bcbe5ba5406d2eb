// The README's quick-start block ("Using it"), run command by command as written against a fresh
// server. Only the addresses change (the test's server listens on ephemeral ports), and `npx
// easel` runs this checkout's CLI; the commands run in a folder whose models/ is that server's
// model store, as the repository's models/ is for `npm start`.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, startEasel, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const run = promisify(execFile);

/** The shell commands of the first ```sh block after a heading, comment lines dropped, continuations joined. */
function quickStart(readme: string, heading: string): string[] {
  const section = readme.slice(readme.indexOf(heading));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  return block
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

describe('README quick start', () => {
  let easel: EaselProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'easel-readme-'));
    mkdirSync(path.join(dir, 'models'));
    cpSync(path.join(ROOT, 'models', 'tiny-sd'), path.join(dir, 'models', 'tiny-sd'), { recursive: true });
    easel = await startEasel(['--model-store', path.join(dir, 'models')]);
    await waitModelLive(easel, 'tiny-sd');
  }, 90_000);

  afterAll(async () => {
    await easel?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs every command of "Using it" as written, and each does what it says', async () => {
    const commands = quickStart(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), '## Using it');
    expect(commands.length).toBeGreaterThan(10);
    const outputs: string[] = [];
    for (const command of commands) {
      const local = command
        .replaceAll('localhost:8080', easel.inference.replace('http://', ''))
        .replaceAll('localhost:8081', easel.management.replace('http://', ''))
        .replaceAll('localhost:8082', easel.metrics.replace('http://', ''))
        .replace(/^npx easel /, `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} `);
      const { stdout, stderr } = await run('bash', ['-c', local], { cwd: dir, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
      // No command may answer with an Easel error.
      expect(stdout, `${command}\n${stderr}`).not.toMatch(/"code":\s*"EASEL_/);
      outputs.push(stdout);
    }
    const out = (prefix: string): string => outputs[commands.findIndex((c) => c.startsWith(prefix))] ?? '';
    const meta = await sharp(path.join(dir, 'out.png')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
    expect((JSON.parse(out("curl -X POST localhost:8080/predictions/tiny-sd -H 'Content-Type: application/json' -H 'Accept") || '{}') as { images: string[] }).images).toHaveLength(2);
    expect(JSON.parse(out('curl localhost:8080/ping'))).toMatchObject({ status: 'Healthy' });
    expect(Object.keys((JSON.parse(out('curl localhost:8080/openapi.json')) as { paths: object }).paths)).toContain('/v1/jobs');
    expect(JSON.parse(out('curl -X POST "localhost:8081/models'))).toEqual({ status: 'Model "tiny-sd-copy" Version: 1.0 registered with 1 initial workers' });
    expect(out('curl -X PUT  "localhost:8081/models/tiny-sd-copy')).toContain('Workers scaled to 2');
    expect(out('curl "localhost:8081/models?limit=10"')).toContain('"modelName":"tiny-sd-copy"');
    expect(out('curl -X DELETE')).toContain('unregistered');
    expect(out('curl localhost:8082/metrics')).toContain('easel_requests_total');
  }, 300_000);
});
