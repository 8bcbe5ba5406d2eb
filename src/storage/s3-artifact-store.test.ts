// The S3 store against a real S3-compatible server process (s3rver) on an ephemeral port.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, type S3Process } from '../../test/helpers/s3-server.js';
import { S3ArtifactStore } from './s3-artifact-store.js';

describe('S3ArtifactStore', () => {
  let s3: S3Process;
  let store: S3ArtifactStore;
  beforeAll(async () => {
    s3 = await startS3();
    Object.assign(process.env, s3.env);
    store = new S3ArtifactStore({ url: `s3://${s3.bucket}/outputs`, endpoint: s3.endpoint });
  });
  afterAll(async () => {
    store?.close();
    await s3?.stop();
  });

  it('stores, reads back and deletes a job\'s artifacts; a missing one is undefined', async () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    await store.put('job-1/0.png', png, 'image/png');
    await store.put('job-1/1.png', new Uint8Array([9]), 'image/png');
    await store.put('job-2/0.png', new Uint8Array([7]), 'image/png');
    expect(await store.get('job-1/0.png')).toEqual(png);
    expect(await store.get('job-1/9.png')).toBeUndefined();
    await store.deletePrefix('job-1');
    expect(await store.get('job-1/0.png')).toBeUndefined();
    expect(await store.get('job-1/1.png')).toBeUndefined();
    expect(await store.get('job-2/0.png')).toEqual(new Uint8Array([7]));
  });

  it('refuses a URL that is not s3://bucket', () => {
    expect(() => new S3ArtifactStore({ url: 'http://bucket/x' })).toThrow(/s3:\/\/bucket/);
  });
});
