// Opt-in API keys for the inference API: from a file of SHA-256 hashes (`apiKeysFile`) and/or
// the environment (`EASEL_API_KEYS=name=key,…`, hashed when read; the keys themselves are not
// kept). A key may be scoped to models and carry its own rate limit. Checked before anything
// else runs (onRequest): a request with no key or a wrong one is answered 401 and never reaches
// a body parser, the queue or a worker; a key used for a model outside its scope gets 403.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EaselError } from '../errors/easel-error.js';

export interface ApiKey {
  readonly name: string;
  /** The models it may use; all when absent. */
  readonly models?: readonly string[] | undefined;
  /** Requests per minute; the server's rateLimitPerMinute when absent. */
  readonly rateLimitPerMinute?: number | undefined;
}

const keysFile = z
  .object({
    keys: z.array(
      z
        .object({
          name: z.string().min(1).max(128),
          sha256: z.string().regex(/^[0-9a-f]{64}$/, 'sha256 must be the key\'s SHA-256 as 64 lower-case hex digits (printf %s "$KEY" | sha256sum)'),
          models: z.array(z.string().min(1)).optional(),
          rateLimitPerMinute: z.number().int().positive().optional(),
        })
        .strict(),
    ),
  })
  .strict();

const sha256 = (key: string): string => createHash('sha256').update(key).digest('hex');

/** Routes open without a key: health (probes), the playground's files (it asks for the key), the API description. */
const OPEN = [/^\/ping$/, /^\/v2\/health\/(live|ready)$/, /^\/$/, /^\/ui\//, /^\/openapi\.json$/, /^\/api-description$/];

function isOpen(req: FastifyRequest): boolean {
  const path = req.url.split('?')[0]!;
  return OPEN.some((re) => re.test(path));
}

/** A browser's CORS preflight: it carries no credentials (the request it precedes does). Any other OPTIONS is a request like the rest. */
function isPreflight(req: FastifyRequest): boolean {
  return req.method === 'OPTIONS' && req.headers.origin !== undefined && req.headers['access-control-request-method'] !== undefined;
}

export class ApiKeys {
  readonly #byHash = new Map<string, ApiKey>();

  /** Null when neither source names a key: the API is open, as without this feature. */
  static load(file: string | undefined, fromEnv: string | undefined): ApiKeys | null {
    const keys = new ApiKeys();
    if (file) {
      const result = keysFile.safeParse(parseYaml(readFileSync(file, 'utf8')));
      if (!result.success) throw new Error(`API keys file ${file}: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      for (const k of result.data.keys) keys.#add(k.sha256, { name: k.name, models: k.models, rateLimitPerMinute: k.rateLimitPerMinute });
    }
    for (const pair of (fromEnv ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const eq = pair.indexOf('=');
      if (eq <= 0 || eq === pair.length - 1) throw new Error('EASEL_API_KEYS must be name=key pairs separated by commas');
      keys.#add(sha256(pair.slice(eq + 1)), { name: pair.slice(0, eq) });
    }
    return keys.#byHash.size > 0 ? keys : null;
  }

  #add(hash: string, key: ApiKey): void {
    if (this.#byHash.has(hash)) throw new Error(`API key ${key.name}: the same key is listed twice`);
    this.#byHash.set(hash, key);
  }

  /** The key a request presents (Authorization: Bearer, or X-API-Key), or the 401 to answer. */
  identify(req: FastifyRequest): ApiKey {
    const auth = req.headers.authorization;
    // The scheme is case-insensitive (RFC 9110), as the management API reads it.
    const bearer = auth === undefined ? undefined : /^bearer\s+(\S+)\s*$/i.exec(auth)?.[1];
    const presented = bearer ?? (req.headers['x-api-key'] as string | undefined);
    if (!presented) throw new EaselError('EASEL_UNAUTHORIZED', 'this server requires an API key: send it as "Authorization: Bearer <key>" (or X-API-Key)');
    const key = this.#byHash.get(sha256(presented));
    if (!key) throw new EaselError('EASEL_UNAUTHORIZED', 'the API key is not valid');
    return key;
  }
}

/**
 * Failed authentication, throttled per client address: after `maxFailures` wrong or missing keys
 * within a minute, the address is answered 429 before its key is looked at, until the minute
 * ends (a key cannot be guessed at the server's speed). Each failure is counted for the metrics.
 */
export class AuthThrottle {
  readonly #failures = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly onFailure: () => void,
    private readonly maxFailures = 20,
    private readonly windowMs = 60_000,
  ) {}

  /** Throws the 429 when this address has failed too often lately. */
  check(address: string): void {
    const f = this.#failures.get(address);
    if (!f) return;
    const left = f.since + this.windowMs - Date.now();
    if (left <= 0) this.#failures.delete(address);
    else if (f.count >= this.maxFailures) {
      throw new EaselError('EASEL_RATE_LIMITED', `this client failed authentication ${f.count} times within a minute; retry after ${Math.ceil(left / 1000)} s`, { retryAfterSeconds: Math.ceil(left / 1000) });
    }
  }

  failed(address: string): void {
    this.onFailure();
    const f = this.#failures.get(address);
    if (f && f.since + this.windowMs > Date.now()) f.count += 1;
    else {
      // Bounded: the oldest address is forgotten first.
      if (this.#failures.size >= 10_000) this.#failures.delete(this.#failures.keys().next().value!);
      this.#failures.set(address, { count: 1, since: Date.now() });
    }
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    apiKey?: ApiKey | undefined;
  }
}

/** The model a request names: its path's, its query's (the job list's filter), or its JSON body's `model` (jobs, OpenAI). */
function namedModel(req: FastifyRequest): string | undefined {
  const params = req.params as Record<string, unknown> | undefined;
  const fromPath = params?.model_name ?? params?.model ?? (req.query as Record<string, unknown> | undefined)?.model;
  if (typeof fromPath === 'string') return fromPath;
  const body = req.body as Record<string, unknown> | undefined;
  return body !== null && typeof body === 'object' && typeof body.model === 'string' ? body.model : undefined;
}

export interface RateLimitOptions {
  /** Per key (or client address without keys); 0: none. A key's own rateLimitPerMinute wins. */
  perMinute: number;
  /** Distributed mode (the queue's Redis URL): the counts live in Redis, shared by every API node. */
  redisUrl?: string | undefined;
}

/** Per-key (else per-address) requests per minute: 429 in Easel's error shape, with Retry-After. */
export async function limitRate(app: FastifyInstance, o: RateLimitOptions): Promise<void> {
  const limit = (req: FastifyRequest): number => req.apiKey?.rateLimitPerMinute ?? o.perMinute;
  // ioredis only in the distributed mode (imported then, as the job system imports BullMQ).
  const redis = o.redisUrl ? new (await import('ioredis')).Redis(o.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 2 }) : undefined;
  if (redis) app.addHook('onClose', async () => void (await redis.quit().catch(() => undefined)));
  await app.register(rateLimit, {
    global: true,
    // After onRequest: the key is known.
    hook: 'preHandler',
    timeWindow: 60_000,
    max: (req) => limit(req),
    allowList: (req) => isPreflight(req) || isOpen(req) || limit(req) === 0,
    keyGenerator: (req) => (req.apiKey ? `key:${req.apiKey.name}` : `ip:${req.ip}`),
    ...(redis ? { redis, nameSpace: 'easel-rate-limit:' } : {}),
    errorResponseBuilder: (req, ctx) =>
      new EaselError('EASEL_RATE_LIMITED', `${req.apiKey ? `the API key "${req.apiKey.name}"` : 'this client'} may send ${ctx.max} requests per minute; retry after ${Math.ceil(ctx.ttl / 1000)} s`, { retryAfterSeconds: Math.ceil(ctx.ttl / 1000) }),
  });
}

/** Requires a key on every route but the open ones; holds a scoped key to its models. */
export function requireApiKeys(app: FastifyInstance, keys: ApiKeys, throttle: AuthThrottle): void {
  app.addHook('onRequest', async (req) => {
    if (isPreflight(req) || isOpen(req)) return;
    throttle.check(req.ip);
    try {
      req.apiKey = keys.identify(req);
    } catch (err) {
      throttle.failed(req.ip);
      throw err;
    }
  });
  app.addHook('preHandler', async (req) => {
    const scope = req.apiKey?.models;
    const model = scope && namedModel(req);
    if (model !== undefined && scope && !scope.includes(model)) {
      throw new EaselError('EASEL_FORBIDDEN', `the API key "${req.apiKey!.name}" may not use model ${model}; it may use ${scope.join(', ')}`, { field: 'model' });
    }
  });
}
