// A model's description: read from easel.yaml, TorchServe's model-config.yaml, an archive
// manifest, or recognized from a known export layout (diffusers/optimum, transformers.js).
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EaselError } from '../errors/easel-error.js';

/** How long a request may take when easel.yaml says nothing (TorchServe's responseTimeout is 120 s). */
export const DEFAULT_RESPONSE_TIMEOUT_MS = 120_000;

const runtimeSchema = z
  .object({
    executionProvider: z.enum(['cpu', 'cuda']).default('cpu'),
    graphOptimizationLevel: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
    intraOpThreads: z.number().int().min(0).default(0),
    interOpThreads: z.number().int().min(0).default(0),
    /** ONNX Runtime's idle threads spin (its default) or sleep; see SessionOptions.spinning. */
    spinning: z.boolean().default(true),
    /** ONNX Runtime's CPU memory arena and memory pattern planning (both its defaults: on). */
    memArena: z.boolean().default(true),
    memPattern: z.boolean().default(true),
    executionMode: z.enum(['sequential', 'parallel']).default('sequential'),
    warmup: z.boolean().default(true),
    /** A prepared variant beside the fp32 files (`fp16` → model.fp16.onnx), chosen by name. */
    variant: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/, 'variant must be a name (letters, digits, _ and -), such as fp16 or int8').optional(),
  })
  .strict();

const batchingSchema = z
  .object({
    mode: z.enum(['none', 'request', 'step']).optional(),
    batchSize: z.number().int().min(1).max(1024).default(1),
    maxBatchDelayMs: z.number().int().min(0).max(60_000).default(0),
    /** A request still waiting for a worker after this fails with 503 EASEL_QUEUE_TIMEOUT. */
    queueTimeoutMs: z.number().int().positive().optional(),
    /** Step mode: the most memory the active set may need (an LM's KV cache at full length); newcomers wait for room. */
    maxMemoryBytes: z.number().int().positive().optional(),
    /**
     * Step mode: the worker's progress reports (an LM's streamed tokens) leave at most this often;
     * turns that come faster share a message (a request's first report never waits). 0: every turn.
     */
    streamIntervalMs: z.number().int().min(0).max(1000).default(4),
  })
  .strict();

/** A folder inside a model, or a model folder in the store, that a model names (a task's model, a speculative draft): no .., not absolute. */
export const FOLDER_NAME = /^(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$/;

/** Speculative decoding (text generation): a draft model proposes k tokens per round, the model verifies them in one call. */
const speculativeSchema = z
  .object({
    /** A folder inside this model's directory, else a model folder in the model store; it must share this model's tokenizer. */
    draft: z.string().regex(FOLDER_NAME, 'a folder inside the model or a model in the store: letters, digits, _ . - /, no ..'),
    k: z.number().int().min(1).max(16).default(3),
    /** Above this many active sequences a step decodes plainly (batching already fills the machine); unset: always speculate. */
    maxBatch: z.number().int().min(1).optional(),
    /** Each sequence's k follows its acceptance, starting at k (transformers' heuristic schedule). */
    adaptive: z.boolean().default(false),
  })
  .strict();

/** Text generation: prompts' whole blocks of KV cache kept for later prompts that begin the same (automatic prefix caching). */
const prefixCacheSchema = z
  .object({
    /** The budget, per decoder (a draft model has its own); 0 keeps none. Least recently used blocks leave first. */
    maxBytes: z.number().int().min(0).default(64 * 1024 * 1024),
  })
  .strict();

export const modelSpecSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, _ . - (at most 128)'),
    version: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'letters, digits, _ . - (at most 64)').default('1.0'),
    description: z.string().optional(),
    /** A built-in handler name, or a .js/.mjs module inside the model directory. */
    handler: z.string().min(1),
    /** The ONNX file for single-graph handlers, relative to the model directory. */
    model: z.string().optional(),
    runtime: runtimeSchema.prefault({}),
    batching: batchingSchema.prefault({}),
    minWorkers: z.number().int().min(0).max(64).default(1),
    maxWorkers: z.number().int().min(1).max(64).default(1),
    responseTimeoutMs: z.number().int().positive().default(DEFAULT_RESPONSE_TIMEOUT_MS),
    maxQueueLength: z.number().int().positive().optional(),
    /** Request defaults and limits, read by the handler. */
    defaults: z.record(z.string(), z.unknown()).default({}),
    limits: z.record(z.string(), z.unknown()).default({}),
    /** Free-form settings for the handler (TorchServe's model-config.yaml `handler:` block). */
    handlerConfig: z.record(z.string(), z.unknown()).default({}),
    speculative: speculativeSchema.optional(),
    prefixCache: prefixCacheSchema.prefault({}),
    /**
     * Text models: a special token's string in a prompt or a message (`<|im_end|>`) becomes that
     * special token, as transformers and vLLM encode it. Off: it is text, as OpenAI encodes it.
     */
    specialTokensInText: z.boolean().default(false),
  })
  .strict()
  .refine((s) => s.maxWorkers >= s.minWorkers, { message: 'maxWorkers must be >= minWorkers', path: ['maxWorkers'] });

export type ModelSpec = z.infer<typeof modelSpecSchema>;

/** A registered model: its spec plus the directory its files are in. */
export interface ModelEntry {
  readonly spec: ModelSpec;
  readonly dir: string;
  /** The speculative draft model's directory, when the spec names one that was found. */
  readonly draftDir?: string | undefined;
}

export const MANIFEST_PATH = 'EASEL-INF/MANIFEST.json';

export interface ArchiveManifest {
  createdOn: string;
  archiverVersion: string;
  model: { modelName: string; modelVersion: string; handler?: string; configFile?: string };
}

/** Reads what a model directory says about itself; `overrides` (name, batch size...) win. */
export function readModelSpec(dir: string, overrides: Record<string, unknown> = {}): ModelSpec {
  const raw: Record<string, unknown> = { ...detectLayout(dir) };
  const manifest = readJson<ArchiveManifest>(path.join(dir, MANIFEST_PATH));
  if (manifest) {
    raw.name = manifest.model.modelName;
    raw.version = manifest.model.modelVersion;
    if (manifest.model.handler) raw.handler = manifest.model.handler;
  }
  if (manifest?.model.configFile !== undefined) confinedPath(dir, manifest.model.configFile, 'configFile');
  const torchserve = readYaml(dir, manifest?.model.configFile ?? 'model-config.yaml');
  if (torchserve) Object.assign(raw, fromTorchServeConfig(torchserve));
  const easel = readYaml(dir, 'easel.yaml');
  if (easel) Object.assign(raw, easel);
  Object.assign(raw, overrides);
  raw.name ??= path.basename(dir);
  if (raw.handler === undefined) {
    throw new EaselError('EASEL_MODEL_INVALID', `model directory ${path.basename(dir)} has no easel.yaml naming a handler, and is not a known export layout (diffusers model_index.json, transformers.js onnx/, or a single .onnx file)`);
  }
  const parsed = modelSpecSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.');
    throw new EaselError('EASEL_MODEL_INVALID', `model ${String(raw.name)}: ${field || 'spec'}: ${issue.message}`, { field });
  }
  const spec = parsed.data;
  if (spec.model !== undefined) confinedPath(dir, spec.model, 'model');
  if (/\.m?js$/.test(spec.handler)) confinedPath(dir, spec.handler, 'handler');
  return spec;
}

/**
 * The one check of every path a model's files name (easel.yaml's `model` and handler module, an
 * archive manifest's config file, a draft folder inside the model): relative, no `..`, and
 * inside the model's folder by its real path too, so a link that leads out is refused. Returns
 * the path; whether it exists is for whoever opens it.
 */
export function confinedPath(dir: string, name: string, field: string): string {
  const parts = name.replace(/\\/g, '/').split('/');
  if (name === '' || path.isAbsolute(name) || /^[A-Za-z]:/.test(name) || name.includes('\0') || parts.includes('..')) {
    throw new EaselError('EASEL_MODEL_INVALID', `${field} must name a path inside the model's folder (relative, without ".."), got ${JSON.stringify(name)}`, { field });
  }
  const p = path.join(dir, name);
  if (!existsSync(p)) return p;
  const root = realpathSync(dir);
  const real = realpathSync(p);
  if (real !== root && !real.startsWith(root + path.sep)) {
    throw new EaselError('EASEL_MODEL_INVALID', `${field} ${JSON.stringify(name)} leads outside the model's folder (through a link); a model's files must be inside it`, { field });
  }
  return p;
}

/** TorchServe model-config.yaml keys, mapped to ours. */
export function fromTorchServeConfig(ts: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const batching: Record<string, unknown> = {};
  if (typeof ts.minWorkers === 'number') out.minWorkers = ts.minWorkers;
  if (typeof ts.maxWorkers === 'number') out.maxWorkers = ts.maxWorkers;
  if (typeof ts.batchSize === 'number') batching.batchSize = ts.batchSize;
  if (typeof ts.maxBatchDelay === 'number') batching.maxBatchDelayMs = ts.maxBatchDelay;
  if (Object.keys(batching).length > 0) out.batching = { ...batching, mode: (batching.batchSize as number) > 1 ? 'request' : 'none' };
  if (typeof ts.responseTimeout === 'number') out.responseTimeoutMs = ts.responseTimeout * 1000;
  if (ts.handler && typeof ts.handler === 'object') {
    out.handlerConfig = ts.handler;
    // GPT-Fast's handler settings: a draft checkpoint and how many tokens it speculates.
    const h = ts.handler as Record<string, unknown>;
    if (h.draft_checkpoint_path !== undefined) out.speculative = { draft: h.draft_checkpoint_path, ...(h.speculate_k !== undefined ? { k: h.speculate_k } : {}) };
  }
  return out;
}

/** What a directory without easel.yaml looks like it is. */
export function detectLayout(dir: string): Record<string, unknown> {
  // DeepSpeed-MII's layout: the model store resolves it to the model and task it names.
  if (existsSync(path.join(dir, 'setup_config.json'))) return { handler: 'task' };
  if (existsSync(path.join(dir, 'model_index.json'))) return { handler: 'text-to-image' };
  if (existsSync(path.join(dir, 'config.json')) && existsSync(path.join(dir, 'onnx'))) return { handler: 'text-generation' };
  const onnx = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.onnx')) : [];
  if (onnx.length === 1) return { handler: 'tensor', model: onnx[0] };
  return {};
}

function readYaml(dir: string, file: string): Record<string, unknown> | undefined {
  const p = path.join(dir, file);
  if (!existsSync(p)) return undefined;
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(p, 'utf8'));
  } catch (err) {
    throw new EaselError('EASEL_MODEL_INVALID', `${file} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new EaselError('EASEL_MODEL_INVALID', `${file} must be a mapping`);
  return doc as Record<string, unknown>;
}

function readJson<T>(p: string): T | undefined {
  if (!existsSync(p)) return undefined;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as T;
  } catch (err) {
    throw new EaselError('EASEL_MODEL_INVALID', `${path.basename(p)} is not valid JSON`, { cause: err });
  }
}
