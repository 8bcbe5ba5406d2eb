// TorchServe's management API: register, scale, describe, unregister, set-default.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { EaselError, invalidField, isEaselError } from '../errors/easel-error.js';
import type { ModelControl, ModelDescription } from '../models/model-control.js';
import type { ModelEntry } from '../models/model-spec.js';
import type { ModelStore } from '../models/model-store.js';
import type { AuthThrottle } from './api-keys.js';
import { methodNotAllowed, sendError } from './errors.js';
import { boolQuery, intQuery, pathName, strictObject } from './schemas.js';

export interface ManagementRouteOptions {
  control: ModelControl;
  store: ModelStore;
  token?: string | undefined;
  /** Wrong tokens are throttled per address. */
  throttle: AuthThrottle;
}

const registerQuery = strictObject({
  url: z.string().min(1).max(2048).describe('a model directory or archive in the model store, or an allow-listed http(s) URL'),
  model_name: pathName.optional(),
  batch_size: intQuery('batch_size', 1, 1024).optional(),
  max_batch_delay: intQuery('max_batch_delay', 0, 60_000).optional(),
  response_timeout: intQuery('response_timeout', 1, 86_400).optional(),
  initial_workers: intQuery('initial_workers', 0, 64).optional(),
  synchronous: boolQuery('synchronous').optional(),
  // TorchServe clients send these; Easel reads the handler and runtime from the model itself.
  handler: z.string().max(256).optional(),
  runtime: z.string().max(64).optional(),
});
const listQuery = strictObject({ limit: intQuery('limit', 1, 1000).optional(), next_page_token: intQuery('next_page_token', 0, 1_000_000).optional() });
const scaleQuery = strictObject({ min_worker: intQuery('min_worker', 0, 64).optional(), max_worker: intQuery('max_worker', 1, 64).optional(), synchronous: boolQuery('synchronous').optional() });
const modelParams = strictObject({ model: pathName });
const versionParams = strictObject({ model: pathName, version: pathName });

/** RFC 7235: the auth scheme is case-insensitive; the token is compared in constant time. */
function bearerMatches(header: string | undefined, token: Buffer): boolean {
  const m = /^bearer +(.+)$/i.exec(header ?? '');
  const got = Buffer.from(m?.[1]?.trim() ?? '');
  return got.length === token.length && timingSafeEqual(got, token);
}

export async function managementRoutes(app: FastifyInstance, o: ManagementRouteOptions): Promise<void> {
  if (o.token) {
    const expected = Buffer.from(o.token);
    app.addHook('onRequest', async (req, reply) => {
      o.throttle.check(req.ip);
      if (!bearerMatches(req.headers.authorization, expected)) {
        o.throttle.failed(req.ip);
        void reply.header('WWW-Authenticate', 'Bearer');
        return sendError(reply, new EaselError('EASEL_UNAUTHORIZED', 'the management API requires "Authorization: Bearer <token>"'));
      }
    });
  }

  app.post('/models', { schema: { summary: 'Register a model (TorchServe).', querystring: registerQuery } }, async (req, reply) => {
    const q = req.query as z.infer<typeof registerQuery>;
    const url = q.url;
    const overrides: Record<string, unknown> = {};
    if (q.model_name !== undefined) overrides.name = q.model_name;
    const batchSize = q.batch_size;
    const maxBatchDelay = q.max_batch_delay;
    if (batchSize !== undefined || maxBatchDelay !== undefined) {
      overrides.batching = { batchSize: batchSize ?? 1, maxBatchDelayMs: maxBatchDelay ?? 100, mode: (batchSize ?? 1) > 1 ? 'request' : 'none' };
    }
    if (q.response_timeout !== undefined) overrides.responseTimeoutMs = q.response_timeout * 1000;
    const initialWorkers = q.initial_workers;
    const synchronous = q.synchronous ?? false;
    let entry: ModelEntry | undefined;
    let d: ModelDescription;
    try {
      entry = await o.store.resolve(url, overrides);
      d = await o.control.register(entry, { url, initialWorkers, synchronous });
    } catch (err) {
      // What a failed registration extracted goes (not a registered model's own folder), and its
      // error names paths in the model store, never the server's.
      if (entry && !(isEaselError(err) && err.code === 'EASEL_MODEL_EXISTS')) await o.store.discard(entry);
      throw isEaselError(err) ? new EaselError(err.code, o.store.relativize(err.message), { field: err.field, cause: err }) : err;
    }
    const workers = initialWorkers ?? d.minWorkers;
    return reply.code(synchronous ? 200 : 202).send({
      status: synchronous
        ? `Model "${d.modelName}" Version: ${d.modelVersion} registered with ${workers} initial workers`
        : `Model "${d.modelName}" Version: ${d.modelVersion} registered with ${workers} initial workers. Processing worker updates...`,
    });
  });

  app.get('/models', { schema: { summary: 'List models (TorchServe).', querystring: listQuery } }, async (req) => {
    const q = req.query as z.infer<typeof listQuery>;
    const limit = q.limit ?? 100;
    const start = q.next_page_token ?? 0;
    const all = o.control.list();
    const page = all.slice(start, start + limit);
    return { models: page, ...(start + limit < all.length ? { nextPageToken: String(start + limit) } : {}) };
  });
  methodNotAllowed(app, '/models', ['GET', 'POST']);

  const describe = async (req: { params: { model: string; version?: string } }): Promise<unknown> => o.control.describe(req.params.model, req.params.version);
  app.get<{ Params: { model: string } }>('/models/:model', { schema: { summary: "Describe a model's default version and its workers.", params: modelParams } }, describe);
  app.get<{ Params: { model: string; version: string } }>('/models/:model/:version', { schema: { summary: 'Describe a version (or all).', params: versionParams } }, describe);

  const scale = async (req: { params: { model: string; version?: string }; query: unknown }, reply: FastifyReply): Promise<FastifyReply> => {
    const q = req.query as z.infer<typeof scaleQuery>;
    const min = q.min_worker;
    const max = q.max_worker;
    const synchronous = q.synchronous ?? false;
    if (min === undefined && max === undefined) throw invalidField('min_worker', 'give min_worker and/or max_worker');
    await o.control.scale(req.params.model, req.params.version, min, max, synchronous);
    const spec = o.control.spec(req.params.model, req.params.version);
    return reply.code(synchronous ? 200 : 202).send({ status: synchronous ? `Workers scaled to ${spec.minWorkers} for model: ${spec.name}` : 'Processing worker updates...' });
  };
  app.put<{ Params: { model: string } }>('/models/:model', { schema: { summary: 'Scale workers (TorchServe).', params: modelParams, querystring: scaleQuery } }, scale);
  app.put<{ Params: { model: string; version: string } }>('/models/:model/:version', { schema: { summary: 'Scale a version\'s workers.', params: versionParams, querystring: scaleQuery } }, scale);

  const unregister = async (req: { params: { model: string; version?: string } }): Promise<unknown> => {
    await o.control.unregister(req.params.model, req.params.version);
    return { status: `Model "${req.params.model}" unregistered` };
  };
  app.delete<{ Params: { model: string } }>('/models/:model', { schema: { summary: 'Unregister a model.', params: modelParams } }, unregister);
  app.delete<{ Params: { model: string; version: string } }>('/models/:model/:version', { schema: { summary: 'Unregister a version.', params: versionParams } }, unregister);
  methodNotAllowed(app, '/models/:model', ['GET', 'PUT', 'DELETE']);
  methodNotAllowed(app, '/models/:model/:version', ['GET', 'PUT', 'DELETE']);

  app.put<{ Params: { model: string; version: string } }>('/models/:model/:version/set-default', { schema: { summary: 'Make a version the default.', params: versionParams } }, async (req) => {
    o.control.setDefault(req.params.model, req.params.version);
    return { status: `Default version successfully updated for model "${req.params.model}" to "${req.params.version}"` };
  });
  methodNotAllowed(app, '/models/:model/:version/set-default', ['PUT']);
}
