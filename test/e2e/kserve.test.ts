// KServe's Open Inference Protocol v2 on the inference port, driven with the protocol's own
// JSON shapes (the examples of its REST specification, on the add-one tensor model): health,
// metadata, readiness, inference with requested outputs and an id, and its errors.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, startEasel, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const json = { 'content-type': 'application/json' };

describe('Open Inference Protocol v2', () => {
  let easel: EaselProcess;
  beforeAll(async () => {
    easel = await startEasel(['--models', `add-one=${path.join(FIXTURES, 'add-one')},tiny-sd=${path.join(ROOT, 'models', 'tiny-sd')}`]);
    await waitModelLive(easel, 'add-one');
    await waitModelLive(easel, 'tiny-sd');
  }, 90_000);
  afterAll(() => easel?.stop());

  const get = async (p: string) => {
    const res = await fetch(`${easel.inference}${p}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const infer = async (p: string, body: unknown) => {
    const res = await fetch(`${easel.inference}${p}`, { method: 'POST', headers: json, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('answers health, server metadata and model readiness', async () => {
    expect(await get('/v2/health/live')).toEqual({ status: 200, body: { live: true } });
    expect(await get('/v2/health/ready')).toEqual({ status: 200, body: { ready: true } });
    expect(await get('/v2')).toEqual({ status: 200, body: { name: 'easel', version: expect.any(String), extensions: [] } });
    expect(await get('/v2/models/add-one/ready')).toEqual({ status: 200, body: { name: 'add-one', ready: true } });
    expect(await get('/v2/models/add-one/versions/1.0/ready')).toEqual({ status: 200, body: { name: 'add-one', ready: true } });
  });

  it("gives a model's metadata: its tensors with the protocol's datatypes, -1 for a dynamic axis", async () => {
    expect(await get('/v2/models/add-one')).toEqual({
      status: 200,
      body: { name: 'add-one', versions: ['1.0'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }] },
    });
    expect((await get('/v2/models/add-one/versions/1.0')).body.name).toBe('add-one');
  });

  it('infers: the request id comes back, the requested outputs with shape and datatype', async () => {
    const res = await infer('/v2/models/add-one/infer', { id: '42', inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [{ name: 'y' }] });
    expect(res).toEqual({ status: 200, body: { model_name: 'add-one', model_version: '1.0', id: '42', outputs: [{ name: 'y', datatype: 'FP32', shape: [4], data: [2, 3, 4, 5] }] } });
    // Nested (row-major) data and no outputs list: every output; the version path too.
    const nested = await infer('/v2/models/add-one/versions/1.0/infer', { inputs: [{ name: 'x', shape: [3], datatype: 'FP32', data: [0.5, -1, 10] }] });
    expect(nested.body.outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [3], data: [1.5, 0, 11] }]);
  });

  it("answers the protocol's errors with its error message, Easel's code and the field", async () => {
    const cases: [unknown, number, string, RegExp][] = [
      [{ inputs: [{ name: 'x', shape: [4], datatype: 'INT64', data: [1, 2, 3, 4] }] }, 400, 'inputs[0].datatype', /input "x" is FP32, got INT64/],
      [{ inputs: [{ name: 'nope', shape: [1], datatype: 'FP32', data: [1] }] }, 400, 'inputs[0].name', /unknown input "nope"; the model's inputs are x/],
      [{ inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }], outputs: [{ name: 'z' }] }, 400, 'outputs', /unknown output "z"/],
      [{ inputs: [{ name: 'x', shape: [4], datatype: 'BYTES', data: ['a'] }] }, 400, 'inputs.0.datatype', /datatype must be one of BOOL, .*FP32/],
      [{ inputs: [{ name: 'x', shape: [5], datatype: 'FP32', data: [1, 2, 3, 4] }] }, 400, 'inputs[0].shape', /holds 5 values but 4 were sent/],
      [{}, 400, 'inputs', /.+/],
    ];
    for (const [body, status, field, message] of cases) {
      const res = await infer('/v2/models/add-one/infer', body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.field, JSON.stringify(res.body)).toBe(field);
      expect(res.body.error).toMatch(message);
      expect(res.body.error).toBe(res.body.message);
      expect(String(res.body.code)).toMatch(/^EASEL_/);
    }
    const unknown = await infer('/v2/models/nope/infer', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] });
    expect([unknown.status, unknown.body.code]).toEqual([404, 'EASEL_MODEL_NOT_FOUND']);
    const image = await infer('/v2/models/tiny-sd/infer', { inputs: [{ name: 'prompt', shape: [1], datatype: 'FP32', data: [1] }] });
    expect([image.status, image.body.field]).toEqual([400, 'model']);
    expect(image.body.error).toMatch(/tiny-sd is a text-to-image model; the v2 protocol serves tensor models/);
  });

  it('counts its inferences in easel_requests_total by model and status', async () => {
    const text = await (await fetch(`${easel.metrics}/metrics`)).text();
    const count = (status: string): number => Number(new RegExp(`^easel_requests_total\\{model="add-one",status="${status}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    expect(count('200')).toBeGreaterThanOrEqual(2);
    // The four refused after the model was found served (datatype, input, output, shape) carry its name;
    // a body the route's schema refuses (BYTES, no inputs) and an unknown model carry none.
    expect(count('400')).toBe(4);
    expect(text).toMatch(/^easel_requests_total\{model="_unknown",status="400"\} [2-9]/m);
    expect(text).toMatch(/^easel_requests_total\{model="_unknown",status="404"\} [1-9]/m);
  });
});
