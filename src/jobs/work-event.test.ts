import { describe, expect, it } from 'vitest';
import { TextJoin } from './work-event.js';

describe('TextJoin', () => {
  it('passes chunks that follow on, and cuts what the reader already has from a run started again', () => {
    const join = new TextJoin();
    const scores = [{ token: 'Once', token_id: 1, logprob: -1, top_logprobs: null }];
    expect(join.next({ text: 'Once', offset: 0, logprobs: scores })).toEqual({ text: 'Once', offset: 0, logprobs: scores });
    expect(join.next({ text: ' upon', offset: 4 })).toEqual({ text: ' upon', offset: 4 });
    // The same text again from the beginning (another node's run): dropped until it passes 9 characters.
    expect(join.next({ text: 'Once', offset: 0 })).toBeUndefined();
    expect(join.next({ text: ' up', offset: 4 })).toBeUndefined();
    // Cut: the new part placed where it goes, without the scores of tokens already sent.
    expect(join.next({ text: 'on a', offset: 7, logprobs: scores })).toEqual({ text: ' a', offset: 9 });
    expect(join.next({ text: ' time', offset: 11 })).toEqual({ text: ' time', offset: 11 });
  });

  it('starts from what a log already holds', () => {
    const join = new TextJoin(5);
    expect(join.next({ text: 'Hello', offset: 0 })).toBeUndefined();
    expect(join.next({ text: '!', offset: 5 })).toEqual({ text: '!', offset: 5 });
  });
});
