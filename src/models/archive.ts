// Model archives (.easel): writing them (torch-model-archiver's job) and extracting them safely.
// Extraction refuses entries that would land outside the target (absolute paths, `..`, links
// pointing out — checked by their real paths once extracted, hard links, devices), stops archive
// bombs with a budget of entries and of bytes as they are decompressed, reads a tar no further
// than its end-of-archive marker, and runs in a child process of its own, killed at a time limit.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { cp, mkdir, open, readdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { EaselError } from '../errors/easel-error.js';
import { MANIFEST_PATH, type ArchiveManifest } from './model-spec.js';

export type ArchiveFormat = 'tgz' | 'zip' | 'no-archive';

export interface ArchiveOptions {
  modelName: string;
  version: string;
  handler?: string | undefined;
  /** A model-config.yaml or easel.yaml to include at the archive's root. */
  configFile?: string | undefined;
  /** Files or directories to include; a directory's contents go in at the root. */
  extraFiles: string[];
  exportPath: string;
  format: ArchiveFormat;
  force: boolean;
  archiverVersion: string;
}

/** Writes `<exportPath>/<modelName>.easel` (or a directory for no-archive); returns its path. */
export async function createArchive(o: ArchiveOptions): Promise<string> {
  const out = path.join(o.exportPath, o.format === 'no-archive' ? o.modelName : `${o.modelName}.easel`);
  if (!o.force && (await exists(out))) {
    throw new EaselError('EASEL_BAD_REQUEST', `${out} already exists; pass --force to overwrite it`);
  }
  await rm(out, { recursive: true, force: true });
  const staging = o.format === 'no-archive' ? out : path.join(o.exportPath, `.${o.modelName}.staging-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    for (const f of o.extraFiles) {
      const s = await stat(f);
      if (s.isDirectory()) await cp(f, staging, { recursive: true, dereference: true });
      else await cp(f, path.join(staging, path.basename(f)), { dereference: true });
    }
    let configFile: string | undefined;
    if (o.configFile) {
      configFile = path.basename(o.configFile);
      await cp(o.configFile, path.join(staging, configFile));
    }
    const manifest: ArchiveManifest = {
      createdOn: new Date().toISOString(),
      archiverVersion: o.archiverVersion,
      model: { modelName: o.modelName, modelVersion: o.version, ...(o.handler ? { handler: o.handler } : {}), ...(configFile ? { configFile } : {}) },
    };
    await mkdir(path.join(staging, path.dirname(MANIFEST_PATH)), { recursive: true });
    await writeFile(path.join(staging, MANIFEST_PATH), JSON.stringify(manifest, null, 2));
    if (o.format === 'no-archive') return out;
    const entries = (await readdir(staging)).sort();
    if (o.format === 'tgz') {
      await tar.create({ gzip: true, file: out, cwd: staging, portable: true }, entries);
    } else {
      await writeZip(staging, out);
    }
    return out;
  } finally {
    if (o.format !== 'no-archive') await rm(staging, { recursive: true, force: true });
  }
}

async function writeZip(dir: string, out: string): Promise<void> {
  const zip = new yazl.ZipFile();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(dir, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const s = await stat(path.join(dir, r));
      if (s.isDirectory()) await walk(r);
      else zip.addFile(path.join(dir, r), r);
    }
  };
  await walk('');
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(out));
}

export interface ExtractLimits {
  maxBytes: number;
  maxEntries: number;
  /** Extraction that takes longer fails (a crafted archive that is slow to read); default 5 minutes. */
  maxMs?: number | undefined;
}

const DEFAULT_EXTRACT_MS = 5 * 60_000;

const isTs = import.meta.url.endsWith('.ts');
const EXTRACTOR = fileURLToPath(new URL(isTs ? './extract-main.ts' : './extract-main.js', import.meta.url));

/**
 * Extracts a tar.gz or zip archive into `target` (created), refusing anything unsafe; on failure
 * nothing is left. The work runs in a child process of its own, killed at the time limit: a
 * crafted archive costs that process, never the API process's event loop or its signals.
 */
export async function extractArchive(file: string, target: string, limits: ExtractLimits): Promise<void> {
  const maxMs = limits.maxMs ?? DEFAULT_EXTRACT_MS;
  const child = fork(EXTRACTOR, [], { execArgv: [...(isTs ? ['--import', 'tsx'] : []), '--max-old-space-size=512'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), maxMs);
  try {
    const outcome = await new Promise<{ error?: string } | undefined>((resolve) => {
      child.once('message', (m) => resolve(m as { error?: string }));
      child.once('exit', () => resolve(undefined));
      child.send({ file, target, limits });
    });
    if (outcome && outcome.error === undefined) return;
    await rm(target, { recursive: true, force: true });
    throw invalid(outcome?.error ?? `${path.basename(file)} could not be extracted within ${maxMs / 1000} s (or its extraction ran out of memory)`);
  } finally {
    clearTimeout(timer);
    child.kill('SIGKILL');
  }
}

/** The extraction itself, in the calling process (extract-main.ts runs it in its own). */
export async function extractArchiveHere(file: string, target: string, limits: ExtractLimits): Promise<void> {
  const kind = await sniff(file);
  await mkdir(target, { recursive: true });
  const maxMs = limits.maxMs ?? DEFAULT_EXTRACT_MS;
  const deadline = AbortSignal.timeout(maxMs);
  try {
    if (kind === 'gzip' || kind === 'tar') await extractTar(file, kind === 'gzip', target, limits, deadline);
    else if (kind === 'zip') await extractZip(file, target, limits, deadline);
    else throw invalid(`${path.basename(file)} is neither a tar.gz nor a zip archive`);
    if (deadline.aborted) throw invalid(`${path.basename(file)} took longer than ${maxMs / 1000} s to extract`);
    await checkLinks(target);
  } catch (err) {
    await rm(target, { recursive: true, force: true });
    if (deadline.aborted) throw invalid(`${path.basename(file)} took longer than ${maxMs / 1000} s to extract`, err);
    if (err instanceof EaselError) throw err;
    throw invalid(`${path.basename(file)} could not be extracted: ${(err as Error).message.replaceAll(target + path.sep, '')}`, err);
  }
}

/**
 * Every link of an extracted tree must lead, by its real path, to something inside it: a chain of
 * links can be lexically inside (`a -> .`, `b -> a/..`) and physically outside.
 */
async function checkLinks(target: string): Promise<void> {
  const root = await realpath(target);
  for (const entry of await readdir(target, { recursive: true, withFileTypes: true })) {
    if (!entry.isSymbolicLink()) continue;
    const link = path.join(entry.parentPath, entry.name);
    const name = path.relative(target, link);
    let real: string;
    try {
      real = await realpath(link);
    } catch {
      throw invalid(`archive entry "${name}" is a link to nothing inside the model directory`);
    }
    if (real !== root && !real.startsWith(root + path.sep)) throw invalid(`archive entry "${name}" is a link that leads outside the model directory`);
  }
}

function invalid(message: string, cause?: unknown): EaselError {
  return new EaselError('EASEL_ARCHIVE_INVALID', message, { cause });
}

/** The entry's path, normalized, or an error if it would escape the target directory. */
export function safeEntryPath(name: string): string {
  const p = name.replace(/\\/g, '/');
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) throw invalid(`archive entry "${name}" has an absolute path`);
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) throw invalid(`archive entry "${name}" escapes the model directory ("..")`);
  return parts.join('/');
}

function checkLink(name: string, linkpath: string): void {
  if (linkpath.startsWith('/')) throw invalid(`archive entry "${name}" is a link to an absolute path (${linkpath})`);
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(safeEntryPath(name)), linkpath));
  if (resolved === '..' || resolved.startsWith('../')) throw invalid(`archive entry "${name}" is a link pointing outside the model directory (${linkpath})`);
}

class Budget {
  bytes = 0;
  entries = 0;
  constructor(private readonly limits: ExtractLimits) {}
  entry(): void {
    if (++this.entries > this.limits.maxEntries) throw invalid(`archive has more than ${this.limits.maxEntries} entries`);
  }
  add(n: number): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) throw invalid(`archive expands beyond the limit of ${this.limits.maxBytes} bytes`);
  }
}

/**
 * Feeds a tar's bytes into a node-tar parser: decompressed here and counted against the byte
 * budget as they come (headers and padding included), and read no further than the parser's
 * end-of-archive marker, so nothing after it (a gzip bomb) is ever inflated.
 */
async function feedTar(file: string, gzip: boolean, limits: ExtractLimits, deadline: AbortSignal, parser: tar.Parser, done: string): Promise<void> {
  const inflated = new Budget(limits);
  const source = createReadStream(file, { highWaterMark: 1 << 16 });
  const bytes: AsyncIterable<Buffer> = gzip ? source.pipe(createGunzip({ chunkSize: 1 << 16 })) : source;
  let eof = false;
  parser.on('eof', () => (eof = true));
  // node-tar may emit several errors (one per bad entry): the first settles, the rest are heard and dropped.
  const finished = new Promise<void>((resolve, reject) => {
    parser.once(done, () => resolve());
    parser.on('error', reject);
  });
  // A parser error rejects `finished` while the loop below still reads: it is awaited at the end.
  finished.catch(() => undefined);
  try {
    for await (const chunk of bytes) {
      if (deadline.aborted) throw invalid('archive extraction timed out');
      try {
        inflated.add(chunk.length);
      } catch (err) {
        parser.abort(err as Error);
        throw err;
      }
      const more = parser.write(chunk);
      if (eof) break;
      if (!more) await Promise.race([once(parser, 'drain'), finished]);
    }
  } finally {
    source.destroy();
  }
  parser.end();
  await finished;
}

async function extractTar(file: string, gzip: boolean, target: string, limits: ExtractLimits, deadline: AbortSignal): Promise<void> {
  // First pass: validate every header before anything is written.
  const budget = new Budget(limits);
  let problem: EaselError | undefined;
  const list = new tar.Parser({
    strict: true,
    onReadEntry: (e) => {
      e.resume();
      if (problem) return;
      try {
        budget.entry();
        safeEntryPath(e.path);
        if (e.type === 'SymbolicLink') checkLink(e.path, e.linkpath ?? '');
        else if (e.type !== 'File' && e.type !== 'OldFile' && e.type !== 'Directory' && e.type !== 'ContiguousFile') {
          throw invalid(`archive entry "${e.path}" is a ${e.type}; only files, directories and links inside the archive are allowed`);
        }
        budget.add(e.size ?? 0);
      } catch (err) {
        problem = err as EaselError;
      }
    },
  });
  await feedTar(file, gzip, limits, deadline, list, 'end');
  if (problem) throw problem;
  // Second pass: node-tar also refuses to write through links and strips unsafe paths.
  await feedTar(file, gzip, limits, deadline, new tar.Unpack({ cwd: target, strict: true, preserveOwner: false }), 'close');
}

function extractZip(file: string, target: string, limits: ExtractLimits, deadline: AbortSignal): Promise<void> {
  const budget = new Budget(limits);
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, validateEntrySizes: true, strictFileNames: true }, (err, zip) => {
      if (err || !zip) return reject(invalid(`not a valid zip archive: ${err?.message ?? 'unreadable'}`, err));
      const fail = (e: unknown): void => {
        zip.close();
        reject(e);
      };
      zip.on('error', fail);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        void (async () => {
          budget.entry();
          const rel = safeEntryPath(entry.fileName);
          const mode = (entry.externalFileAttributes >>> 16) & 0o170000;
          if (mode === 0o120000) throw invalid(`archive entry "${entry.fileName}" is a symbolic link; zip archives may not contain links`);
          const dest = path.join(target, rel);
          if (entry.fileName.endsWith('/')) {
            await mkdir(dest, { recursive: true });
            return;
          }
          await mkdir(path.dirname(dest), { recursive: true });
          const stream = await new Promise<NodeJS.ReadableStream>((res, rej) => zip.openReadStream(entry, (e, s) => (e || !s ? rej(e) : res(s))));
          const counter = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              try {
                if (deadline.aborted) throw invalid('archive extraction timed out');
                budget.add(chunk.length);
                cb(null, chunk);
              } catch (e) {
                cb(e as Error);
              }
            },
          });
          await pipeline(stream, counter, createWriteStream(dest, { flags: 'wx' }));
        })().then(() => zip.readEntry(), fail);
      });
      zip.readEntry();
    });
  });
}

async function sniff(file: string): Promise<'gzip' | 'zip' | 'tar' | 'unknown'> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    if (bytesRead >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && buf.readUInt32LE(0) === 0x04034b50) return 'zip';
    if (bytesRead >= 262 && buf.toString('latin1', 257, 262) === 'ustar') return 'tar';
    return 'unknown';
  } finally {
    await fh.close();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

