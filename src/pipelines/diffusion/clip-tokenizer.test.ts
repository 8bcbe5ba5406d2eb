import { describe, expect, it } from 'vitest';
import { ClipTokenizer } from './clip-tokenizer.js';

const TINY_SD_TOKENIZER = new URL('../../../models/tiny-sd/tokenizer', import.meta.url).pathname;

// Ids from the model factory's own BPE (tools/model-factory/clip_bpe.py), which tiny-sd was
// trained with: lower-casing, whitespace clean-up, punctuation runs, truncation and padding.
const FACTORY_IDS: [string, number[]][] = [
  ["a red circle on a blue background", [605, 320, 596, 558, 521, 320, 544, 520, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606]],
  ["A  Green SQUARE,\tnear the top-left corner!!", [605, 320, 547, 554, 267, 77, 68, 64, 337, 526, 575, 268, 574, 66, 589, 77, 68, 337, 0, 256, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606]],
  ["two yellow triangles and 3 stars", [605, 83, 86, 334, 542, 83, 524, 530, 75, 68, 338, 529, 323, 274, 82, 83, 527, 338, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606]],
  ["", [605, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606, 606]],
  ["words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words words ", [605, 86, 589, 67, 338, 86, 589, 67, 338, 86, 589, 67, 338, 86, 589, 67, 338, 86, 589, 67, 338, 86, 589, 67, 338, 86, 589, 67, 338, 86, 589, 606]],
];

describe('ClipTokenizer', () => {
  const tokenizer = ClipTokenizer.load(TINY_SD_TOKENIZER);

  it('reads the length from tokenizer_config.json', () => {
    expect(tokenizer.maxLength).toBe(32);
  });

  for (const [prompt, ids] of FACTORY_IDS) {
    it(`encodes ${JSON.stringify(prompt.slice(0, 40))} as the model was trained`, () => {
      expect(tokenizer.encode(prompt)).toEqual(ids);
    });
  }

  it('cleans pasted text as the slow CLIPTokenizer does with ftfy: curly quotes, entities, fullwidth forms, ligatures', () => {
    const same: [string, string][] = [
      ['don’t stop', "don't stop"],
      ['a “quoted” word', 'a "quoted" word'],
      ['salt &amp; pepper', 'salt & pepper'],
      ['style：watercolor', 'style:watercolor'],
      ['ＬＯＵＤ\u3000ＮＯＩＳＥＳ', 'loud noises'],
      ['ﬁne', 'fine'],
    ];
    for (const [pasted, typed] of same) {
      expect(tokenizer.encode(pasted), pasted).toEqual(tokenizer.encode(typed));
      expect(tokenizer.encode(pasted), pasted).not.toEqual(tokenizer.encode(pasted.replace(/[’“”]|&amp;|：|\u3000|ﬁ/g, '?')));
    }
  });

  it('encodes text outside the training alphabet byte by byte, without failing', () => {
    const ids = tokenizer.encode('café 🎨 über');
    expect(ids).toHaveLength(32);
    expect(ids[0]).toBe(605);
    expect(ids.slice(1, 5).every((id) => id >= 0 && id < 605)).toBe(true);
  });
});
