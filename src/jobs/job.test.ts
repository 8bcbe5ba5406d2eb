import { describe, expect, it } from 'vitest';
import { poolPolicy, priorityClass } from './job.js';

describe('worker pools', () => {
  it('class jobs by priority: above 0 high, below 0 low, else normal', () => {
    expect([priorityClass(100), priorityClass(1), priorityClass(0), priorityClass(-1)]).toEqual(['high', 'high', 'normal', 'low']);
  });

  it('say which priority classes a pool takes at once, which after a wait, and which never', () => {
    const rules = { spot: { after: { high: 30 } }, batch: { takes: ['low' as const] } };
    const spot = poolPolicy(rules, 'spot')!;
    expect([spot.takes('normal', 0), spot.takes('low', 0), spot.takes('high', 29_999), spot.takes('high', 30_000)]).toEqual([true, true, false, true]);
    const batch = poolPolicy(rules, 'batch')!;
    expect([batch.takes('low', 0), batch.takes('normal', 1e9), batch.takes('high', 1e9)]).toEqual([true, false, false]);
    // A pool without rules takes everything; a pool named like an Object method is just a name.
    expect(poolPolicy(rules, 'on-demand')).toBeUndefined();
    expect(poolPolicy(rules, 'constructor')).toBeUndefined();
  });
});
