// Builds the three listeners (inference, management, metrics) and closes them in order.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import type { Metrics } from '../metrics/metrics.js';
import type { ModelControl } from '../models/model-control.js';
import type { ModelStore } from '../models/model-store.js';
import { installErrorHandling, methodNotAllowed } from './errors.js';
import { inferenceRoutes } from './inference-routes.js';
import { jobRoutes, type JobRoutesOptions } from './job-routes.js';
import { managementRoutes } from './management-routes.js';

export interface ServersOptions {
  control: ModelControl;
  store: ModelStore;
  metrics: Metrics;
  logger: PinoLogger;
  maxBodyBytes: number;
  managementToken?: string | undefined;
  isDraining(): boolean;
  jobs?: JobRoutesOptions | undefined;
}

export interface Servers {
  inference: FastifyInstance;
  management: FastifyInstance;
  metrics: FastifyInstance;
}

export async function createServers(o: ServersOptions): Promise<Servers> {
  const make = (name: string): FastifyInstance => {
    const app = Fastify({ loggerInstance: o.logger.child({ api: name }) as FastifyBaseLogger, bodyLimit: o.maxBodyBytes, logController: new LogController({ disableRequestLogging: true }), return503OnClosing: true });
    installErrorHandling(app);
    // A pino child logger types the instance with pino's Logger; the routes need only the base.
    return app as unknown as FastifyInstance;
  };
  const inference = make('inference');
  await inference.register(inferenceRoutes, { control: o.control, metrics: o.metrics, maxBodyBytes: o.maxBodyBytes, isDraining: o.isDraining, jobs: o.jobs });
  if (o.jobs) await inference.register(jobRoutes, o.jobs);
  const management = make('management');
  await management.register(managementRoutes, { control: o.control, store: o.store, token: o.managementToken });
  const metrics = make('metrics');
  metrics.get('/metrics', async (_req, reply) => reply.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics()));
  methodNotAllowed(metrics, '/metrics', ['GET']);
  return { inference, management, metrics };
}
