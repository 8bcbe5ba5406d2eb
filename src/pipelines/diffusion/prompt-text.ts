// A prompt's text as CLIP's own code and transformers' slow CLIPTokenizer (the class SD
// pipelines name) see it: they run ftfy's fix_text before the BPE. Users paste prompts from web
// pages, word processors and phones, and "don’t", “quoted”, &amp; or "：" would otherwise give
// other token ids, so other images, than diffusers. What ftfy's default configuration does, in
// its order, until nothing changes: HTML entities decoded (only those ending in ";", and not
// in text that contains "<"), C1 controls read as Windows-1252, Latin ligatures split,
// fullwidth and halfwidth forms to standard width, curly quotes straightened, line breaks to
// "\n", lone surrogates replaced, terminal escapes and stray control characters removed, NFC.
// Not done: ftfy's mojibake repair ("donâ€™t" → "don’t"), a statistical decoder of its own that
// has no JavaScript counterpart; such text is tokenized as it is. Checked against ftfy itself
// (test/fixtures/prompts/ftfy.json, made by tools/reference/ftfy_prompt_fixture.py).
import { decodeHTMLStrict } from 'entities';

const ENTITY = /&#?[0-9A-Za-z]{1,24};/g;
const C1_CONTROL = /[\u0080-\u009f]/g;
const SINGLE_QUOTES = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTES = /[\u201c-\u201f]/g;
const LINE_BREAK = /\r\n|[\r\u2028\u2029\u0085]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// eslint-disable-next-line no-control-regex
const TERMINAL_ESCAPE = /\u001b\[[\d;]*[a-zA-Z]/g;
// ASCII controls but tab, line feed, form feed and carriage return; deprecated Arabic format
// controls; the byte order mark; interlinear annotations and the object replacement character.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000e-\u001f\u007f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
const WIDE = /[\u3000\uff01-\uffef]/g;

const LIGATURES = new Map([
  ['Ĳ', 'IJ'], ['ĳ', 'ij'], ['ŉ', 'ʼn'], ['Ǳ', 'DZ'], ['ǲ', 'Dz'], ['ǳ', 'dz'], ['Ǆ', 'DŽ'], ['ǅ', 'Dž'], ['ǆ', 'dž'],
  ['Ǉ', 'LJ'], ['ǈ', 'Lj'], ['ǉ', 'lj'], ['Ǌ', 'NJ'], ['ǋ', 'Nj'], ['ǌ', 'nj'],
  ['ﬀ', 'ff'], ['ﬁ', 'fi'], ['ﬂ', 'fl'], ['ﬃ', 'ffi'], ['ﬄ', 'ffl'], ['ﬅ', 'ſt'], ['ﬆ', 'st'],
]);
const LIGATURE = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');

// Windows-1252's characters at 0x80–0x9F, where Latin-1 has C1 controls (0x81, 0x8D, 0x8F, 0x90
// and 0x9D are unassigned: they stay). Node's TextDecoder reads this label as Latin-1.
const WINDOWS_1252 = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';

/** An entity as ftfy decodes it: HTML5's names with ";", and an all-caps Latin name ("&EACUTE;") as the capital letter. */
function decodeEntity(entity: string): string {
  const decoded = decodeHTMLStrict(entity);
  if (decoded !== entity || !/^&[A-Z]+;$/.test(entity)) return decoded;
  const lower = entity.toLowerCase();
  const small = decodeHTMLStrict(lower);
  return small === lower ? entity : small.toUpperCase();
}

/** Standard width: the ideographic space is a space; other fullwidth and halfwidth forms as NFKC writes them. */
function standardWidth(char: string): string {
  return char === '\u3000' ? ' ' : char.normalize('NFKC');
}

function fixOnce(text: string, unescapeHtml: boolean): string {
  let t = unescapeHtml ? text.replace(ENTITY, decodeEntity) : text;
  t = t.replace(C1_CONTROL, (c) => WINDOWS_1252[c.charCodeAt(0) - 0x80]!);
  t = t.replace(LIGATURE, (c) => LIGATURES.get(c) ?? c);
  t = t.replace(WIDE, standardWidth);
  t = t.replace(SINGLE_QUOTES, "'").replace(DOUBLE_QUOTES, '"');
  t = t.replace(LINE_BREAK, '\n');
  t = t.replace(LONE_SURROGATE, '\ufffd');
  t = t.replace(TERMINAL_ESCAPE, '').replace(CONTROL, '');
  return t.normalize('NFC');
}

/** ftfy's fix_text, but for mojibake: line by line, HTML left alone from the first line that has a "<". */
export function fixPromptText(text: string): string {
  let unescapeHtml = true;
  const lines = text.match(/[^\n]*\n|[^\n]+/g) ?? [];
  return lines
    .map((line) => {
      if (line.includes('<')) unescapeHtml = false;
      let before = line;
      let after = fixOnce(before, unescapeHtml);
      while (after !== before) [before, after] = [after, fixOnce(after, unescapeHtml)];
      return after;
    })
    .join('');
}
