// Job outputs in an S3-compatible bucket (AWS S3, MinIO, R2, ...) for the distributed mode,
// where API and worker nodes share no disk. Credentials and region come from the AWS SDK's
// usual sources (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, profiles, roles).
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { ArtifactStore } from './artifact-store.js';

export interface S3ArtifactStoreOptions {
  /** `s3://bucket` or `s3://bucket/key/prefix`. */
  url: string;
  /** A non-AWS endpoint (MinIO, R2, a test server): path-style requests are used with it. */
  endpoint?: string | undefined;
}

export class S3ArtifactStore implements ArtifactStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(o: S3ArtifactStoreOptions) {
    const url = new URL(o.url);
    if (url.protocol !== 's3:' || url.hostname === '') throw new Error(`artifact URL ${o.url} must look like s3://bucket[/prefix]`);
    this.#bucket = url.hostname;
    const prefix = url.pathname.replace(/^\/+|\/+$/g, '');
    this.#prefix = prefix === '' ? '' : `${prefix}/`;
    this.#client = new S3Client({
      region: process.env.AWS_REGION ?? 'us-east-1',
      ...(o.endpoint ? { endpoint: o.endpoint, forcePathStyle: true } : {}),
    });
  }

  async put(key: string, data: Uint8Array, contentType: string): Promise<void> {
    await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key, Body: data, ContentType: contentType }));
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }));
      return out.Body ? await out.Body.transformToByteArray() : undefined;
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return undefined;
      throw err;
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    let token: string | undefined;
    do {
      const page = await this.#client.send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: `${this.#prefix}${prefix}/`, ContinuationToken: token }));
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
      if (keys.length > 0) await this.#client.send(new DeleteObjectsCommand({ Bucket: this.#bucket, Delete: { Objects: keys } }));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  close(): void {
    this.#client.destroy();
  }
}
