// A worker killed with SIGKILL mid-request: the server stays up, restarts the worker, retries
// the request once on a live worker, and /ping tells the truth meanwhile.
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startEasel, waitFor, waitHealthy, type EaselProcess } from '../helpers/easel-process.js';

let easel: EaselProcess | undefined;
afterEach(async () => {
  await easel?.stop();
  easel = undefined;
});

interface Desc { workers: { pid: number | null; status: string; restarts: number }[] }
const describeModel = async (e: EaselProcess): Promise<Desc> => ((await (await fetch(`${e.management}/models/slow`)).json()) as Desc[])[0]!;
const slowRequest = (e: EaselProcess, iterations: number): Promise<Response> =>
  fetch(`${e.inference}/predictions/slow`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: [5], iterations } }) });

async function busyPid(e: EaselProcess): Promise<number> {
  let pid = 0;
  await waitFor(async () => {
    const w = (await describeModel(e)).workers.find((x) => x.status === 'BUSY');
    pid = w?.pid ?? 0;
    return pid > 0;
  }, 10_000, 'a BUSY worker');
  return pid;
}

describe('worker crash', () => {
  it('retries the request on the restarted worker and reports health truthfully', async () => {
    easel = await startEasel(['--model-store', FIXTURES, '--models', 'slow']);
    await waitHealthy(easel);
    const pending = slowRequest(easel, 60_000); // a couple of seconds of work
    const pid = await busyPid(easel);
    process.kill(pid, 'SIGKILL');
    // While the only worker is down, /ping must not claim health.
    await waitFor(async () => (await fetch(`${easel!.inference}/ping`)).status === 503, 5_000, '/ping to report 503');
    const res = await pending;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data).toEqual([6]);
    const after = await describeModel(easel);
    expect(after.workers[0]!.pid).not.toBe(pid);
    expect(after.workers[0]!.restarts).toBe(1);
    expect((await fetch(`${easel.inference}/ping`)).status).toBe(200);
  });

  it('fails with a clear 502 when its retries die too (--max-attempts 2), and the server keeps serving', async () => {
    easel = await startEasel(['--model-store', FIXTURES, '--models', 'slow', '--max-attempts', '2']);
    await waitHealthy(easel);
    const pending = slowRequest(easel, 60_000);
    process.kill(await busyPid(easel), 'SIGKILL');
    await waitFor(async () => (await describeModel(easel!)).workers[0]!.restarts === 1, 10_000, 'restart');
    process.kill(await busyPid(easel), 'SIGKILL');
    const res = await pending;
    expect(res.status).toBe(502);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('EASEL_WORKER_DIED');
    expect(body.message).toMatch(/died .*ran 2 times, each ended by its worker dying, the most allowed \(--max-attempts 2\)/);
    await waitHealthy(easel);
    expect((await slowRequest(easel, 10)).status).toBe(200);
  });

  it('a request over its response timeout gets 504 and the worker is not restarted', async () => {
    easel = await startEasel(['--model-store', FIXTURES, '--models', 'slow'], {});
    await waitHealthy(easel);
    // slow's responseTimeoutMs is 20 s; use the management API to register a copy with 1 s.
    const reg = await fetch(`${easel.management}/models?url=slow&model_name=slow1s&response_timeout=1&synchronous=true`, { method: 'POST' });
    expect(reg.status).toBe(200);
    const res = await fetch(`${easel.inference}/predictions/slow1s`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: [1], iterations: 600_000 } }) });
    // 600k iterations take about 3 s here (150k took 0.8 s: too close to the 1 s timeout).
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ code: 'EASEL_TIMEOUT' });
    const [d] = (await (await fetch(`${easel.management}/models/slow1s`)).json()) as Desc[];
    expect(d!.workers[0]!.restarts).toBe(0);
  });

  it('drains on SIGTERM: the in-flight request finishes and the process exits 0', async () => {
    easel = await startEasel(['--model-store', FIXTURES, '--models', 'slow']);
    await waitHealthy(easel);
    const pending = slowRequest(easel, 30_000);
    await busyPid(easel);
    const e = easel;
    easel = undefined;
    const code = e.stop('SIGTERM');
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await code).toBe(0);
  });

  it('gives up on a model whose workers keep dying: FAILED with its reason, no more restarts, /ping 200 Partial Healthy for the others', async () => {
    easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one']);
    await waitHealthy(easel);
    const reg = await fetch(`${easel.management}/models?url=broken&synchronous=false`, { method: 'POST' });
    expect(reg.status).toBe(202);
    interface Failed { error?: string; workers: { status: string; restarts: number }[] }
    let d: Failed | undefined;
    await waitFor(async () => (d = ((await (await fetch(`${easel!.management}/models/broken`)).json()) as Failed[])[0])?.error !== undefined, 30_000, 'broken to be given up on');
    expect(d!.workers.map((w) => w.status)).toEqual(['FAILED']);
    expect(d!.error).toMatch(/died 5 times in a row.*missing\.onnx/);
    const restarts = d!.workers[0]!.restarts;
    await new Promise((r) => setTimeout(r, 3000));
    const later = ((await (await fetch(`${easel.management}/models/broken`)).json()) as Failed[])[0]!;
    expect(later.workers[0]!.restarts).toBe(restarts);
    const ping = await fetch(`${easel.inference}/ping`);
    expect(ping.status).toBe(200);
    const body = (await ping.json()) as { status: string; models: { name: string; failed?: string }[] };
    expect(body.status).toBe('Partial Healthy');
    expect(body.models.find((m) => m.name === 'broken')?.failed).toMatch(/no longer restarted/);
    expect(body.models.find((m) => m.name === 'add-one')?.failed).toBeUndefined();
  }, 60_000);
});
