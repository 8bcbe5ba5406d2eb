import { describe, expect, it } from 'vitest';
import { fromHalf, toHalf } from './onnx-runtime.js';

describe('float16 conversion', () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [1e6, 0x7c00],
    [0, 0],
    [2 ** -24, 0x0001],
    [0.1, 0x2e66],
  ])('%d ↔ 0x%s', (value, bits) => {
    expect(toHalf(value)).toBe(bits);
    if (bits !== 0x7c00) expect(Math.abs(fromHalf(bits) - value)).toBeLessThanOrEqual(Math.abs(value) * 2 ** -11);
  });

  it('rounds halfway cases to even', () => {
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00);
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });
});
