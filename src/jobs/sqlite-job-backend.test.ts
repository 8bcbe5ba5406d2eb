import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeJobBackend } from './job-backend.contract.js';
import { SqliteJobBackend } from './sqlite-job-backend.js';

const TTL_MS = 60_000;
describeJobBackend('embedded (SQLite)', async () => new SqliteJobBackend({ file: ':memory:', jobTtlMs: TTL_MS }), TTL_MS);

describe('SqliteJobBackend durability', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-sqlite-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps jobs across a reopen and queues again the ones that were running', async () => {
    const file = path.join(dir, 'jobs.db');
    const first = new SqliteJobBackend({ file, jobTtlMs: TTL_MS });
    const a = (await first.submit({ model: 'm', input: { n: 1 } })).job;
    const b = (await first.submit({ model: 'm', input: { n: 2 } })).job;
    await first.claim(['m']);
    // No close: as if the process had been killed.
    const second = new SqliteJobBackend({ file, jobTtlMs: TTL_MS });
    expect((await second.get(a.id))?.status).toBe('queued');
    expect((await second.get(b.id))?.status).toBe('queued');
    expect((await second.claim(['m']))?.id).toBe(a.id);
    expect((await second.claim(['m']))?.id).toBe(b.id);
    await second.close();
    await first.close();
  });

  it('claims a durable job queued or handed back after a claim found none (SQLite is skipped only while none waits)', async () => {
    const backend = new SqliteJobBackend({ file: ':memory:', jobTtlMs: TTL_MS });
    expect(await backend.claim(['m'])).toBeUndefined();
    const held = (await backend.submit({ durable: false, model: 'm', input: {} })).job;
    expect((await backend.claim(['m']))?.id).toBe(held.id);
    const job = (await backend.submit({ model: 'm', input: {} })).job;
    expect((await backend.claim(['m', 'other']))?.id).toBe(job.id);
    expect(await backend.claim(['m'])).toBeUndefined();
    await backend.release(job.id);
    expect((await backend.claim(['m']))?.id).toBe(job.id);
    await backend.close();
  });

  it('opens a database written before jobs had timings: the column is added, old jobs read with none', async () => {
    const file = path.join(dir, 'old.db');
    const first = new SqliteJobBackend({ file, jobTtlMs: TTL_MS });
    const old = (await first.submit({ model: 'm', input: {} })).job;
    await first.close();
    const db = new Database(file);
    db.exec('ALTER TABLE jobs DROP COLUMN timings');
    db.close();
    const second = new SqliteJobBackend({ file, jobTtlMs: TTL_MS });
    expect((await second.get(old.id))?.timings).toBeNull();
    await second.claim(['m']);
    await second.complete(old.id, [], undefined, { inference: 2 });
    expect((await second.get(old.id))?.timings).toEqual({ inference: 2 });
    await second.close();
  });
});
