import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fixPromptText } from './prompt-text.js';

// ftfy's own answers (tools/reference/ftfy_prompt_fixture.py): curly quotes, HTML entities,
// fullwidth forms, ligatures, line breaks, control characters, C1 controls, NFC, clean text.
const FIXTURE = JSON.parse(readFileSync(new URL('../../../test/fixtures/prompts/ftfy.json', import.meta.url), 'utf8')) as { cases: { text: string; fixed: string }[] };

describe('fixPromptText', () => {
  it('agrees with ftfy.fix_text on every prompt of the fixture', () => {
    expect(FIXTURE.cases.length).toBeGreaterThan(40);
    const differ = FIXTURE.cases.filter((c) => fixPromptText(c.text) !== c.fixed).map((c) => ({ text: c.text, ftfy: c.fixed, easel: fixPromptText(c.text) }));
    expect(differ).toEqual([]);
  });

  it('decodes an entity escaped twice, and leaves HTML from its first "<" on', () => {
    expect(fixPromptText('fish &amp;amp; chips')).toBe('fish & chips');
    expect(fixPromptText('a &amp; b\n<i>c</i> &amp; d')).toBe('a & b\n<i>c</i> &amp; d');
  });

  it('replaces a lone surrogate (a broken emoji) and keeps whole pairs', () => {
    expect(fixPromptText('half \ud83c and 🎨')).toBe('half \ufffd and 🎨');
  });
});
