// The model store: turns what an operator names (a store-relative directory or archive, or an
// allow-listed http(s) URL) into a model directory on disk with its spec.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { EaselError, isEaselError, errors } from '../errors/easel-error.js';
import { anchoredPatterns, guardedRequest, parseOutboundUrl } from '../net/outbound-guard.js';
import { extractArchive } from './archive.js';
import { confinedPath, FOLDER_NAME, readModelSpec, type ModelEntry } from './model-spec.js';

export interface ModelStoreOptions {
  storeDir: string;
  /** Where archives are extracted and downloads kept. */
  dataDir: string;
  allowedUrls: readonly string[];
  maxArchiveBytes: number;
  /**
   * DeepSpeed-MII's tasks (`setup_config.json` `{model_name, task}`, handler `task`) → the handler
   * that serves each; the handlers declare it, the CLI passes it here.
   */
  tasks?: ReadonlyMap<string, string> | undefined;
}

/** A download that stalls this long (no bytes, no answer) is abandoned. */
const DOWNLOAD_TIMEOUT_MS = 60_000;

export class ModelStore {
  readonly #o: ModelStoreOptions;
  readonly #allowed: RegExp[];

  constructor(options: ModelStoreOptions) {
    this.#o = options;
    this.#allowed = anchoredPatterns(options.allowedUrls);
  }

  /**
   * Resolves `url` (relative to the store, absolute only when `trusted`, i.e. from the
   * operator's own config or flags, or an allow-listed remote URL) to a model.
   */
  async resolve(url: string, overrides: Record<string, unknown> = {}, trusted = false): Promise<ModelEntry> {
    const entry = await this.#locate(url, overrides, trusted);
    try {
      // A speculative draft is found the way a task's model is; whether it fits is the handler's check at registration.
      const draft = entry.spec.speculative?.draft;
      return draft === undefined ? entry : { ...entry, draftDir: this.#folder(entry.dir, draft) };
    } catch (err) {
      await this.discard(entry);
      throw err;
    }
  }

  async #locate(url: string, overrides: Record<string, unknown>, trusted: boolean): Promise<ModelEntry> {
    if (/^https?:\/\//i.test(url)) return this.#fromRemote(url, overrides);
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
      throw new EaselError('EASEL_INVALID_PARAMETER', `url scheme of "${url}" is not supported; use a path in the model store or an http(s) URL`, { field: 'url' });
    }
    const local = this.#localPath(url, trusted);
    let s;
    try {
      s = await stat(local);
    } catch {
      throw errors.modelNotFound(`"${url}" was not found in the model store`, 'url');
    }
    if (s.isDirectory()) return this.#task({ spec: readModelSpec(local, overrides), dir: local }, overrides);
    const extracted = await this.#fromArchive(local, overrides);
    try {
      return this.#task(extracted, overrides);
    } catch (err) {
      await this.discard(extracted);
      throw err;
    }
  }

  /**
   * A `task` model (an archive or folder with DeepSpeed-MII's setup_config.json) becomes the model
   * its `model_name` names — a folder inside it, else a model in the store, never a download —
   * served by the handler of its `task`. Other models pass unchanged.
   */
  #task(entry: ModelEntry, overrides: Record<string, unknown>): ModelEntry {
    if (entry.spec.handler !== 'task') return entry;
    const file = path.join(entry.dir, 'setup_config.json');
    let setup: { model_name?: unknown; task?: unknown };
    try {
      setup = JSON.parse(readFileSync(file, 'utf8')) as typeof setup;
    } catch (err) {
      throw new EaselError('EASEL_MODEL_INVALID', `model ${entry.spec.name}: the task handler needs a setup_config.json with model_name and task (${(err as Error).message})`, { field: 'setup_config.json' });
    }
    const tasks = this.#o.tasks ?? new Map<string, string>();
    const handler = typeof setup.task === 'string' ? tasks.get(setup.task) : undefined;
    if (!handler) throw new EaselError('EASEL_MODEL_INVALID', `model ${entry.spec.name}: unknown task ${JSON.stringify(setup.task)} in setup_config.json; known tasks: ${[...tasks.keys()].join(', ')}`, { field: 'task' });
    const name = setup.model_name;
    if (typeof name !== 'string' || !FOLDER_NAME.test(name)) {
      throw new EaselError('EASEL_MODEL_INVALID', `model ${entry.spec.name}: setup_config.json model_name must name a folder inside the archive or a model in the store, got ${JSON.stringify(name)}`, { field: 'model_name' });
    }
    const dir = this.#folder(entry.dir, name);
    if (!dir) throw new EaselError('EASEL_MODEL_INVALID', `model ${entry.spec.name}: model_name "${name}" is neither a folder inside it nor a model in the store (models are never downloaded by name)`, { field: 'model_name' });
    // The task model keeps its own name and version; files and settings are the named model's.
    return { spec: readModelSpec(dir, { ...overrides, name: entry.spec.name, version: entry.spec.version, handler }), dir };
  }

  /** A folder inside a model's directory (by its real path too), else a model folder in the store (names are checked by the caller: no .., not absolute). */
  #folder(modelDir: string, name: string): string | undefined {
    return [confinedPath(modelDir, name, 'folder'), path.join(path.resolve(this.#o.storeDir), name)].find((d) => existsSync(d) && statSync(d).isDirectory());
  }

  /** Removes what registering `entry` extracted (an archive's folder under the data directory); a store folder stays. */
  async discard(entry: ModelEntry): Promise<void> {
    if (this.#extracted(entry.dir)) await rm(entry.dir, { recursive: true, force: true });
  }

  #extracted(dir: string): boolean {
    return path.dirname(path.resolve(dir)) === path.join(path.resolve(this.#o.dataDir), 'models');
  }

  /** A message with the server's own folders made relative: errors name paths in the model store, not the machine. */
  relativize(message: string): string {
    let out = message;
    for (const [dir, as] of [[path.join(path.resolve(this.#o.dataDir), 'models'), ''], [path.resolve(this.#o.storeDir), ''], [path.resolve(this.#o.dataDir), '']] as const) {
      out = out.replaceAll(dir + path.sep, as).replaceAll(dir, '.');
    }
    return out;
  }

  #localPath(url: string, trusted: boolean): string {
    if (path.isAbsolute(url)) {
      if (trusted) return url;
      throw new EaselError('EASEL_FORBIDDEN', `url must be relative to the model store, got the absolute path "${url}"`, { field: 'url' });
    }
    const store = path.resolve(this.#o.storeDir);
    const p = path.resolve(store, url);
    if (!trusted && p !== store && !p.startsWith(store + path.sep)) {
      throw new EaselError('EASEL_FORBIDDEN', `url "${url}" points outside the model store`, { field: 'url' });
    }
    return p;
  }

  async #fromArchive(file: string, overrides: Record<string, unknown>): Promise<ModelEntry> {
    const s = await stat(file);
    const key = createHash('sha256').update(`${path.resolve(file)}:${s.size}:${s.mtimeMs}`).digest('hex').slice(0, 16);
    const target = path.join(path.resolve(this.#o.dataDir), 'models', `${path.basename(file).replace(/[^A-Za-z0-9_.-]/g, '_')}-${key}`);
    await rm(target, { recursive: true, force: true });
    await extractArchive(file, target, { maxBytes: this.#o.maxArchiveBytes, maxEntries: 10_000 });
    try {
      return { spec: readModelSpec(target, overrides), dir: target };
    } catch (err) {
      await rm(target, { recursive: true, force: true });
      throw err;
    }
  }

  async #fromRemote(raw: string, overrides: Record<string, unknown>): Promise<ModelEntry> {
    // Matched as a whole against the URL as it will be fetched (decimal or octal hosts normalized).
    const parsed = parseOutboundUrl(raw, 'url');
    const url = parsed.href;
    if (!this.#allowed.some((r) => r.test(url))) {
      throw new EaselError('EASEL_FORBIDDEN', `url "${url}" is not on the allow-list (allowedUrls, each pattern matching the whole URL); remote models must be allowed by the operator`, { field: 'url' });
    }
    // The operator named this URL, so its host may be internal; the guard still connects to the
    // address it resolved, follows no redirect and stops at maxArchiveBytes.
    const res = await guardedRequest(parsed, { allowedHosts: [], operatorNamed: true }, { method: 'GET', timeoutMs: DOWNLOAD_TIMEOUT_MS, field: 'url' }).catch((err: unknown) => {
      if (isEaselError(err)) throw err;
      throw new EaselError('EASEL_INVALID_PARAMETER', `could not download "${url}": ${(err as Error).message}`, { field: 'url', cause: err });
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      res.destroy();
      throw new EaselError('EASEL_INVALID_PARAMETER', `downloading "${url}" failed with HTTP ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`, { field: 'url' });
    }
    const dir = path.join(path.resolve(this.#o.dataDir), 'downloads');
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, createHash('sha256').update(url).digest('hex').slice(0, 16) + '.easel');
    let bytes = 0;
    const limit = this.#o.maxArchiveBytes;
    const counter = new Transform({
      transform(chunk: Buffer, _e, cb) {
        bytes += chunk.length;
        cb(bytes > limit ? new EaselError('EASEL_ARCHIVE_INVALID', `download exceeds ${limit} bytes`) : null, chunk);
      },
    });
    await pipeline(res, counter, createWriteStream(file));
    return this.#fromArchive(file, overrides);
  }
}
