// The distributed mode with a real Redis and a real S3-compatible server: an API-only node and
// `easel worker` nodes sharing the queue and the bucket, nothing on disk. Jobs run on the workers, their events reach the API's
// clients, and a job survives the death (kill -9) or draining (SIGTERM) of the node running it.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, startWorkerNode, waitFor, type EaselProcess, type WorkerNode } from '../helpers/easel-process.js';
import { startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { startS3, type S3Process } from '../helpers/s3-server.js';

const TINY_SD = path.join(ROOT, 'models', 'tiny-sd');
const PROMPT = 'a red circle on a blue background';

interface JobView {
  id: string;
  status: string;
  attempts: number;
  progress: { step: number; total: number } | null;
  outputs: { url: string }[];
}

describe('distributed mode (Redis)', () => {
  let redis: RedisProcess;
  let s3: S3Process;
  let api: EaselProcess;
  const nodes: WorkerNode[] = [];
  const storage = (): string[] => ['--artifact-url', `s3://${s3.bucket}/jobs`, '--s3-endpoint', s3.endpoint];
  const nodeArgs = (): string[] => ['--queue', redis.url, '--models', `tiny-sd=${TINY_SD}`, ...storage(), '--job-lock-ms', '1500'];
  const startNode = (): Promise<WorkerNode> => startWorkerNode(nodeArgs(), s3.env);

  beforeAll(async () => {
    redis = await startRedis();
    s3 = await startS3();
    api = await startEasel(['--queue', redis.url, '--no-local-workers', ...storage()], s3.env);
    nodes.push(await startNode(), await startNode());
  }, 120_000);
  afterAll(async () => {
    for (const n of nodes) await n.stop('SIGKILL');
    await api?.stop();
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
    const job = await submit({ prompt: PROMPT, seed: 2, num_inference_steps: 100 });
    const node = await runningOn(job.id);
    await waitFor(async () => ((await getJob(job.id)).progress?.step ?? 0) >= 3, 20_000, 'progress');
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    const done = await finished(job.id);
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(1);
    nodes.push(await startNode());
  }, 120_000);

  it('kill -9 of the node running a job: another node takes it over and finishes it', async () => {
    const input = { prompt: PROMPT, seed: 3, num_inference_steps: 100 };
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
});
