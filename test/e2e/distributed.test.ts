// The distributed mode with a real Redis and a real S3-compatible server: two API-only nodes and
// `easel worker` nodes sharing the queue and the bucket, nothing on disk. Jobs and synchronous
// predictions run on the workers, their events reach either API node's clients (resumable), and
// work survives the death (kill -9) or draining (SIGTERM) of the node running it.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createParser } from 'eventsource-parser';
import { Redis } from 'ioredis';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, startWorkerNode, waitFor, type EaselProcess, type WorkerNode } from '../helpers/easel-process.js';
import { startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { startS3, type S3Process } from '../helpers/s3-server.js';

const TINY_SD = path.join(ROOT, 'models', 'tiny-sd');
const TINY_LLAMA = path.join(ROOT, 'models', 'tiny-llama');
/** tiny-llama's end tokens (</s>, <|im_end|>) blocked: a generation runs its full length. */
const NO_END = Object.fromEntries(
  (JSON.parse(readFileSync(path.join(TINY_LLAMA, 'tokenizer.json'), 'utf8')) as { added_tokens: { id: number; content: string }[] }).added_tokens.filter((t) => t.content === '</s>' || t.content === '<|im_end|>').map((t) => [t.id, -100]),
);
const PROMPT = 'a red circle on a blue background';

interface JobView {
  id: string;
  status: string;
  attempts: number;
  progress: { step: number; total: number } | null;
  outputs: { url: string }[];
  input: Record<string, unknown>;
}

describe('distributed mode (Redis)', () => {
  let redis: RedisProcess;
  let s3: S3Process;
  let api: EaselProcess;
  let api2: EaselProcess;
  const nodes: WorkerNode[] = [];
  const storage = (): string[] => ['--artifact-url', `s3://${s3.bucket}/jobs`, '--s3-endpoint', s3.endpoint];
  // Debug logs say where each synchronous prediction started.
  const nodeArgs = (): string[] => ['--queue', redis.url, '--models', `tiny-sd=${TINY_SD}`, `tiny-llama=${TINY_LLAMA}`, ...storage(), '--job-lock-ms', '1500', '--log-level', 'debug'];
  const startNode = (): Promise<WorkerNode> => startWorkerNode(nodeArgs(), s3.env);

  beforeAll(async () => {
    redis = await startRedis();
    s3 = await startS3();
    api = await startEasel(['--queue', redis.url, '--no-local-workers', ...storage()], s3.env);
    api2 = await startEasel(['--queue', redis.url, '--no-local-workers', ...storage()], s3.env);
    nodes.push(await startNode(), await startNode());
  }, 120_000);
  afterAll(async () => {
    for (const n of nodes) await n.stop('SIGKILL');
    await api?.stop();
    await api2?.stop();
    await redis?.stop();
    await s3?.stop();
  });

  async function submit(input: Record<string, unknown>): Promise<JobView> {
    const res = await fetch(`${api.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd', input }) });
    expect(res.status, await res.clone().text()).toBe(202);
    return (await res.json()) as JobView;
  }
  const getJob = async (id: string): Promise<JobView> => (await (await fetch(`${api.inference}/v1/jobs/${id}`)).json()) as JobView;
  async function finished(id: string): Promise<JobView> {
    let job: JobView | undefined;
    await waitFor(async () => ['succeeded', 'failed', 'cancelled'].includes((job = await getJob(id)).status), 90_000, `job ${id} to finish`);
    return job!;
  }
  const runningOn = async (id: string): Promise<WorkerNode> => {
    let node: WorkerNode | undefined;
    await waitFor(() => (node = nodes.find((n) => n.child.exitCode === null && n.logs.some((l) => l.includes('"job started"') && l.includes(id)))) !== undefined, 30_000, 'a node to start the job');
    return node!;
  };
  const output = async (job: JobView): Promise<Buffer> => Buffer.from(await (await fetch(`${api.inference}${job.outputs[0]!.url}`)).arrayBuffer());

  it('admits on the API-only node with the handler of its configured model: an invalid job is a 400, never queued', async () => {
    const res = await fetch(`${api.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd', input: { prompt: PROMPT, scheduler: 'constructor' } }) });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'EASEL_INVALID_PARAMETER', field: 'scheduler' });
  });

  it('runs a job submitted to the API on a worker node; progress reaches the API client', async () => {
    await alive(1);
    const job = await submit({ prompt: PROMPT, seed: 1, num_inference_steps: 30 });
    const events = await (await fetch(`${api.inference}/v1/jobs/${job.id}/events`)).text();
    expect(events).toMatch(/event: progress\ndata: \{"step":30,"total":30/);
    expect(events.trim().split('\n\n').pop()).toMatch(/"status":"succeeded"/);
    const done = await getJob(job.id);
    expect((await output(done)).subarray(1, 4).toString()).toBe('PNG');
    // The API node knows the remote model's queue depth.
    expect(await (await fetch(`${api.metrics}/metrics`)).text()).toMatch(/easel_jobs_queued\{model="tiny-sd"\} \d+/);
    // Prefer: respond-async on the API node: the model is served elsewhere, the job runs there.
    const res = await fetch(`${api.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'respond-async' }, body: JSON.stringify({ data: PROMPT }) });
    expect(res.status).toBe(202);
    expect((await finished(((await res.json()) as JobView).id)).status).toBe('succeeded');
  });

  it('SIGTERM to the node running a job: it finishes the job, then exits 0', async () => {
    await alive(1);
    const job = await submit({ prompt: PROMPT, seed: 2, num_inference_steps: 100 });
    const node = await runningOn(job.id);
    await waitFor(async () => ((await getJob(job.id)).progress?.step ?? 0) >= 3, 20_000, 'progress');
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    const done = await finished(job.id);
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(1);
  }, 120_000);

  it('kill -9 of the node running a job: another node takes it over and finishes it', async () => {
    const input = { prompt: PROMPT, seed: 3, num_inference_steps: 100 };
    await alive(2);
    const job = await submit(input);
    const node = await runningOn(job.id);
    await waitFor(async () => ((await getJob(job.id)).progress?.step ?? 0) >= 3, 20_000, 'progress');
    node.child.kill('SIGKILL');
    await node.exited;
    const done = await finished(job.id);
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(2);
    expect(done.outputs).toHaveLength(1);
    // The same request run without faults gives the same image.
    const reference = await finished((await submit(input)).id);
    expect((await output(done)).equals(await output(reference))).toBe(true);
  }, 120_000);

  /** Tests kill nodes: each starts with at least `n` alive, whatever ran before it. */
  async function alive(n: number): Promise<WorkerNode[]> {
    while (nodes.filter((x) => x.child.exitCode === null && x.child.signalCode === null).length < n) nodes.push(await startNode());
    return nodes.filter((x) => x.child.exitCode === null && x.child.signalCode === null);
  }

  const predict = (node: EaselProcess, input: Record<string, unknown>): Promise<Response> =>
    fetch(`${node.inference}/predictions/tiny-sd`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });

  it('POST /predictions on either API node (no local workers) is served by a worker node', async () => {
    await alive(1);
    const input = { prompt: PROMPT, seed: 7, num_inference_steps: 10 };
    const [a, b] = await Promise.all([predict(api, input), predict(api2, input)]);
    expect(a.status, await a.clone().text()).toBe(200);
    expect(b.status).toBe(200);
    expect(a.headers.get('content-type')).toBe('image/png');
    const [pa, pb] = [Buffer.from(await a.arrayBuffer()), Buffer.from(await b.arrayBuffer())];
    expect(pa.subarray(1, 4).toString()).toBe('PNG');
    expect(pa.equals(pb)).toBe(true);
    // Admission happens on the API node: an invalid request never reaches the queue.
    const bad = await predict(api2, { prompt: PROMPT, num_inference_steps: 0 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ field: 'num_inference_steps' });
    expect((await predict(api, { prompt: PROMPT, model: 'x' })).status).toBe(400);
    expect((await fetch(`${api.inference}/predictions/no-such-model`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(404);
  }, 120_000);

  it('kill -9 of a worker node with 8 synchronous requests in flight: every one is answered by the other node', async () => {
    const inputs = Array.from({ length: 8 }, (_, i) => ({ prompt: PROMPT, seed: 100 + i, num_inference_steps: 60 }));
    const live = await alive(2);
    const seen = new Map(live.map((n) => [n, n.logs.length]));
    const pending = inputs.map((input, i) => predict(i % 2 ? api2 : api, input));
    let victim: WorkerNode | undefined;
    const startedHere = (n: WorkerNode): boolean => n.logs.slice(seen.get(n) ?? 0).some((l) => l.includes('"prediction started"'));
    await waitFor(() => (victim = live.find(startedHere)) !== undefined, 30_000, 'a node to start a prediction');
    victim!.child.kill('SIGKILL');
    await victim!.exited;
    const answers = await Promise.all(pending);
    for (const res of answers) expect(res.status, await res.clone().text()).toBe(200);
    const images = await Promise.all(answers.map(async (r) => Buffer.from(await r.arrayBuffer())));
    // Each answer is that request's image: the same as the request run again without faults.
    for (const i of [0, 5]) {
      const again = await predict(api, inputs[i]!);
      expect(Buffer.from(await again.arrayBuffer()).equals(images[i]!)).toBe(true);
    }
  }, 180_000);

  async function submitText(input: Record<string, unknown>): Promise<JobView> {
    const res = await fetch(`${api.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-llama', input }) });
    expect(res.status, await res.clone().text()).toBe(202);
    return (await res.json()) as JobView;
  }

  /** A text job's token events joined, followed over SSE from the start; `killer` hears of each. */
  async function followText(id: string, killer: { maybe(): void }): Promise<string> {
    let text = '';
    const parser = createParser({
      onEvent: (e) => {
        if (e.event !== 'token') return;
        text += (JSON.parse(e.data) as { text: string }).text;
        killer.maybe();
      },
    });
    const decoder = new TextDecoder();
    for await (const part of (await fetch(`${api.inference}/v1/jobs/${id}/events`, { headers: { 'last-event-id': '0' } })).body!) parser.feed(decoder.decode(part as Uint8Array, { stream: true }));
    return text;
  }

  /**
   * At the first text of a run: every worker node is stopped (SIGSTOP: nothing more it makes
   * reaches Redis), the one that started the run is killed (-9), the others go on; another node
   * takes the run over when its lock lapses.
   */
  function nodeKiller(live: WorkerNode[], started: string): { maybe(): void; victim(): WorkerNode | undefined } {
    const seen = new Map(live.map((n) => [n, n.logs.length]));
    let victim: WorkerNode | undefined;
    return {
      maybe: () => {
        if (victim) return;
        for (const n of live) n.child.kill('SIGSTOP');
        victim = live.find((n) => n.logs.slice(seen.get(n) ?? 0).some((l) => l.includes(started)));
        victim?.child.kill('SIGKILL');
        for (const n of live) if (n !== victim) n.child.kill('SIGCONT');
      },
      victim: () => victim,
    };
  }

  it('kill -9 of the node running a text job (seeded, and unseeded: the API node draws its seed at admission): another node runs it again, and its events still join exactly to its stored output', async () => {
    const text = async (job: JobView): Promise<string> => (await fetch(`${api.inference}${job.outputs[0]!.url}`)).text();
    for (const seed of [21, undefined]) {
      const input = { prompt: 'Once upon a time', max_new_tokens: 150, temperature: 0.9, logit_bias: NO_END, ...(seed === undefined ? {} : { seed }) };
      const killer = nodeKiller(await alive(2), '"job started"');
      const job = await submitText(input);
      const followed = await followText(job.id, killer);
      expect(killer.victim()).toBeDefined();
      const done = await finished(job.id);
      expect(done).toMatchObject({ status: 'succeeded', attempts: 2 });
      // The uninterrupted run: the same seed (unseeded: the one drawn at admission, in the job's input).
      expect(typeof job.input.seed).toBe('number');
      const expected = await text(await finished((await submitText({ ...input, seed: job.input.seed })).id));
      expect(await text(done), `seed ${seed}`).toBe(expected);
      expect(followed).toBe(expected);
      const replay = await (await fetch(`${api2.inference}/v1/jobs/${job.id}/events`, { headers: { 'last-event-id': '0' } })).text();
      expect([...replay.matchAll(/event: token\ndata: (.*)\n/g)].map((m) => (JSON.parse(m[1]!) as { text: string }).text).join('')).toBe(expected);
    }
  }, 180_000);

  it('an unseeded text job queued by an API node that knows no model gets its seed from its id on every node: a takeover makes the same text', async () => {
    const store = mkdtempSync(path.join(tmpdir(), 'easel-empty-store-'));
    const blind = await startEasel(['--queue', redis.url, '--no-local-workers', '--model-store', store, ...storage()], s3.env);
    try {
      const input = { prompt: 'Once upon a time', max_new_tokens: 150, temperature: 0.9, logit_bias: NO_END };
      const killer = nodeKiller(await alive(2), '"job started"');
      const res = await fetch(`${blind.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-llama', input }) });
      expect(res.status, await res.clone().text()).toBe(202);
      const job = (await res.json()) as JobView;
      // Queued as sent: no seed was drawn where it was submitted.
      expect(job.input.seed).toBeUndefined();
      await followText(job.id, killer);
      expect(killer.victim()).toBeDefined();
      const done = await finished(job.id);
      expect(done).toMatchObject({ status: 'succeeded', attempts: 2 });
      const seed = createHash('sha256').update(job.id).digest().readUInt32BE(0) >>> 1;
      const reference = await finished((await submitText({ ...input, seed })).id);
      const text = async (j: JobView): Promise<string> => (await fetch(`${api.inference}${j.outputs[0]!.url}`)).text();
      expect(await text(done)).toBe(await text(reference));
    } finally {
      await blind.stop();
      rmSync(store, { recursive: true, force: true });
    }
  }, 180_000);

  it('kill -9 of the node running a streamed text prediction: the client gets the uninterrupted text, no character twice', async () => {
    const body = JSON.stringify({ data: 'Once upon a time', max_new_tokens: 150, temperature: 0.9, seed: 22, logit_bias: NO_END, stream: true });
    const stream = async (onChunk?: () => void): Promise<string> => {
      const res = await fetch(`${api.inference}/predictions/tiny-llama`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(res.status).toBe(200);
      let text = '';
      const decoder = new TextDecoder();
      for await (const part of res.body!) {
        text += decoder.decode(part as Uint8Array, { stream: true });
        onChunk?.();
      }
      return text;
    };
    const expected = await stream();
    const killer = nodeKiller(await alive(2), '"prediction started"');
    expect(await stream(() => killer.maybe())).toBe(expected);
    expect(killer.victim()).toBeDefined();
  }, 180_000);

  it('SSE resume across API nodes: a client that reconnects to the other node with Last-Event-ID gets exactly the events it missed', async () => {
    await alive(1);
    const job = await submit({ prompt: PROMPT, seed: 9, num_inference_steps: 60, preview_every: 10 });
    interface Ev { id: string | undefined; event: string | undefined; data: string }
    const read = async (node: EaselProcess, headers: Record<string, string>, stopAt?: (e: Ev) => boolean): Promise<Ev[]> => {
      const controller = new AbortController();
      const res = await fetch(`${node.inference}/v1/jobs/${job.id}/events`, { headers, signal: controller.signal });
      const events: Ev[] = [];
      const parser = createParser({ onEvent: (e) => events.push({ id: e.id, event: e.event, data: e.data }) });
      try {
        for await (const chunk of res.body!) {
          parser.feed(Buffer.from(chunk as Uint8Array).toString('utf8'));
          const hit = stopAt ? events.findIndex(stopAt) : -1;
          if (hit >= 0) {
            controller.abort();
            return events.slice(0, hit + 1);
          }
        }
      } catch (err) {
        if (!controller.signal.aborted) throw err;
      }
      return events;
    };
    const before = await read(api, {}, (e) => e.event === 'progress' && (JSON.parse(e.data) as { step: number }).step >= 5);
    const lastSeen = before[before.length - 1]!;
    await waitFor(async () => ((await getJob(job.id)).progress?.step ?? 0) >= 15, 60_000, 'progress while the client is away');
    const after = await read(api2, { 'last-event-id': lastSeen.id! });
    expect(JSON.parse(after[after.length - 1]!.data)).toMatchObject({ status: 'succeeded' });
    const all = await read(api, { 'last-event-id': '0' });
    const missed = all.slice(all.findIndex((e) => e.id === lastSeen.id) + 1);
    expect(missed.length).toBeGreaterThan(10);
    expect(after).toEqual(missed);
  }, 120_000);
});

// The list KEDA's redis scaler reads (LLEN), named as deploy/kubernetes's ScaledObject names it.
describe('the KEDA key (deploy/kubernetes ScaledObject listName)', () => {
  const scaled = parseAllDocuments(readFileSync(path.join(ROOT, 'deploy', 'kubernetes', 'workers', 'worker-tiny-sd.yaml'), 'utf8'))
    .map((d) => d.toJSON() as { kind: string; spec: { triggers: { metadata: { listName: string } }[] } })
    .find((o) => o.kind === 'ScaledObject')!;
  const listName = scaled.spec.triggers[0]!.metadata.listName;

  it('equals the jobs queued while no worker runs, falls as workers finish them, and still counts those of a worker killed mid-job', async () => {
    const redis = await startRedis();
    const s3 = await startS3();
    const client = new Redis(redis.url);
    const storage = ['--artifact-url', `s3://${s3.bucket}/jobs`, '--s3-endpoint', s3.endpoint];
    const api = await startEasel(['--queue', redis.url, '--no-local-workers', ...storage], s3.env);
    const nodes: WorkerNode[] = [];
    try {
      const N = 10;
      // Scale from zero: no worker anywhere, and the API node admits and queues the work. Step
      // counts from 10 to 100: the jobs finish one after another, not in one turn.
      const ids: string[] = [];
      for (let i = 0; i < N; i++) {
        const res = await fetch(`${api.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd', input: { prompt: PROMPT, seed: i, num_inference_steps: 10 + 10 * i } }) });
        expect(res.status).toBe(202);
        ids.push(((await res.json()) as { id: string }).id);
      }
      const depth = (): Promise<number> => client.llen(listName);
      const unfinished = async (): Promise<number> => {
        const jobs = await Promise.all(ids.map(async (id) => ((await (await fetch(`${api.inference}/v1/jobs/${id}`)).json()) as JobView).status));
        return jobs.filter((s) => s === 'queued' || s === 'running').length;
      };
      expect(await depth()).toBe(N);
      const nodeArgs = ['--queue', redis.url, '--models', `tiny-sd=${TINY_SD}`, ...storage, '--job-lock-ms', '1500'];
      nodes.push(await startWorkerNode(nodeArgs, s3.env));
      // Falls as the worker finishes jobs; running ones stay counted. (Jobs finish meanwhile: the
      // count read between two readings of the list lies between them.)
      await waitFor(async () => (await unfinished()) <= N - 2, 90_000, 'two jobs to finish');
      const [before, between, after] = [await depth(), await unfinished(), await depth()];
      expect(after).toBeLessThanOrEqual(between);
      expect(between).toBeLessThanOrEqual(before);
      expect(after).toBeGreaterThan(0);
      // Killed mid-job: its running jobs are still outstanding work, and the list says so.
      await nodes[0]!.stop('SIGKILL');
      const left = await unfinished();
      expect(left).toBeGreaterThan(0);
      expect(await depth()).toBe(left);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(await depth()).toBe(await unfinished());
      // A new worker (KEDA's) takes them over and finishes everything: the list empties.
      nodes.push(await startWorkerNode(nodeArgs, s3.env));
      await waitFor(async () => (await unfinished()) === 0, 120_000, 'every job to finish');
      expect(await depth()).toBe(0);
      // The worker node's own metrics: its step batches and its time in ONNX Runtime.
      const metrics = await (await fetch(`${nodes[1]!.metrics}/metrics`)).text();
      expect(metrics).toMatch(/^easel_step_batch_size_count\{model="tiny-sd"\} [1-9]/m);
      expect(metrics).toMatch(/^easel_session_run_seconds_total\{model="tiny-sd"\} [0-9.]*[1-9]/m);
      expect(metrics).toMatch(/^easel_workers_live\{model="tiny-sd"\} 1$/m);
    } finally {
      for (const n of nodes) await n.stop('SIGKILL');
      client.disconnect();
      await api.stop();
      await redis.stop();
      await s3.stop();
    }
  }, 240_000);
});

describe('cost-aware pools', () => {
  it("routes high-priority work to on-demand capacity, lets spot take it after its wait, and counts each pool's worker-seconds, cost and outputs", async () => {
    const redis = await startRedis();
    const s3 = await startS3();
    const storage = ['--artifact-url', `s3://${s3.bucket}/jobs`, '--s3-endpoint', s3.endpoint];
    const api = await startEasel(['--queue', redis.url, '--no-local-workers', ...storage], s3.env);
    const nodes: WorkerNode[] = [];
    try {
      // Spot takes normal and low work at once, high work only after it waited 3 s for another pool.
      const common = ['--queue', redis.url, '--models', `tiny-sd=${TINY_SD}`, ...storage, '--pool-rules', JSON.stringify({ spot: { after: { high: 3 } } })];
      const spot = await startWorkerNode([...common, '--pool', 'spot', '--price-per-hour', '0.9'], s3.env);
      nodes.push(spot);
      interface Timed { id: string; status: string; created_at: string; started_at: string }
      const run = async (priority: number): Promise<{ job: Timed; waitedMs: number }> => {
        const res = await fetch(`${api.inference}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-sd', priority, input: { prompt: PROMPT, num_inference_steps: 10 } }) });
        const { id } = (await res.json()) as { id: string };
        let job: Timed | undefined;
        await waitFor(async () => (job = (await (await fetch(`${api.inference}/v1/jobs/${id}`)).json()) as Timed).status === 'succeeded', 60_000, `job ${id}`);
        return { job: job!, waitedMs: Date.parse(job!.started_at) - Date.parse(job!.created_at) };
      };
      const ranOn = (node: WorkerNode, id: string): boolean => node.logs.some((l) => l.includes('"job started"') && l.includes(id));
      const normal = await run(0);
      // "At once" is well under the 3 s a spot pool makes high work wait (a loaded machine takes 2 s to start one).
      expect(normal.waitedMs).toBeLessThan(2500);
      const high = await run(10);
      expect(high.waitedMs).toBeGreaterThanOrEqual(3000);
      expect(ranOn(spot, high.job.id)).toBe(true);
      // On-demand capacity up: high work goes there at once.
      const onDemand = await startWorkerNode([...common, '--pool', 'on-demand', '--price-per-hour', '3'], s3.env);
      nodes.push(onDemand);
      const urgent = await run(10);
      expect(urgent.waitedMs).toBeLessThan(2500);
      expect(ranOn(onDemand, urgent.job.id)).toBe(true);
      // Each pool's bill: worker-seconds × its price ÷ 3600, and its outputs (cost per image = cost ÷ outputs).
      const value = (text: string, name: string, pool: string): number => Number(new RegExp(`^${name}\\{model="tiny-sd",pool="${pool}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      const spotMetrics = await (await fetch(`${spot.metrics}/metrics`)).text();
      const seconds = value(spotMetrics, 'easel_worker_seconds_total', 'spot');
      expect(seconds).toBeGreaterThan(3);
      expect(value(spotMetrics, 'easel_cost_total', 'spot')).toBeCloseTo((seconds * 0.9) / 3600, 9);
      expect(value(spotMetrics, 'easel_outputs_total', 'spot')).toBe(2);
      const onDemandMetrics = await (await fetch(`${onDemand.metrics}/metrics`)).text();
      expect(value(onDemandMetrics, 'easel_cost_total', 'on-demand')).toBeCloseTo((value(onDemandMetrics, 'easel_worker_seconds_total', 'on-demand') * 3) / 3600, 9);
      expect(value(onDemandMetrics, 'easel_outputs_total', 'on-demand')).toBe(1);
    } finally {
      for (const n of nodes) await n.stop('SIGKILL');
      await api.stop();
      await redis.stop();
      await s3.stop();
    }
  }, 180_000);
});
