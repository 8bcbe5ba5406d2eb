// Table-driven: every malformed request gets a 4xx with a JSON error naming the problem, never a
// 5xx, and the server is healthy afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, startEasel, waitHealthy, type EaselProcess } from '../helpers/easel-process.js';

let easel: EaselProcess;
beforeAll(async () => {
  easel = await startEasel(['--model-store', FIXTURES, '--models', 'add-one', '--max-body-bytes', String(64 * 1024)]);
  await waitHealthy(easel);
});
afterAll(async () => {
  await easel.stop();
});

interface Case {
  name: string;
  api?: 'inference' | 'management' | 'metrics';
  method?: string;
  path: string;
  body?: string | Uint8Array;
  type?: string;
  status: number;
  code: string;
  /** What the message (or field) must mention. */
  mentions?: RegExp;
}

const JSON_T = 'application/json';
const big = 'x'.repeat(70 * 1024);
const cases: Case[] = [
  // bad JSON and bodies
  { name: 'truncated JSON', path: '/predictions/add-one', body: '{"data": [1, 2', type: JSON_T, status: 400, code: 'EASEL_BAD_REQUEST', mentions: /JSON/i },
  { name: 'JSON with trailing garbage', path: '/predictions/add-one', body: '{"data": [1]} xyz', type: JSON_T, status: 400, code: 'EASEL_BAD_REQUEST', mentions: /JSON/i },
  { name: 'empty JSON body', path: '/predictions/add-one', body: '', type: JSON_T, status: 400, code: 'EASEL_BAD_REQUEST' },
  { name: 'no body at all', path: '/predictions/add-one', status: 400, code: 'EASEL_BAD_REQUEST', mentions: /body/ },
  { name: 'single quotes JSON', path: '/predictions/add-one', body: "{'data': [1]}", type: JSON_T, status: 400, code: 'EASEL_BAD_REQUEST' },
  { name: 'body over the limit (JSON)', path: '/predictions/add-one', body: JSON.stringify({ data: big }), type: JSON_T, status: 413, code: 'EASEL_BODY_TOO_LARGE' },
  { name: 'body over the limit (text)', path: '/predictions/add-one', body: big, type: 'text/plain', status: 413, code: 'EASEL_BODY_TOO_LARGE' },
  { name: 'body over the limit (binary)', path: '/predictions/add-one', body: new Uint8Array(70 * 1024), type: 'application/octet-stream', status: 413, code: 'EASEL_BODY_TOO_LARGE' },
  // wrong types and missing fields
  { name: 'JSON without data or inputs', path: '/predictions/add-one', body: '{"prompt": "hi"}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /data/ },
  { name: 'data is a string', path: '/predictions/add-one', body: '{"data": "one"}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /data/ },
  { name: 'data is null', path: '/predictions/add-one', body: '{"data": null}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /data/ },
  { name: 'data is an object', path: '/predictions/add-one', body: '{"data": {"a": 1}}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /data/ },
  { name: 'data holds a string', path: '/predictions/add-one', body: '{"data": [1, "2"]}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /data/ },
  { name: 'data is ragged', path: '/predictions/add-one', body: '{"data": [[1, 2], [3]]}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /ragged/ },
  { name: 'data has the wrong rank', path: '/predictions/add-one', body: '{"data": [[1, 2], [3, 4]]}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /rank/ },
  { name: 'a scalar where a vector is needed', path: '/predictions/add-one', body: '{"data": 5}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /rank/ },
  { name: 'raw text that is not numbers', path: '/predictions/add-one', body: 'hello world', type: 'text/plain', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /data/ },
  { name: 'a JSON array body', path: '/predictions/add-one', body: '[1, 2, 3]', type: JSON_T, status: 200, code: '' },
  { name: 'binary body', path: '/predictions/add-one', body: new Uint8Array([0, 1, 2]), type: 'application/octet-stream', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /data/ },
  { name: 'inputs is a number', path: '/predictions/add-one', body: '{"inputs": 3}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /inputs/ },
  { name: 'inputs names an unknown tensor', path: '/predictions/add-one', body: '{"inputs": [{"name": "z", "data": [1]}]}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /unknown input "z"/ },
  { name: 'inputs entry is not an object', path: '/predictions/add-one', body: '{"inputs": [7]}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /inputs\[0\]/ },
  { name: 'shape does not match data', path: '/predictions/add-one', body: '{"inputs": [{"name": "x", "shape": [3], "data": [1]}]}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /shape/ },
  { name: 'shape has negatives', path: '/predictions/add-one', body: '{"inputs": [{"name": "x", "shape": [-1], "data": [1]}]}', type: JSON_T, status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /shape/ },
  { name: 'multipart with no parts', path: '/predictions/add-one', body: '--b--\r\n', type: 'multipart/form-data; boundary=b', status: 400, code: 'EASEL_BAD_REQUEST' },
  // unknown models, versions and routes
  { name: 'unknown model', path: '/predictions/nope', body: '{"data": [1]}', type: JSON_T, status: 404, code: 'EASEL_MODEL_NOT_FOUND', mentions: /nope/ },
  { name: 'unknown version', path: '/predictions/add-one/9.9', body: '{"data": [1]}', type: JSON_T, status: 404, code: 'EASEL_MODEL_NOT_FOUND', mentions: /9\.9/ },
  { name: 'unknown route', path: '/predict/add-one', body: '{"data": [1]}', type: JSON_T, status: 404, code: 'EASEL_NOT_FOUND' },
  { name: 'unknown route, a body that is not JSON', path: '/predict/add-one', body: '{"data": [1', type: JSON_T, status: 404, code: 'EASEL_NOT_FOUND' },
  { name: 'unknown route, an empty JSON body', path: '/', body: '', type: JSON_T, status: 404, code: 'EASEL_NOT_FOUND' },
  { name: 'path traversal in model name', path: '/predictions/..%2F..%2Fetc', body: '{"data": [1]}', type: JSON_T, status: 404, code: 'EASEL_MODEL_NOT_FOUND' },
  // wrong methods
  { name: 'GET a prediction', method: 'GET', path: '/predictions/add-one', status: 405, code: 'EASEL_METHOD_NOT_ALLOWED', mentions: /POST/ },
  { name: 'PUT a prediction', method: 'PUT', path: '/predictions/add-one', body: '{}', type: JSON_T, status: 405, code: 'EASEL_METHOD_NOT_ALLOWED' },
  { name: 'DELETE a prediction', method: 'DELETE', path: '/predictions/add-one/1.0', status: 405, code: 'EASEL_METHOD_NOT_ALLOWED' },
  { name: 'POST /ping', method: 'POST', path: '/ping', body: '{}', type: JSON_T, status: 405, code: 'EASEL_METHOD_NOT_ALLOWED', mentions: /GET/ },
  { name: 'POST /metrics', api: 'metrics', method: 'POST', path: '/metrics', body: '{}', type: JSON_T, status: 405, code: 'EASEL_METHOD_NOT_ALLOWED' },
  { name: 'PATCH /models', api: 'management', method: 'PATCH', path: '/models', body: '{}', type: JSON_T, status: 405, code: 'EASEL_METHOD_NOT_ALLOWED' },
  { name: 'POST to a model description', api: 'management', method: 'POST', path: '/models/add-one', body: '{}', type: JSON_T, status: 405, code: 'EASEL_METHOD_NOT_ALLOWED' },
  // management parameters
  { name: 'register without url', api: 'management', method: 'POST', path: '/models', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /url/ },
  { name: 'register a missing model', api: 'management', method: 'POST', path: '/models?url=missing-model', status: 404, code: 'EASEL_MODEL_NOT_FOUND', mentions: /missing-model/ },
  { name: 'register an absolute path', api: 'management', method: 'POST', path: '/models?url=%2Fetc', status: 403, code: 'EASEL_FORBIDDEN', mentions: /relative/ },
  { name: 'register outside the store', api: 'management', method: 'POST', path: '/models?url=..%2F..', status: 403, code: 'EASEL_FORBIDDEN', mentions: /outside/ },
  { name: 'register a URL not allowed', api: 'management', method: 'POST', path: '/models?url=https%3A%2F%2F127.0.0.1%2Fm.easel', status: 403, code: 'EASEL_FORBIDDEN', mentions: /allow-list/ },
  { name: 'register with a file:// URL', api: 'management', method: 'POST', path: '/models?url=file%3A%2F%2F%2Fetc%2Fpasswd', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /scheme/ },
  { name: 'register an existing model', api: 'management', method: 'POST', path: '/models?url=add-one', status: 409, code: 'EASEL_MODEL_EXISTS' },
  { name: 'initial_workers not a number', api: 'management', method: 'POST', path: '/models?url=add-one&initial_workers=many', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /initial_workers/ },
  { name: 'batch_size out of range', api: 'management', method: 'POST', path: '/models?url=add-one&model_name=x&batch_size=0', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /batch_size/ },
  { name: 'synchronous not a boolean', api: 'management', method: 'POST', path: '/models?url=add-one&model_name=x&synchronous=maybe', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /synchronous/ },
  { name: 'scale with nothing', api: 'management', method: 'PUT', path: '/models/add-one', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /min_worker/ },
  { name: 'scale with a negative min', api: 'management', method: 'PUT', path: '/models/add-one?min_worker=-1', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /min_worker/ },
  { name: 'scale max below min', api: 'management', method: 'PUT', path: '/models/add-one?min_worker=2&max_worker=1', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /max_worker/ },
  { name: 'scale an unknown model', api: 'management', method: 'PUT', path: '/models/nope?min_worker=1', status: 404, code: 'EASEL_MODEL_NOT_FOUND' },
  { name: 'describe an unknown version', api: 'management', method: 'GET', path: '/models/add-one/3.0', status: 404, code: 'EASEL_MODEL_NOT_FOUND' },
  { name: 'delete an unknown model', api: 'management', method: 'DELETE', path: '/models/nope', status: 404, code: 'EASEL_MODEL_NOT_FOUND' },
  { name: 'list with a bad limit', api: 'management', method: 'GET', path: '/models?limit=0', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /limit/ },
  { name: 'list with a bad page token', api: 'management', method: 'GET', path: '/models?next_page_token=abc', status: 400, code: 'EASEL_INVALID_PARAMETER', mentions: /next_page_token/ },
  { name: 'set-default to an unknown version', api: 'management', method: 'PUT', path: '/models/add-one/7.0/set-default', status: 404, code: 'EASEL_MODEL_NOT_FOUND' },
];

describe('malformed requests', () => {
  it(`has at least 40 cases (${cases.length})`, () => {
    expect(cases.filter((c) => c.status >= 400).length).toBeGreaterThanOrEqual(40);
  });

  it.each(cases)('$name → $status $code', async (c) => {
    const base = c.api === 'management' ? easel.management : c.api === 'metrics' ? easel.metrics : easel.inference;
    const res = await fetch(base + c.path, {
      method: c.method ?? 'POST',
      ...(c.body !== undefined ? { body: c.body } : {}),
      headers: c.type ? { 'content-type': c.type } : {},
    });
    expect(res.status, await res.clone().text()).toBe(c.status);
    if (c.status < 400) return;
    expect(res.headers.get('content-type')).toContain('application/json');
    const body = (await res.json()) as { code: string; message: string; field?: string };
    expect(body.code).toBe(c.code);
    expect(body.message.length).toBeGreaterThan(5);
    if (c.mentions) expect(`${body.message} ${body.field ?? ''}`).toMatch(c.mentions);
  });

  it('leaves the server healthy and serving', async () => {
    expect((await fetch(`${easel.inference}/ping`)).status).toBe(200);
    const res = await fetch(`${easel.inference}/predictions/add-one`, { method: 'POST', headers: { 'content-type': JSON_T }, body: '{"data": [1]}' });
    expect(res.status).toBe(200);
  });
});
