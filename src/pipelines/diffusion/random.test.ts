import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TorchGenerator } from './random.js';

interface Fixture {
  source: string;
  cases: { seed: number; sizes: number[]; draws: number[][] }[];
}
const fixture = JSON.parse(readFileSync(new URL('../../../test/fixtures/random/torch-randn.json', import.meta.url), 'utf8')) as Fixture;

describe(`TorchGenerator reproduces ${fixture.source}`, () => {
  for (const c of fixture.cases) {
    it(`seed ${c.seed}: consecutive draws of ${c.sizes.join(', ')}`, () => {
      const generator = new TorchGenerator(c.seed);
      c.sizes.forEach((size, k) => {
        const got = generator.standardNormal(size);
        const want = c.draws[k] ?? [];
        expect(got.length).toBe(want.length);
        // torch evaluates log/sin/cos in float32 (vectorised); float64 here: a few ulps apart.
        want.forEach((w, i) => expect(Math.abs((got[i] ?? NaN) - w)).toBeLessThan(1e-5));
      });
    });
  }

  it('gives different streams for different seeds', () => {
    expect(new TorchGenerator(1).standardNormal(16)).not.toEqual(new TorchGenerator(2).standardNormal(16));
  });
});
