// Encodes the factory's texts with @huggingface/tokenizers (what Easel loads a tokenizer.json with)
// and prints, as JSON, how many encode to other ids than the factory's own encoder gave, and how
// many of those without special tokens do not decode back to their text.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(new URL('../../package.json', import.meta.url));
const { Tokenizer } = require('@huggingface/tokenizers');
const [dir, casesFile] = process.argv.slice(2);
const read = (f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8'));
const tokenizer = new Tokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
const cases = JSON.parse(readFileSync(casesFile, 'utf8'));
let idMismatches = 0;
let roundTripMismatches = 0;
for (const c of cases) {
  const ids = tokenizer.encode(c.text).ids;
  if (ids.join() !== c.ids.join()) idMismatches++;
  if (!c.text.includes('<|') && tokenizer.decode(ids, { skip_special_tokens: true }) !== c.text) roundTripMismatches++;
}
console.log(JSON.stringify({ 'tokenizer cases': cases.length, 'tokenizer ids differ (factory vs @huggingface/tokenizers)': idMismatches, 'tokenizer decode(encode(text)) != text (no specials)': roundTripMismatches }));
