// Starts the real `easel serve` (the built CLI) as a child process on ephemeral ports, with its
// own data directory, and stops it. Each test owns its server.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'models');
export const CLI = path.join(ROOT, 'bin', 'easel.js');

export interface EaselProcess {
  child: ChildProcess;
  inference: string;
  management: string;
  metrics: string;
  dataDir: string;
  logs: string[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  /** Another checkout's built CLI (bench/overhead compares a base commit in the same run). */
  cli?: string;
  /** false: no port options, the command's own defaults (the one-machine test). */
  ephemeralPorts?: boolean;
  /** The server's soft limit on open files (`ulimit -n`), as on a machine that keeps the common 1024. */
  openFileLimit?: number;
}

export async function startEasel(args: string[] = [], env: Record<string, string> = {}, { cli = CLI, ephemeralPorts = true, openFileLimit }: StartOptions = {}): Promise<EaselProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'easel-test-'));
  const ports = ephemeralPorts ? ['--port', '0', '--management-port', '0', '--metrics-port', '0'] : [];
  const command = [process.execPath, cli, 'serve', ...ports, '--host', '127.0.0.1', '--data-dir', dataDir, '--log-level', 'info', ...args];
  // exec keeps the server the child itself (signals reach it), with the lowered limit.
  const [file, ...argv] = openFileLimit === undefined ? command : ['sh', '-c', `ulimit -n ${openFileLimit} && exec "$@"`, 'sh', ...command];
  const child = spawn(file!, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const bound = await new Promise<{ inference: number; management: number; metrics: number }>((resolve, reject) => {
    collectLogs(child, logs, (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; ports?: { inference: number; management: number; metrics: number } };
        if (rec.msg === 'easel listening' && rec.ports) resolve(rec.ports);
      } catch {
        // not a JSON log line
      }
    });
    void exited.then((code) => reject(new Error(`easel exited (${code}) before listening:\n${logs.join('\n')}`)));
  });
  return {
    child, dataDir, logs,
    inference: `http://127.0.0.1:${bound.inference}`,
    management: `http://127.0.0.1:${bound.management}`,
    metrics: `http://127.0.0.1:${bound.metrics}`,
    stop: stopper(child, exited, dataDir, 15_000),
  };
}

/** Stops a child with `signal` (SIGKILL after `graceMs`), then removes its data directory. */
function stopper(child: ChildProcess, exited: Promise<number | null>, dataDir: string, graceMs: number): (signal?: NodeJS.Signals) => Promise<number | null> {
  return async (signal = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(timer);
    rmSync(dataDir, { recursive: true, force: true });
    return code;
  };
}

/** Keeps a child's output in `logs`, line by line, calling `onLine` for each stdout line. */
function collectLogs(child: ChildProcess, logs: string[], onLine: (line: string) => void): void {
  let buf = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      logs.push(line);
      onLine(line);
    }
  });
  child.stderr!.on('data', (c: Buffer) => logs.push(c.toString()));
}

/** Polls until `check` returns true (or throws after `timeoutMs`). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Waits until every model reports its minWorkers live. */
export function waitHealthy(e: EaselProcess, timeoutMs = 30_000): Promise<void> {
  return waitFor(async () => (await fetch(`${e.inference}/ping`)).status === 200, timeoutMs, 'GET /ping to be 200');
}

export interface WorkerNode {
  child: ChildProcess;
  logs: string[];
  /** Its metrics listener (loopback, an ephemeral port). */
  metrics: string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `easel worker` (a distributed-mode worker node) and waits until it is ready; its metrics port is the one it logs. */
export async function startWorkerNode(args: string[], env: Record<string, string> = {}): Promise<WorkerNode> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'easel-node-'));
  const child = spawn(process.execPath, [CLI, 'worker', '--data-dir', dataDir, '--metrics-host', '127.0.0.1', '--log-level', 'info', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const metricsPort = await new Promise<number>((resolve, reject) => {
    collectLogs(child, logs, (line) => {
      if (line.includes('"easel worker ready"')) resolve((JSON.parse(line) as { ports: { metrics: number } }).ports.metrics);
    });
    void exited.then((code) => reject(new Error(`easel worker exited (${code}) before it was ready:\n${logs.join('\n')}`)));
  });
  return {
    child, logs, exited, metrics: `http://127.0.0.1:${metricsPort}`,
    stop: stopper(child, exited, dataDir, 30_000),
  };
}

/** Waits until the model has a live worker (registration at start is asynchronous). */
export function waitModelLive(e: EaselProcess, name: string, timeoutMs = 60_000): Promise<void> {
  return waitFor(
    async () => {
      const body = (await (await fetch(`${e.inference}/ping`)).json()) as { models?: { name: string; liveWorkers: number }[] };
      return body.models?.some((m) => m.name === name && m.liveWorkers > 0) ?? false;
    },
    timeoutMs,
    `${name} to have a live worker`,
  );
}

/** Starts `easel serve --models name=dir [args]` and waits until the model has a live worker. */
export async function serveModel(name: string, dir: string, args: string[] = [], env: Record<string, string> = {}, options: StartOptions = {}): Promise<EaselProcess> {
  const e = await startEasel(['--models', `${name}=${dir}`, ...args], env, options);
  try {
    await waitModelLive(e, name);
  } catch (err) {
    await e.stop();
    throw err;
  }
  return e;
}

/**
 * A bundled language model copied to `to` under another name, with an easel.yaml of its own:
 * text-generation on one intra-op thread, batches of 16, then `extra` (more lines; indented, they
 * go on under `batching:`). The folder, to serve beside others.
 */
export function textModelVariant(model: string, to: string, name: string, extra = ''): string {
  cpSync(path.join(ROOT, 'models', model), to, { recursive: true, filter: (f) => path.basename(f) !== 'easel.yaml' });
  writeFileSync(path.join(to, 'easel.yaml'), `name: ${name}\nhandler: text-generation\nruntime:\n  intraOpThreads: 1\nbatching:\n  batchSize: 16\n${extra}`);
  return to;
}
