import { describe, expect, it } from 'vitest';
import { TextJoin } from './work-event.js';

describe('TextJoin', () => {
  it('passes chunks that follow on, and cuts what the reader already has from a run started again', () => {
    const join = new TextJoin();
    expect(join.take(0, 'Once')).toBe('Once');
    expect(join.take(4, ' upon')).toBe(' upon');
    // The same text again from the beginning (another node's run): dropped until it passes 9 characters.
    expect(join.take(0, 'Once')).toBeUndefined();
    expect(join.take(4, ' up')).toBeUndefined();
    expect(join.take(7, 'on a')).toBe(' a');
    expect(join.take(11, ' time')).toBe(' time');
  });

  it('starts from what a log already holds', () => {
    const join = new TextJoin(5);
    expect(join.take(0, 'Hello')).toBeUndefined();
    expect(join.take(5, '!')).toBe('!');
  });
});
