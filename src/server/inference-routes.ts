// TorchServe's inference API: POST /predictions/{model}[/{version}], GET /ping, OPTIONS /.
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EaselError } from '../errors/easel-error.js';
import type { ModelControl } from '../models/model-control.js';
import type { Metrics } from '../metrics/metrics.js';
import { methodNotAllowed } from './errors.js';
import { submitJob, type JobRoutesOptions } from './job-routes.js';
import { openApiDocument } from './openapi.js';

export interface InferenceRouteOptions {
  control: ModelControl;
  metrics: Metrics;
  maxBodyBytes: number;
  isDraining(): boolean;
  /** With `Prefer: respond-async` a prediction becomes a job (as in Cog). */
  jobs?: JobRoutesOptions | undefined;
}

export async function inferenceRoutes(app: FastifyInstance, o: InferenceRouteOptions): Promise<void> {
  await app.register(multipart, { limits: { fileSize: o.maxBodyBytes, files: 16, fields: 256, parts: 272 } });
  // TorchServe clients send raw bodies too: `curl -d @file` (form-encoded) or any binary type.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const predict = async (req: FastifyRequest<{ Params: { model: string; version?: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const t0 = process.hrtime.bigint();
    const { model, version } = req.params;
    let status = 500;
    let known = false;
    try {
      if (o.isDraining()) throw new EaselError('EASEL_SHUTTING_DOWN', 'the server is shutting down and accepts no new requests', 503, { retryAfterSeconds: 5 });
      // As a job, the model may be served by another node (distributed mode): submitJob checks it.
      const asJob = o.jobs !== undefined && /\brespond-async\b/.test(String(req.headers.prefer ?? ''));
      if (!asJob) {
        o.control.spec(model, version); // 404 before reading a large body's meaning
        known = true;
      }
      const input = req.isMultipart() ? await multipartInput(req) : bodyInput(req.body);
      if (o.jobs && asJob) {
        const key = req.headers['idempotency-key'];
        await submitJob(o.jobs, { model, version, input, idempotencyKey: typeof key === 'string' && key !== '' ? key : undefined }, reply);
        status = reply.statusCode;
        return reply;
      }
      const controller = new AbortController();
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) controller.abort();
      });
      const outcome = await o.control.predict(model, version, input, { signal: controller.signal, accept: req.headers.accept });
      status = 200;
      return reply.code(200).type(outcome.result.contentType).send(Buffer.from(outcome.result.data.buffer, outcome.result.data.byteOffset, outcome.result.data.byteLength));
    } catch (err) {
      status = err instanceof EaselError ? err.status : 500;
      throw err;
    } finally {
      // Unknown names are not labels: clients must not grow the metric's cardinality.
      const label = known || knownModel(o.control, model) ? model : '_unknown';
      o.metrics.requests.inc({ model: label, status: String(status) });
      o.metrics.requestDuration.observe({ model: label }, Number(process.hrtime.bigint() - t0) / 1e9);
    }
  };
  app.post('/predictions/:model', predict);
  app.post('/predictions/:model/:version', predict);
  methodNotAllowed(app, '/predictions/:model', ['POST']);
  methodNotAllowed(app, '/predictions/:model/:version', ['POST']);

  app.get('/ping', async (_req, reply) => {
    const health = o.control.health();
    if (o.isDraining()) return reply.code(503).send({ status: 'Draining' });
    return reply.code(health.healthy ? 200 : 500).send({ status: health.healthy ? 'Healthy' : 'Unhealthy', models: health.models });
  });
  methodNotAllowed(app, '/ping', ['GET']);
  app.options('/', async () => openApiDocument());
  app.get('/api-description', async () => openApiDocument());
}

/** Only reached on the error path: a successful prediction already looked its model up. */
function knownModel(control: ModelControl, name: string): boolean {
  try {
    control.spec(name);
    return true;
  } catch {
    return false;
  }
}

/** JSON objects pass through; other JSON, text and bytes become `{data}`. */
export function bodyInput(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null || (typeof body === 'string' && body.length === 0) || (Buffer.isBuffer(body) && body.length === 0)) {
    throw new EaselError('EASEL_BAD_REQUEST', 'the request has no body; send JSON ({"data": ...} or named fields), text, or a multipart file named data', 400, { field: 'body' });
  }
  if (Buffer.isBuffer(body)) return { data: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) };
  if (typeof body === 'string') {
    const trimmed = body.trim();
    if (trimmed.startsWith('{')) {
      try {
        const parsed: unknown = JSON.parse(trimmed);
        if (parsed && typeof parsed === 'object') return parsed as Record<string, unknown>;
      } catch {
        // Not JSON: it is the text itself.
      }
    }
    return { data: body };
  }
  if (typeof body === 'object' && !Array.isArray(body)) return body as Record<string, unknown>;
  return { data: body };
}

async function multipartInput(req: FastifyRequest): Promise<Record<string, unknown>> {
  const input: Record<string, unknown> = {};
  for await (const part of req.parts()) {
    if (part.type === 'file') {
      input[part.fieldname] = new Uint8Array(await part.toBuffer());
    } else {
      const v = String(part.value);
      input[part.fieldname] = v;
    }
  }
  if (Object.keys(input).length === 0) throw new EaselError('EASEL_BAD_REQUEST', 'the multipart body has no parts; send a file or field named data', 400, { field: 'data' });
  return input;
}
