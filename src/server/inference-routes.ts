// TorchServe's inference API: POST /predictions/{model}[/{version}] (admitted here: the route's
// schema, then the model handler's parse; then queued in the work queue's non-durable lane, so
// any worker that serves the model answers it, on this node or another), GET /ping.
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify';
import { z } from 'zod';
import { EaselError, isEaselError, errors } from '../errors/easel-error.js';
import type { WorkEvent } from '../jobs/work-event.js';
import type { Metrics } from '../metrics/metrics.js';
import { installPredictionParsers, parseJsonBounded, PREDICTION_MEDIA_TYPES, type JsonLimits } from './body-parsers.js';
import { methodNotAllowed, toEaselError } from './errors.js';
import { idempotencyKey, ownerOf, resolveJobOutputs, submitJob } from './job-routes.js';
import { countRequests } from './request-metrics.js';
import { assertServed, clientGone, predict, responseBody, type PredictOptions } from './predict.js';
import { jsonObject, pathName, strictObject } from './schemas.js';
import { streamWrite } from './stream-write.js';

export interface InferenceRouteOptions extends PredictOptions {
  metrics: Metrics;
  maxBodyBytes: number;
  json: JsonLimits;
  isDraining(): boolean;
}

// TorchServe's parameter names, so that its OpenAPI clients find them.
const predictionParams = strictObject({ model_name: pathName, model_version: pathName.optional() });
const predictionBody = z
  .union([jsonObject, z.string(), z.instanceof(Buffer), z.array(z.unknown()), z.number(), z.boolean(), z.null()])
  .optional()
  .describe('The model\'s request fields as a JSON object ({"prompt": ...} or TorchServe\'s {"data": ...}); or text, a multipart file named data, or raw bytes');

export async function inferenceRoutes(app: FastifyInstance, o: InferenceRouteOptions): Promise<void> {
  countRequests(app, o.metrics);
  await app.register(multipart, { limits: { fileSize: o.maxBodyBytes, files: 16, fields: 256, parts: 272, fieldSize: o.maxBodyBytes } });
  // TorchServe clients send text (`curl -d`) and bytes too; other types are refused with 415.
  installPredictionParsers(app);

  const onPrediction = async (req: FastifyRequest<{ Params: { model_name: string; model_version?: string | undefined } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const { model_name: model, model_version: version } = req.params;
    if (o.isDraining()) throw errors.shuttingDown('requests', 5);
    // The model may be served by another node (distributed mode): 404 only when none serves it,
    // before reading a large body's meaning.
    await assertServed(o, model, version, req);
    const input = await resolveJobOutputs(o.jobs, req, req.isMultipart() ? await multipartFields(req) : bodyInput(req.body, o.json));
    if (/\brespond-async\b/.test(String(req.headers.prefer ?? ''))) {
      await submitJob(o.jobs, { owner: ownerOf(req), model, version, input, idempotencyKey: idempotencyKey(req) }, reply);
      return reply;
    }
    const signal = clientGone(reply);
    // A text model asked to stream answers in chunks as the text is made (TorchServe's
    // streaming responses); the status line goes out with the first chunk.
    let streaming = false;
    const onEvent = input.stream === true && !/application\/json/.test(String(req.headers.accept ?? ''))
      ? (e: WorkEvent): void => {
          if (e.type !== 'token' || typeof e.data.text !== 'string' || e.data.text === '') return;
          if (!streaming) {
            streaming = true;
            reply.hijack();
            reply.raw.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
          }
          streamWrite(reply.raw, e.data.text);
        }
      : undefined;
    try {
      const result = await predict(o, { model, version, input, accept: req.headers.accept, signal, onEvent });
      if (streaming) {
        reply.raw.end();
        return reply;
      }
      // Writing the response, until the last byte is handed to the socket.
      const sent = performance.now();
      reply.raw.once('finish', () => o.metrics.stage.observe({ model, stage: 'http_write' }, (performance.now() - sent) / 1000));
      const body = responseBody(result);
      return reply.code(200).type(body.contentType).send(Buffer.from(body.data.buffer, body.data.byteOffset, body.data.byteLength));
    } catch (err) {
      if (!streaming) throw err;
      // Too late for a status: the stream ends early, and the log says why.
      req.log.warn({ err }, 'a streamed prediction failed after its first chunk');
      reply.raw.end();
      return reply;
    }
  };
  const schema = (summary: string): FastifySchema => ({ summary, params: predictionParams, body: predictionBody, consumes: [...PREDICTION_MEDIA_TYPES] });
  app.post('/predictions/:model_name', { schema: schema("Run the model's default version on the request (the result's bytes, with its content type).") }, onPrediction);
  app.post('/predictions/:model_name/:model_version', { schema: schema('Run a given version of the model.') }, onPrediction);
  methodNotAllowed(app, '/predictions/:model_name', ['POST']);
  methodNotAllowed(app, '/predictions/:model_name/:model_version', ['POST']);

  app.get('/ping', { schema: { summary: 'Health: 200 Healthy when every model has its minWorkers live; 200 Partial Healthy when the others do and some model failed (its workers were given up on); 503 Partial Healthy or Unhealthy otherwise.' } }, async (_req, reply) => {
    if (o.isDraining()) return reply.code(503).send({ status: 'Draining' });
    const health = o.control.health();
    const live = health.models.filter((m) => m.liveWorkers > 0).length;
    const failed = health.models.some((m) => m.failed !== undefined);
    const status = health.healthy && !failed ? 'Healthy' : live > 0 ? 'Partial Healthy' : 'Unhealthy';
    return reply.code(health.healthy ? 200 : 503).send({ status, models: health.models });
  });
  methodNotAllowed(app, '/ping', ['GET']);
}


/** JSON objects pass through; other JSON, text and bytes become `{data}`. */
export function bodyInput(body: unknown, json: JsonLimits): Record<string, unknown> {
  if (body === undefined || body === null || (typeof body === 'string' && body.length === 0) || (Buffer.isBuffer(body) && body.length === 0)) {
    throw new EaselError('EASEL_BAD_REQUEST', 'the request has no body; send JSON ({"data": ...} or named fields), text, or a multipart file named data', { field: 'body' });
  }
  if (Buffer.isBuffer(body)) return { data: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) };
  if (typeof body === 'string') {
    // `curl -d '{...}'` sends JSON as form-encoded text: the same bounded parser reads it.
    if (body.trimStart().startsWith('{')) {
      const parsed = parseJsonBounded(body, json);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
    }
    return { data: body };
  }
  if (typeof body === 'object' && !Array.isArray(body)) return body as Record<string, unknown>;
  return { data: body };
}

/** A multipart body's parts: files as bytes, fields as text. */
export async function multipartFields(req: FastifyRequest): Promise<Record<string, unknown>> {
  // A Map, then own properties: a part named "__proto__" is a plain (unknown) field.
  const fields = new Map<string, unknown>();
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file') fields.set(part.fieldname, new Uint8Array(await part.toBuffer()));
      else fields.set(part.fieldname, String(part.value));
    }
  } catch (err) {
    if (isEaselError(err) || toEaselError(err)) throw err;
    throw new EaselError('EASEL_BAD_REQUEST', `the multipart body is malformed (${(err as Error).message}); send multipart/form-data with a boundary and a part named data`, { field: 'body' });
  }
  if (fields.size === 0) throw new EaselError('EASEL_BAD_REQUEST', 'the multipart body has no parts; send a file or field named data', { field: 'data' });
  return Object.fromEntries(fields);
}
