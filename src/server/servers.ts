// Builds the three listeners (inference, management, metrics): each with Easel's error shape,
// the bounded JSON parser, zod route schemas and an OpenAPI document generated from them.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger as PinoLogger } from 'pino';
import type { Metrics } from '../metrics/metrics.js';
import type { ModelControl } from '../models/model-control.js';
import type { ModelStore } from '../models/model-store.js';
import cors from '@fastify/cors';
import { AuthThrottle, limitRate, requireApiKeys, type ApiKeys, type RateLimitOptions } from './api-keys.js';
import { installJsonParser, type JsonLimits } from './body-parsers.js';
import { boundConnections } from './connections.js';
import { EaselError } from '../errors/easel-error.js';
import { clientErrorResponse, installErrorHandling, methodNotAllowed, sendError, toEaselError } from './errors.js';
import { inferenceRoutes } from './inference-routes.js';
import { jobRoutes, type JobRoutesOptions } from './job-routes.js';
import { managementRoutes } from './management-routes.js';
import { kserveRoutes } from './kserve-routes.js';
import { openAiRoutes } from './openai-routes.js';
import { playgroundRoutes } from './playground.js';

export interface ServersOptions {
  control: ModelControl;
  store: ModelStore;
  metrics: Metrics;
  logger: PinoLogger;
  maxBodyBytes: number;
  json: JsonLimits;
  /** How long a client may take to send a whole request (then 408). */
  requestTimeoutMs: number;
  /** The inference port's open connections at most (0: from the open-file limit). */
  maxConnections: number;
  managementToken?: string | undefined;
  isDraining(): boolean;
  jobs: JobRoutesOptions;
  /** The inference API's keys (null: open), its rate limit, and the origins a browser may call it from. */
  apiKeys: ApiKeys | null;
  rateLimit: RateLimitOptions;
  /** Failed authentications per address and minute before the address is answered 429. */
  maxAuthFailuresPerMinute: number;
  corsOrigins: readonly string[];
  /** For models this node does not load (served by other nodes): their queue limit and response timeout. */
  defaultMaxQueueLength: number;
  defaultResponseTimeoutMs: number;
}

export interface Servers {
  inference: FastifyInstance;
  management: FastifyInstance;
  metrics: FastifyInstance;
}

const API_VERSION = '0.1.0';

/** Before its first request a connection may stay silent this long (Node's own timeouts start at the first byte). */
const IDLE_CONNECTION_MS = 10_000;
/** A keep-alive connection's quiet between requests (above the 60 s idle timeout of common load balancers). */
const KEEP_ALIVE_MS = 65_000;
/** The management and metrics ports' connection limit: operators and scrapers, not crowds. */
const SMALL_PORT_CONNECTIONS = 128;

type ListenerOptions = Pick<ServersOptions, 'logger' | 'maxBodyBytes' | 'json' | 'requestTimeoutMs'> & { maxConnections: number };

/** One listener with everything every port shares; `routes` registers its own. */
async function listener(o: ListenerOptions, name: string, description: string, routes: (app: FastifyInstance) => Promise<void>): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: o.logger.child({ api: name }) as FastifyBaseLogger,
    bodyLimit: o.maxBodyBytes,
    // A request that declares a body and never sends it is answered 408, not held open.
    requestTimeout: o.requestTimeoutMs,
    keepAliveTimeout: KEEP_ALIVE_MS,
    http: { headersTimeout: Math.min(o.requestTimeoutMs, 20_000), connectionsCheckingInterval: 2_000 },
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    genReqId: () => randomUUID(),
    // Errors the router finds before a route runs (a path parameter past maxParamLength, a bad URL).
    frameworkErrors: (err, _req, reply) => {
      void sendError(reply, toEaselError(err) ?? new EaselError('EASEL_BAD_REQUEST', 'the request URL could not be routed'));
    },
    clientErrorHandler: (err, socket) => {
      if (socket.writable) socket.end(clientErrorResponse(err));
      else socket.destroy();
    },
  }) as unknown as FastifyInstance; // a pino child logger types the instance with pino's Logger; the routes need only the base
  boundConnections(app.server, { max: o.maxConnections, idleMs: IDLE_CONNECTION_MS });
  // OPTIONS answers from headers alone: a body it declares is refused before a byte of it is read.
  app.addHook('onRequest', async (req) => {
    if (req.method === 'OPTIONS' && (Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined)) {
      throw new EaselError('EASEL_BAD_REQUEST', 'OPTIONS takes no body');
    }
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installJsonParser(app, o.json);
  installErrorHandling(app);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: `Easel ${name} API`, version: API_VERSION, description },
      components: { schemas: { Error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', example: 'EASEL_MODEL_NOT_FOUND' }, message: { type: 'string' }, field: { type: 'string' } } } } },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(async (scope) => routes(scope));
  app.get('/openapi.json', { schema: { summary: 'This OpenAPI document.' } }, async () => app.swagger());
  methodNotAllowed(app, '/openapi.json', ['GET']);
  return app;
}

export async function createServers(o: ServersOptions): Promise<Servers> {
  const inference = await listener(o, 'inference', "TorchServe-compatible inference API, Easel's async jobs.", async (app) => {
    // The key first: only a CORS preflight goes on to the CORS plugin without one.
    if (o.apiKeys) requireApiKeys(app, o.apiKeys, new AuthThrottle(() => o.metrics.authFailures.inc({ api: 'inference' }), o.maxAuthFailuresPerMinute));
    if (o.corsOrigins.length > 0) await app.register(cors, { origin: o.corsOrigins.includes('*') ? '*' : [...o.corsOrigins], exposedHeaders: ['retry-after', 'location'] });
    if (o.apiKeys || o.rateLimit.perMinute > 0) await limitRate(app, o.rateLimit);
    const stage = (model: string, name: string, seconds: number): void => o.metrics.stage.observe({ model, stage: name }, seconds);
    await app.register(inferenceRoutes, { control: o.control, metrics: o.metrics, maxBodyBytes: o.maxBodyBytes, isDraining: o.isDraining, jobs: o.jobs, json: o.json, defaultMaxQueueLength: o.defaultMaxQueueLength, defaultResponseTimeoutMs: o.defaultResponseTimeoutMs, stage });
    await app.register(jobRoutes, o.jobs);
    await app.register(openAiRoutes, { control: o.control, jobs: o.jobs, maxBodyBytes: o.maxBodyBytes, defaultMaxQueueLength: o.defaultMaxQueueLength, defaultResponseTimeoutMs: o.defaultResponseTimeoutMs, isDraining: o.isDraining, stage, metrics: o.metrics });
    await app.register(kserveRoutes, { control: o.control, jobs: o.jobs, defaultMaxQueueLength: o.defaultMaxQueueLength, defaultResponseTimeoutMs: o.defaultResponseTimeoutMs, stage, serverVersion: API_VERSION, metrics: o.metrics });
    await app.register(playgroundRoutes);
  });
  // OPTIONS / answers the OpenAPI document, as TorchServe's does.
  inference.options('/', { schema: { summary: 'The OpenAPI document (as TorchServe answers it).' } }, async () => inference.swagger());
  inference.get('/api-description', { schema: { summary: 'The OpenAPI document.' } }, async () => inference.swagger());
  const management = await listener({ ...o, maxConnections: SMALL_PORT_CONNECTIONS }, 'management', 'TorchServe-compatible management API.', async (app) => {
    await app.register(managementRoutes, { control: o.control, store: o.store, token: o.managementToken, throttle: new AuthThrottle(() => o.metrics.authFailures.inc({ api: 'management' }), o.maxAuthFailuresPerMinute) });
  });
  return { inference, management, metrics: await createMetricsServer(o) };
}

/** Listens on host:port and answers the port bound; a port already taken is an error naming the option that set it. */
export async function listen(app: FastifyInstance, host: string, port: number, option: string): Promise<number> {
  try {
    await app.listen({ host, port });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    throw new Error(`${host}:${port} is already in use (${option}): another easel serve or worker on this machine? Give ${option} a free port, or 0 for any free one`, { cause: err });
  }
  return (app.server.address() as AddressInfo).port;
}

/** The metrics listener alone: every node has one (a worker node of the distributed mode has nothing else). */
export function createMetricsServer(o: Pick<ServersOptions, 'metrics' | 'logger' | 'maxBodyBytes' | 'json' | 'requestTimeoutMs'>): Promise<FastifyInstance> {
  return listener({ ...o, maxConnections: SMALL_PORT_CONNECTIONS }, 'metrics', 'Prometheus metrics.', async (app) => {
    app.get('/metrics', { schema: { summary: 'Prometheus metrics, text exposition format.' } }, async (_req, reply) => reply.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics()));
    methodNotAllowed(app, '/metrics', ['GET']);
  });
}
