// Admission of guided decoding's fields: each form becomes one guide, the admitted form parses to
// itself, and what the server will not compile is a 400 naming the path at fault.
import { describe, expect, it } from 'vitest';
import { parseGuide } from './guided-request.js';

/** The field a refusal names, or undefined when the input is taken. */
function refused(input: Record<string, unknown>): string | undefined {
  try {
    parseGuide(input);
    return undefined;
  } catch (err) {
    return (err as { field?: string }).field;
  }
}

describe('guided decoding fields', () => {
  const schema = { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] };

  it('takes each form, and its admitted form parses to itself', () => {
    const forms: Record<string, unknown>[] = [
      { response_format: { type: 'json_object' } },
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } },
      { guided_json: schema },
      { guided_json: JSON.stringify(schema) },
      { guided_regex: '[0-9]{3}-[0-9]{4}' },
      { guided_choice: ['yes', 'no'] },
      { guided_grammar: 'root ::= "a" | "b"' },
    ];
    for (const input of forms) {
      const guide = parseGuide(input);
      expect(guide, JSON.stringify(input)).toBeDefined();
      expect(parseGuide({ guide: JSON.parse(JSON.stringify(guide)) })).toEqual(guide);
    }
    expect(parseGuide({ response_format: { type: 'text' } })).toBeUndefined();
    expect(parseGuide({ guided_json: JSON.stringify(schema) })).toEqual(parseGuide({ guided_json: schema }));
  });

  it('refuses a second guide, naming it', () => {
    expect(refused({ response_format: { type: 'json_object' }, guided_regex: 'a+' })).toBe('guided_regex');
    // A text response_format is no guide.
    expect(refused({ response_format: { type: 'text' }, guided_regex: 'a+' })).toBeUndefined();
  });

  it('names the schema path at fault', () => {
    const at = (s: unknown): string | undefined => refused({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: s } } });
    const root = 'response_format.json_schema.schema';
    expect(at({ type: 'objec' })).toBe(`${root}.type`);
    expect(at({ type: 'object', properties: { age: { type: ['integer', 'float'] } } })).toBe(`${root}.properties.age.type`);
    expect(at({ type: 'array', items: { anyOf: [{ type: 'string' }, { $ref: '#/$defs/nope' }] } })).toBe(`${root}.items.anyOf[1].$ref`);
    expect(at({ type: 'object', required: 'a' })).toBe(`${root}.required`);
    expect(at({ enum: [] })).toBe(`${root}.enum`);
    expect(at({ type: 'string', pattern: '((a{100}){100}){100}' })).toBe(`${root}.pattern`);
    expect(at('not a schema')).toBe(root);
    expect(at({ type: 'string', description: 'x'.repeat(20_000) })).toBe(root);
    // Local references that resolve are taken, recursive ones included.
    expect(at({ $defs: { node: { type: 'object', properties: { next: { $ref: '#/$defs/node' } } } }, $ref: '#/$defs/node' })).toBeUndefined();
    expect(at({ type: 'object', properties: { children: { type: 'array', items: { $ref: '#' } } } })).toBeUndefined();
    expect(at({ $ref: 'https://example.com/schema.json' })).toBe(`${root}.$ref`);
  });

  it('bounds nested counted repetitions in regular expressions and grammars, and takes the patterns clients send', () => {
    expect(refused({ guided_regex: '((a{100}){100}){100}' })).toBe('guided_regex');
    expect(refused({ guided_regex: '(a{100}){100}' })).toBeUndefined();
    // Side by side they do not multiply; a class or an escape is no group.
    expect(refused({ guided_regex: `${'[0-9]{1000}-'.repeat(20)}` })).toBeUndefined();
    expect(refused({ guided_regex: '[(]{1000}\\({1000}' })).toBeUndefined();
    expect(refused({ guided_grammar: 'a ::= "x"{100}\nb ::= a{100}\nroot ::= b{100}' })).toBe('guided_grammar');
    expect(refused({ guided_grammar: 'root ::= [0-9]{4} "-" [0-9]{2} "-" [0-9]{2} "{9999999}"' })).toBeUndefined();
    // zod's email, date and UUID patterns (what openai's zodResponseFormat sends).
    for (const p of [
      "^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$",
      '^(?:(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|[02468][048]00|[13579][26]00)-02-29|\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|(?:02)-(?:0[1-9]|1\\d|2[0-8])))$',
      '^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12})$',
    ]) {
      expect(refused({ guided_json: { type: 'string', pattern: p } }), p).toBeUndefined();
    }
  });

  it('refuses malformed fields, naming them', () => {
    expect(refused({ guided_choice: [] })).toBe('guided_choice');
    expect(refused({ guided_choice: ['a', 3] })).toBe('guided_choice');
    expect(refused({ guided_json: '{not json' })).toBe('guided_json');
    expect(refused({ guided_regex: '' })).toBe('guided_regex');
    expect(refused({ response_format: { type: 'xml' } })).toBe('response_format.type');
    expect(refused({ response_format: { type: 'json_schema' } })).toBe('response_format.json_schema');
    expect(refused({ guide: { type: 'sql' } })).toBe('guide');
  });
});
