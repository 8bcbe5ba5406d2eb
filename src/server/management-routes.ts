// TorchServe's management API: register, scale, describe, unregister, set-default.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { EaselError, invalidField } from '../errors/easel-error.js';
import type { ModelControl } from '../models/model-control.js';
import type { ModelStore } from '../models/model-store.js';
import { methodNotAllowed, sendError } from './errors.js';

export interface ManagementRouteOptions {
  control: ModelControl;
  store: ModelStore;
  token?: string | undefined;
}

type Query = Record<string, string | undefined>;

export async function managementRoutes(app: FastifyInstance, o: ManagementRouteOptions): Promise<void> {
  if (o.token) {
    const expected = Buffer.from(`Bearer ${o.token}`);
    app.addHook('onRequest', async (req, reply) => {
      const got = Buffer.from(req.headers.authorization ?? '');
      if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
        void reply.header('WWW-Authenticate', 'Bearer');
        return sendError(reply, new EaselError('EASEL_UNAUTHORIZED', 'the management API requires "Authorization: Bearer <token>"'));
      }
    });
  }

  app.post<{ Querystring: Query }>('/models', async (req, reply) => {
    const q = req.query;
    const url = q.url;
    if (!url) throw invalidField('url', 'url is required: a model directory or archive in the model store, or an allow-listed http(s) URL');
    const overrides: Record<string, unknown> = {};
    if (q.model_name !== undefined) overrides.name = q.model_name;
    const batchSize = intParam(q, 'batch_size', 1, 1024);
    const maxBatchDelay = intParam(q, 'max_batch_delay', 0, 60_000);
    if (batchSize !== undefined || maxBatchDelay !== undefined) {
      overrides.batching = { batchSize: batchSize ?? 1, maxBatchDelayMs: maxBatchDelay ?? 100, mode: (batchSize ?? 1) > 1 ? 'request' : 'none' };
    }
    const responseTimeout = intParam(q, 'response_timeout', 1, 86_400);
    if (responseTimeout !== undefined) overrides.responseTimeoutMs = responseTimeout * 1000;
    const initialWorkers = intParam(q, 'initial_workers', 0, 64);
    const synchronous = boolParam(q, 'synchronous') ?? false;
    const entry = await o.store.resolve(url, overrides);
    const d = await o.control.register(entry, { url, initialWorkers, synchronous });
    const workers = initialWorkers ?? d.minWorkers;
    return reply.code(synchronous ? 200 : 202).send({
      status: synchronous
        ? `Model "${d.modelName}" Version: ${d.modelVersion} registered with ${workers} initial workers`
        : `Model "${d.modelName}" Version: ${d.modelVersion} registered with ${workers} initial workers. Processing worker updates...`,
    });
  });

  app.get<{ Querystring: Query }>('/models', async (req) => {
    const limit = intParam(req.query, 'limit', 1, 1000) ?? 100;
    const token = req.query.next_page_token;
    const start = token === undefined ? 0 : Number(token);
    if (!Number.isInteger(start) || start < 0) throw invalidField('next_page_token', `next_page_token must be a token from a previous page, got "${token}"`);
    const all = o.control.list();
    const page = all.slice(start, start + limit);
    return { models: page, ...(start + limit < all.length ? { nextPageToken: String(start + limit) } : {}) };
  });
  methodNotAllowed(app, '/models', ['GET', 'POST']);

  const describe = async (req: { params: { model: string; version?: string } }): Promise<unknown> => o.control.describe(req.params.model, req.params.version);
  app.get<{ Params: { model: string } }>('/models/:model', describe);
  app.get<{ Params: { model: string; version: string } }>('/models/:model/:version', describe);

  const scale = async (req: { params: { model: string; version?: string }; query: Query }, reply: FastifyReply): Promise<FastifyReply> => {
    const min = intParam(req.query, 'min_worker', 0, 64);
    const max = intParam(req.query, 'max_worker', 1, 64);
    const synchronous = boolParam(req.query, 'synchronous') ?? false;
    if (min === undefined && max === undefined) throw invalidField('min_worker', 'give min_worker and/or max_worker');
    await o.control.scale(req.params.model, req.params.version, min, max, synchronous);
    const spec = o.control.spec(req.params.model, req.params.version);
    return reply.code(synchronous ? 200 : 202).send({ status: synchronous ? `Workers scaled to ${spec.minWorkers} for model: ${spec.name}` : 'Processing worker updates...' });
  };
  app.put<{ Params: { model: string }; Querystring: Query }>('/models/:model', scale);
  app.put<{ Params: { model: string; version: string }; Querystring: Query }>('/models/:model/:version', scale);

  const unregister = async (req: { params: { model: string; version?: string } }): Promise<unknown> => {
    await o.control.unregister(req.params.model, req.params.version);
    return { status: `Model "${req.params.model}" unregistered` };
  };
  app.delete<{ Params: { model: string } }>('/models/:model', unregister);
  app.delete<{ Params: { model: string; version: string } }>('/models/:model/:version', unregister);
  methodNotAllowed(app, '/models/:model', ['GET', 'PUT', 'DELETE']);
  methodNotAllowed(app, '/models/:model/:version', ['GET', 'PUT', 'DELETE']);

  app.put<{ Params: { model: string; version: string } }>('/models/:model/:version/set-default', async (req) => {
    o.control.setDefault(req.params.model, req.params.version);
    return { status: `Default version successfully updated for model "${req.params.model}" to "${req.params.version}"` };
  });
  methodNotAllowed(app, '/models/:model/:version/set-default', ['PUT']);
}

function intParam(q: Query, name: string, min: number, max: number): number | undefined {
  const raw = q[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw invalidField(name, `${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

function boolParam(q: Query, name: string): boolean | undefined {
  const raw = q[name];
  if (raw === undefined || raw === '') return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw invalidField(name, `${name} must be true or false, got "${raw}"`);
}
