// Where job outputs live: a key per artifact (`<job id>/<n>.<ext>`). The local-directory store
// serves the embedded mode; an S3-compatible store serves the distributed one.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface ArtifactStore {
  put(key: string, data: Uint8Array, contentType: string): Promise<void>;
  /** The bytes, or undefined when there is no such artifact (expired, never written). */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Deletes every artifact under `<prefix>/`. */
  deletePrefix(prefix: string): Promise<void>;
  close?(): void;
}

const EXTENSIONS: Readonly<Record<string, string>> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'application/json': 'json',
  'text/plain': 'txt',
};

/** `<job id>/<n>.<ext>` for an output of a job. */
export function artifactKey(jobId: string, index: number, contentType: string): string {
  return `${jobId}/${index}.${EXTENSIONS[contentType.split(';')[0]!.trim()] ?? 'bin'}`;
}

export class LocalArtifactStore implements ArtifactStore {
  constructor(private readonly dir: string) {}

  #path(key: string): string {
    const file = path.resolve(this.dir, key);
    if (!file.startsWith(path.resolve(this.dir) + path.sep)) throw new Error(`artifact key ${key} leaves the artifact directory`);
    return file;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const file = this.#path(key);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, data);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(this.#path(key)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    await rm(this.#path(prefix), { recursive: true, force: true });
  }
}
