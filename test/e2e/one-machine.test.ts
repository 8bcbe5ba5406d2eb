// One machine, several Easel processes, no port options: an `easel serve` (8080, 8081, 8082) and
// two `easel worker` nodes (one per GPU is the usual layout) all start; each worker's metrics
// answer at the port it logged. A port the user names that is taken is an error naming it.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, startWorkerNode, waitFor, type EaselProcess, type WorkerNode } from '../helpers/easel-process.js';
import { startRedis, type RedisProcess } from '../helpers/redis-server.js';

const TINY_LM = path.join(ROOT, 'models', 'tiny-lm');

/** The sum of a metric's samples for a model in a Prometheus text exposition. */
function sample(text: string, name: string, model: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && l.includes(`model="${model}"`))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('one machine: a server and two worker nodes, no port options', () => {
  let redis: RedisProcess;
  let api: EaselProcess;
  const workers: WorkerNode[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    api = await startEasel(['--queue', redis.url, '--no-local-workers', '--models', `tiny-lm=${TINY_LM}`], {}, { ephemeralPorts: false });
    const args = ['--queue', redis.url, '--models', `tiny-lm=${TINY_LM}`];
    workers.push(await startWorkerNode(args), await startWorkerNode(args));
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) await w.stop();
    await api?.stop();
    await redis?.stop();
  });

  it('starts all three: the server on its default ports, each worker on a port it logs', async () => {
    expect([api.inference, api.management, api.metrics]).toEqual(['http://127.0.0.1:8080', 'http://127.0.0.1:8081', 'http://127.0.0.1:8082']);
    const [a, b] = workers.map((w) => w.metrics);
    expect(a).not.toBe(b);
    expect(workers.map((w) => w.metrics)).not.toContain(api.metrics);

    const res = await fetch(`${api.inference}/predictions/tiny-lm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'Once upon a time', max_new_tokens: 8, seed: 1 }) });
    expect(res.status, await res.clone().text()).toBe(200);

    // Each worker's own metrics, at its logged port: its live worker process, and the tokens it made.
    const scrape = (): Promise<string[]> => Promise.all(workers.map(async (w) => (await fetch(`${w.metrics}/metrics`)).text()));
    await waitFor(async () => (await scrape()).every((t) => sample(t, 'easel_workers_live', 'tiny-lm') === 1), 30_000, "each node's tiny-lm worker to be live");
    const texts = await scrape();
    const made = texts.map((t) => sample(t, 'easel_generation_tokens_total', 'tiny-lm'));
    expect(made.filter((n) => n > 0), `tokens made by each worker: ${made.join(', ')}`).toHaveLength(1);
    expect(await (await fetch(`${api.metrics}/metrics`)).text()).toContain('easel_requests_total{model="tiny-lm",status="200"} 1');
  });

  it('a metrics port named and already taken stops the worker with a message naming it', async () => {
    const started = startWorkerNode(['--queue', redis.url, '--models', `tiny-lm=${TINY_LM}`, '--metrics-port', '8082']);
    await expect(started).rejects.toThrow(/127\.0\.0\.1:8082 is already in use \(--metrics-port\)/);
  });
});
