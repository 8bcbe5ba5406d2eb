import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EaselError, ERROR_CODES } from './easel-error.js';

describe('error codes', () => {
  it('docs/errors.md lists every code with its status, and nothing else', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `(EASEL_[A-Z_]+)` \| (\d+) \| (yes|no) \|/gm)].map((m) => [m[1], Number(m[2]), m[3] === 'yes']);
    expect(rows).toEqual(Object.entries(ERROR_CODES).map(([code, v]) => [code, v.status, v.retryable]));
  });

  it('round-trips through the wire form', () => {
    const e = new EaselError('EASEL_QUEUE_FULL', 'full', { retryAfterSeconds: 2, field: 'x' });
    const back = EaselError.fromJSON(JSON.parse(JSON.stringify(e)) as never);
    expect([back.code, back.status, back.message, back.field, back.retryAfterSeconds]).toEqual(['EASEL_QUEUE_FULL', 503, 'full', 'x', 2]);
    expect(EaselError.fromJSON({ code: 'NOT_OURS', message: 'm' }).code).toBe('EASEL_INTERNAL');
    expect(EaselError.fromJSON({ code: 'constructor', message: 'm' }).code).toBe('EASEL_INTERNAL');
    expect([back.retryable, new EaselError('EASEL_BAD_REQUEST', 'b').retryable]).toEqual([true, false]);
  });
});
