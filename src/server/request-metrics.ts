// easel_requests_total and easel_request_duration_seconds for the inference routes of a scope
// (TorchServe's, OpenAI's, KServe v2's): counted when the response ends, streamed or not, by
// the model the request was for once assertServed found it served — so that unknown names
// never become labels (clients must not grow the metric's cardinality).
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics/metrics.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The model the request is for, set once some node is known to serve it. */
    servedModel?: string | undefined;
  }
}

export function countRequests(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'POST') return;
    const t0 = process.hrtime.bigint();
    reply.raw.once('close', () => {
      const label = req.servedModel ?? '_unknown';
      // A client that left before any answer: 499, as the cancellation it causes.
      const status = reply.raw.headersSent ? reply.raw.statusCode : 499;
      metrics.requests.inc({ model: label, status: String(status) });
      metrics.requestDuration.observe({ model: label }, Number(process.hrtime.bigint() - t0) / 1e9);
    });
  });
}
