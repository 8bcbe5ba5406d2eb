// Starts a real S3-compatible server (s3rver) as its own process on an ephemeral port, with one
// bucket, for one test file. Its credentials are the fixed S3RVER / S3RVER.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface S3Process {
  endpoint: string;
  bucket: string;
  /** Environment for clients: credentials and region. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startS3(bucket = 'easel-test'): Promise<S3Process> {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-s3-'));
  const bin = path.join(path.dirname(createRequire(import.meta.url).resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const child = spawn(process.execPath, [bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '--configure-bucket', bucket], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const match = /listening on [^:\s]+:(\d+)/i.exec(out);
      if (match) resolve(Number(match[1]));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then(() => reject(new Error(`s3rver exited before listening:\n${out}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
