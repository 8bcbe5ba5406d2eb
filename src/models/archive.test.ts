import { describe, expect, it } from 'vitest';
import { safeEntryPath } from './archive.js';

describe('safeEntryPath', () => {
  it.each(['../x', 'a/../../x', '/etc/passwd', 'C:/windows', 'a\\..\\..\\x'])('refuses %s', (p) => {
    expect(() => safeEntryPath(p)).toThrow(/absolute|escapes/);
  });
  it.each([['a/b/c.onnx', 'a/b/c.onnx'], ['./a//b', 'a/b'], ['model.onnx', 'model.onnx']])('keeps %s as %s', (p, want) => {
    expect(safeEntryPath(p)).toBe(want);
  });
});
