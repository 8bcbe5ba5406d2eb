// The typed server configuration: defaults, a strict schema, and loading from a file, then
// EASEL_* environment variables, then flags. The result is validated once and deep-frozen.
import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** The folder of the installed package: bundled models live under it. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const port = z.number().int().min(0).max(65535);
/** The shortest management token accepted when the management API listens beyond loopback. */
const MIN_MANAGEMENT_TOKEN = 16;
/** `easel serve`'s metrics port when none is configured (TorchServe's); a worker node's is any free one. */
export const SERVE_METRICS_PORT = 8082;

/** A job's priority class, from its priority: above 0 high, below 0 low, 0 normal (worker pools route by it). */
export const PRIORITY_CLASSES = ['high', 'normal', 'low'] as const;
export type PriorityClass = (typeof PRIORITY_CLASSES)[number];
const regex = z.string().refine((p) => {
  try {
    new RegExp(p);
    return true;
  } catch {
    return false;
  }
}, 'must be a valid regular expression');

export const configSchema = z
  .object({
    host: z.string().min(1),
    port,
    managementHost: z.string().min(1),
    managementPort: port,
    metricsHost: z.string().min(1),
    /** Unset: 8082 for `easel serve`, any free port (logged) for `easel worker`, so that several run on one machine. */
    metricsPort: port.optional(),
    /** Where model directories and archives live; `url=` in the management API is relative to it. */
    modelStore: z.string().min(1),
    /** Models to load at start, name → directory or archive (relative to modelStore unless absolute). `all` loads every model in the store. */
    models: z.record(z.string(), z.string()),
    loadAllModels: z.boolean(),
    dataDir: z.string().min(1),
    /** Bearer token for the management API; required when it listens beyond loopback. */
    managementToken: z.string().optional(),
    /** The inference API's keys: a YAML/JSON file of {name, sha256, models?, rateLimitPerMinute?} (opt-in). */
    apiKeysFile: z.string().min(1).optional(),
    /** Inference API keys as name=key pairs, comma-separated (EASEL_API_KEYS; hashed when read). */
    apiKeys: z.string().optional(),
    /** Failed authentications (API key, management token) one address may make in a minute before it is answered 429 unheard. */
    maxAuthFailuresPerMinute: z.number().int().positive(),
    /** Requests per minute per API key (or per client address without keys); 0: no limit. */
    rateLimitPerMinute: z.number().int().nonnegative(),
    /** Origins a browser page served elsewhere may call the inference API from (CORS); `*` for any. */
    corsOrigins: z.array(z.string().min(1)),
    /** The worker pool this node's workers belong to (spot, on-demand…): the routing rules and the cost metrics name it. */
    pool: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'pool must be a name of letters, digits, ".", "_" and "-"'),
    /** What one of this node's workers costs per hour (any currency): easel_cost_total. */
    pricePerHour: z.number().nonnegative(),
    /**
     * Which work each pool takes, by priority class (high: priority > 0, normal: 0, low: < 0):
     * `takes` (default: every class not in `after`) at once, `after` a class once its job has
     * waited that many seconds. A pool without rules takes everything.
     */
    poolRules: z.record(
      z.string(),
      z.object({ takes: z.array(z.enum(PRIORITY_CLASSES)).optional(), after: z.partialRecord(z.enum(PRIORITY_CLASSES), z.number().nonnegative()).optional() }).strict(),
    ),
    /** Regular expressions a remote model URL must match as a whole to be registered (TorchServe's allowed_urls). Empty: none allowed. */
    allowedUrls: z.array(regex),
    /** Regular expressions a webhook's host (`name` or `name:port`) matches as a whole to be reached although it is internal (loopback, private). */
    webhookAllowedHosts: z.array(regex),
    allowCustomHandlers: z.boolean(),
    maxBodyBytes: z.number().int().positive(),
    /** How long a client may take to send a whole request, headers and body (nginx's body timeout is 60 s): then 408. */
    requestTimeoutMs: z.number().int().min(1000),
    /** Open connections of the inference port at most; 0: 60 % of the process's open-file limit (up to 8192). */
    maxConnections: z.number().int().min(0),
    /** Event streams (SSE and WebSocket) one API key, or one address without keys, may hold open on a node. */
    maxStreamsPerClient: z.number().int().min(1),
    /** A job's input as stored (uploaded bytes included) at most. */
    maxJobInputBytes: z.number().int().positive(),
    /** Queued jobs one API key may have, every model together. */
    maxQueuedJobsPerKey: z.number().int().positive(),
    /** JSON bodies nested deeper than this are refused with 400 before they are parsed into a tree. */
    maxJsonDepth: z.number().int().min(2).max(1000),
    /** JSON bodies with more object keys than this are refused with 400. */
    maxJsonKeys: z.number().int().positive(),
    maxArchiveBytes: z.number().int().positive(),
    /** Requests waiting per model beyond which new ones get 503 (per-model easel.yaml may lower it). */
    maxQueueLength: z.number().int().positive(),
    shutdownGraceMs: z.number().int().nonnegative(),
    /** Queued jobs per model beyond which POST /v1/jobs answers 503 (nothing accepted is dropped). */
    maxQueuedJobs: z.number().int().positive(),
    /** How long finished jobs and their outputs are kept. */
    jobTtlMs: z.number().int().positive(),
    /** The job queue: `embedded` (SQLite in dataDir) or a Redis URL (distributed mode). */
    queue: z.string().regex(/^(embedded|rediss?:\/\/.+)$/, 'queue must be "embedded" or a redis:// URL'),
    /** Load and run models here; false makes an API-only node (jobs run on `easel worker` nodes). */
    localWorkers: z.boolean(),
    /** Where job outputs are written (default <dataDir>/artifacts); nodes of one deployment share it. */
    artifactDir: z.string().min(1).optional(),
    /** Job outputs in S3 instead of artifactDir: s3://bucket[/prefix] (credentials from the AWS SDK's usual sources). */
    artifactUrl: z.string().regex(/^s3:\/\/[^/]+/, 'artifactUrl must look like s3://bucket[/prefix]').optional(),
    /** An S3-compatible endpoint other than AWS (MinIO, R2): path-style requests. */
    s3Endpoint: z.url().optional(),
    /** Distributed mode: how long a dead worker node keeps a job before another node takes it. */
    jobLockMs: z.number().int().min(200),
    /** An SSE stream sends a comment line this often, so that proxies keep a quiet stream open. */
    sseHeartbeatMs: z.number().int().min(100),
    /** Signs webhook deliveries (Standard Webhooks HMAC-SHA256); unsigned without it. */
    webhookSecret: z.string().min(16).optional(),
    workerRestartBackoffMs: z.array(z.number().int().positive()).min(1),
    /** Runs a request or job gets when its worker (or worker node) dies under it: 3 survives two crashes; then it fails. */
    maxAttempts: z.number().int().min(1).max(100),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    /** Profiling: each worker writes ONNX Runtime's profile of every session and a CPU profile of its process here when it stops. */
    profileDir: z.string().min(1).optional(),
    /** With profileDir, the CPU profiles only: ONNX Runtime's own profiling records every node of every call, which slows a small model many times over. */
    profileCpuOnly: z.boolean(),
  })
  .strict();

export type EaselConfig = Readonly<z.infer<typeof configSchema>>;

export const defaults: z.infer<typeof configSchema> = {
  host: '0.0.0.0',
  port: 8080,
  managementHost: '127.0.0.1',
  managementPort: 8081,
  metricsHost: '127.0.0.1',
  modelStore: path.join(PACKAGE_ROOT, 'models'),
  models: {},
  loadAllModels: true,
  dataDir: '.easel',
  allowedUrls: [],
  webhookAllowedHosts: [],
  allowCustomHandlers: false,
  rateLimitPerMinute: 0,
  maxAuthFailuresPerMinute: 20,
  corsOrigins: [],
  pool: 'default',
  pricePerHour: 0,
  poolRules: {},
  maxBodyBytes: 16 * 1024 * 1024,
  requestTimeoutMs: 60_000,
  maxConnections: 0,
  maxStreamsPerClient: 100,
  maxJobInputBytes: 8 * 1024 * 1024,
  maxQueuedJobsPerKey: 1000,
  maxJsonDepth: 32,
  maxJsonKeys: 1000,
  maxArchiveBytes: 2 * 1024 * 1024 * 1024,
  maxQueueLength: 100,
  shutdownGraceMs: 30_000,
  maxQueuedJobs: 10_000,
  queue: 'embedded',
  localWorkers: true,
  jobLockMs: 30_000,
  maxAttempts: 3,
  jobTtlMs: 24 * 60 * 60 * 1000,
  sseHeartbeatMs: 15_000,
  workerRestartBackoffMs: [100, 500, 1000, 2000, 5000, 10000],
  logLevel: 'info',
  profileCpuOnly: false,
};

type Key = keyof z.infer<typeof configSchema>;

/** Environment variable name for a config key: managementPort → EASEL_MANAGEMENT_PORT. */
export function envName(key: string): string {
  return `EASEL_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** Reads an EASEL_* variable for every config key, coercing each by the type of its default (or its schema's, where there is none). */
export function configFromEnv(env: NodeJS.ProcessEnv): Partial<Record<Key, unknown>> {
  const out: Partial<Record<Key, unknown>> = {};
  for (const key of Object.keys(configSchema.shape) as Key[]) {
    const raw = env[envName(key)];
    if (raw === undefined || raw === '') continue;
    out[key] = coerce(key, raw);
  }
  return out;
}

export function coerce(key: Key, raw: string): unknown {
  const d: unknown = defaults[key];
  const schema = configSchema.shape[key];
  if (typeof d === 'number' || (schema instanceof z.ZodOptional && schema.unwrap() instanceof z.ZodNumber)) return Number(raw);
  if (typeof d === 'boolean') return raw === 'true' || raw === '1';
  if (Array.isArray(d)) {
    const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
    return typeof d[0] === 'number' ? items.map(Number) : items;
  }
  if (key === 'models') return parseModelList(raw.split(',').map((s) => s.trim()).filter(Boolean));
  // A mapping (poolRules): JSON in the environment.
  if (typeof d === 'object' && d !== null) return JSON.parse(raw) as unknown;
  return raw;
}

/** `NAME=PATH` pairs (or bare paths, named by their folder) into a name → path map. */
export function parseModelList(items: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq > 0) out[item.slice(0, eq)] = item.slice(eq + 1);
    else out[path.basename(item).replace(/\.(easel|tar\.gz|tgz|zip)$/, '')] = item;
  }
  return out;
}

export function configFromFile(file: string): Record<string, unknown> {
  const text = readFileSync(file, 'utf8');
  const parsed: unknown = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`config file ${file} must hold a mapping of options`);
  return parsed as Record<string, unknown>;
}

export function parseConfig(input: Record<string, unknown>): EaselConfig {
  const result = configSchema.safeParse({ ...defaults, ...input });
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const config = result.data;
  if (!isLoopback(config.managementHost) && !config.managementToken) {
    throw new Error(
      `managementHost ${config.managementHost} is not loopback: set managementToken (${envName('managementToken')}) so the management API requires a bearer token`,
    );
  }
  const token = config.managementToken ?? '';
  if (!isLoopback(config.managementHost) && (token.length < MIN_MANAGEMENT_TOKEN || /\s/.test(token))) {
    throw new Error(`managementHost ${config.managementHost} is not loopback: managementToken must be at least ${MIN_MANAGEMENT_TOKEN} characters with no whitespace (for example: openssl rand -hex 24)`);
  }
  return deepFreeze(config);
}

export interface ConfigSources {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  flags?: Record<string, unknown>;
}

/** File, then environment, then flags; later sources win. */
export function loadConfig({ file, env = {}, flags = {} }: ConfigSources): EaselConfig {
  const fromFile = file ? configFromFile(file) : {};
  return parseConfig({ ...fromFile, ...configFromEnv(env), ...stripUndefined(flags) });
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** A listening address that only this machine reaches: `localhost`, or an address that parses as loopback (not a name that starts like one). */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

function stripUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
