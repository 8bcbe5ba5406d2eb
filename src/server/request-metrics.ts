// easel_requests_total and easel_request_duration_seconds for the routes of a scope (OpenAI's,
// KServe v2's): counted when the response ends, streamed or not, by the model the request named.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Metrics } from '../metrics/metrics.js';
import type { ModelControl } from '../models/model-control.js';
import { localSpec } from './predict.js';

export function countRequests(app: FastifyInstance, metrics: Metrics, control: ModelControl, modelOf: (req: FastifyRequest) => unknown): void {
  app.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'POST') return;
    const t0 = process.hrtime.bigint();
    reply.raw.once('close', () => {
      const model = modelOf(req);
      // Unknown names are not labels: clients must not grow the metric's cardinality.
      const label = typeof model === 'string' && localSpec(control, model, undefined) ? model : '_unknown';
      metrics.requests.inc({ model: label, status: String(reply.raw.statusCode) });
      metrics.requestDuration.observe({ model: label }, Number(process.hrtime.bigint() - t0) / 1e9);
    });
  });
}
