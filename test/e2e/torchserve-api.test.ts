// The TorchServe-compatible APIs, end to end: the real server, real worker processes, real ONNX.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, startEasel, waitFor, waitHealthy, type EaselProcess } from '../helpers/easel-process.js';

let easel: EaselProcess;

beforeAll(async () => {
  easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one', '--allow-custom-handlers']);
  await waitHealthy(easel);
});
afterAll(async () => {
  await easel.stop();
});

const predict = (body: string | FormData, headers: Record<string, string> = {}, model = 'add-one'): Promise<Response> =>
  fetch(`${easel.inference}/predictions/${model}`, { method: 'POST', body, headers });

describe('inference API', () => {
  it('answers a JSON {"data": ...} prediction', async () => {
    const res = await predict(JSON.stringify({ data: [1, 2.5, -3] }), { 'content-type': 'application/json' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    const body = (await res.json()) as { outputs: { name: string; shape: number[]; data: number[] }[] };
    expect(body.outputs[0]).toMatchObject({ name: 'y', shape: [3], data: [2, 3.5, -2] });
  });

  it('answers a raw text body holding JSON, as curl -d sends it', async () => {
    const res = await predict('{"data": [41]}', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data).toEqual([42]);
  });

  it('answers named inputs and a version in the path', async () => {
    const res = await fetch(`${easel.inference}/predictions/add-one/1.0`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [0, 1] }] }) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data).toEqual([1, 2]);
  });

  it('accepts multipart data=@file and hands the file to the handler', async () => {
    const form = new FormData();
    form.append('data', new Blob([new Uint8Array([1, 2, 3])]), 'input.bin');
    const res = await predict(form);
    // The tensor handler wants numbers, not bytes: it must say so, as a 400 naming the field.
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'EASEL_INVALID_PARAMETER', field: 'data' });
  });

  it('GET /ping is Healthy and OPTIONS / describes the API', async () => {
    const ping = await fetch(`${easel.inference}/ping`);
    expect(ping.status).toBe(200);
    expect(await ping.json()).toMatchObject({ status: 'Healthy' });
    const api = (await (await fetch(`${easel.inference}/`, { method: 'OPTIONS' })).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(api.openapi).toMatch(/^3\./);
    expect(Object.keys(api.paths)).toEqual(expect.arrayContaining(['/predictions/{model_name}', '/predictions/{model_name}/{model_version}', '/ping', '/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/events', '/v1/jobs/{id}/outputs/{n}', '/openapi.json']));
    expect(await (await fetch(`${easel.inference}/openapi.json`)).json()).toEqual(api);
    const management = (await (await fetch(`${easel.management}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(management.paths)).toEqual(expect.arrayContaining(['/models', '/models/{model}', '/models/{model}/{version}', '/models/{model}/{version}/set-default']));
  });
});

describe('management API', () => {
  it('registers, lists, describes, scales, versions and unregisters a model', async () => {
    const m = easel.management;
    // register a second copy of add-one under another name, synchronously
    let res = await fetch(`${m}/models?url=add-one&model_name=adder&initial_workers=1&synchronous=true`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toContain('"adder"');
    expect((await predict(JSON.stringify({ data: [1] }), { 'content-type': 'application/json' }, 'adder')).status).toBe(200);

    res = await fetch(`${m}/models?url=add-one&model_name=adder`, { method: 'POST' });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ code: 'EASEL_MODEL_EXISTS' });

    // pagination
    const page1 = (await (await fetch(`${m}/models?limit=1`)).json()) as { models: { modelName: string }[]; nextPageToken?: string };
    expect(page1.models).toHaveLength(1);
    expect(page1.nextPageToken).toBeDefined();
    const page2 = (await (await fetch(`${m}/models?limit=1&next_page_token=${page1.nextPageToken}`)).json()) as { models: { modelName: string }[] };
    expect(page2.models[0]!.modelName).not.toBe(page1.models[0]!.modelName);

    // describe with workers
    const [desc] = (await (await fetch(`${m}/models/adder`)).json()) as { workers: { pid: number; status: string; memoryUsage: number }[]; jobQueueStatus: { pendingRequests: number } }[];
    expect(desc!.workers).toHaveLength(1);
    expect(desc!.workers[0]).toMatchObject({ status: 'READY' });
    expect(desc!.workers[0]!.pid).toBeGreaterThan(0);
    expect(desc!.workers[0]!.memoryUsage).toBeGreaterThan(1_000_000);
    expect(desc!.jobQueueStatus.pendingRequests).toBe(0);

    // scale to two workers, synchronously
    res = await fetch(`${m}/models/adder?min_worker=2&max_worker=2&synchronous=true`, { method: 'PUT' });
    expect(res.status).toBe(200);
    const [scaled] = (await (await fetch(`${m}/models/adder/1.0`)).json()) as { workers: { status: string }[] }[];
    expect(scaled!.workers.filter((w) => w.status === 'READY')).toHaveLength(2);

    res = await fetch(`${m}/models/adder`, { method: 'DELETE' });
    expect(res.status).toBe(200);
  }, 60_000);

  it('sets the default version and deletes versions', async () => {
    const m = easel.management;
    const reg = await fetch(`${m}/models?url=progress&synchronous=true`, { method: 'POST' });
    expect(reg.status).toBe(200);
    // progress fixture reports progress; it answers {"value": v + steps}
    const out = await predict(JSON.stringify({ steps: 3, value: 1 }), { 'content-type': 'application/json' }, 'progress');
    expect(out.status).toBe(200);
    expect(await out.json()).toEqual({ value: 4 });

    let res = await fetch(`${m}/models/progress/9.9/set-default`, { method: 'PUT' });
    expect(res.status).toBe(404);
    res = await fetch(`${m}/models/progress/1.0/set-default`, { method: 'PUT' });
    expect(res.status).toBe(200);

    res = await fetch(`${m}/models/progress/1.0`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect((await fetch(`${m}/models/progress`)).status).toBe(404);
    expect((await predict('{"steps":1}', { 'content-type': 'application/json' }, 'progress')).status).toBe(404);
  });
});

describe('metrics API', () => {
  it('shows the request just made, stage timings, queue length and live workers', async () => {
    await predict(JSON.stringify({ data: [7] }), { 'content-type': 'application/json' });
    let text = '';
    await waitFor(async () => {
      text = await (await fetch(`${easel.metrics}/metrics`)).text();
      return /easel_requests_total\{model="add-one",status="200"\} \d+/.test(text);
    });
    expect(text).toMatch(/easel_request_duration_seconds_count\{model="add-one"\} [1-9]/);
    expect(text).toMatch(/easel_handler_stage_seconds_count\{model="add-one",stage="inference"\} [1-9]/);
    expect(text).toMatch(/easel_queue_time_seconds_count\{model="add-one"\} [1-9]/);
    expect(text).toMatch(/easel_workers_live\{model="add-one"\} 1/);
    expect(text).toMatch(/easel_queue_length\{model="add-one"\} 0/);
    expect(text).toMatch(/easel_process_resident_memory_bytes \d+/);
  });
});

describe('management API authentication', () => {
  it('requires the bearer token when one is configured', async () => {
    const locked = await startEasel(['--model-store', FIXTURES, '--models', 'add-one'], { EASEL_MANAGEMENT_TOKEN: 'let-me-in' });
    try {
      const none = await fetch(`${locked.management}/models`);
      expect(none.status).toBe(401);
      expect(await none.json()).toMatchObject({ code: 'EASEL_UNAUTHORIZED' });
      expect((await fetch(`${locked.management}/models`, { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(401);
      const ok = await fetch(`${locked.management}/models`, { headers: { authorization: 'Bearer let-me-in' } });
      expect(ok.status).toBe(200);
      // RFC 7235: the scheme is case-insensitive.
      for (const scheme of ['bearer', 'BEARER']) expect((await fetch(`${locked.management}/models`, { headers: { authorization: `${scheme} let-me-in` } })).status).toBe(200);
      expect((await fetch(`${locked.management}/models`, { headers: { authorization: 'Basic let-me-in' } })).status).toBe(401);
      // the inference API stays open
      expect((await fetch(`${locked.inference}/ping`)).status).not.toBe(401);
    } finally {
      await locked.stop();
    }
  });

  it('refuses to start with management beyond loopback and no token', async () => {
    await expect(startEasel(['--management-host', '0.0.0.0'])).rejects.toThrow(/managementToken/);
  });
});

describe('registering models whose workers cannot start', () => {
  it.each([
    ['broken', /missing\.onnx not found/],
    ['needs-cuda', /onnxruntime-node-install=cuda12/],
  ])('%s: a synchronous registration answers 400 with the reason and leaves nothing registered', async (name, reason) => {
    const res = await fetch(`${easel.management}/models?url=${name}&synchronous=true`, { method: 'POST' });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('EASEL_MODEL_INVALID');
    expect(body.message).toMatch(reason);
    expect((await fetch(`${easel.management}/models/${name}`)).status).toBe(404);
    expect((await fetch(`${easel.inference}/ping`)).status).toBe(200);
  });
});
