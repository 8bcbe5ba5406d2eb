// Admission of guided decoding's fields: OpenAI's `response_format` ({type: "json_object"} or
// {type: "json_schema", json_schema: {name, schema, strict}}) and vLLM's `guided_json`,
// `guided_regex`, `guided_choice`, `guided_grammar`. At most one per request. Each is bounded in
// size, and a JSON schema is checked here — its types, its references, its depth — so that a
// 400 names the path at fault; what only the grammar engine can judge (a pattern's syntax, a
// grammar's rules) it judges in the worker, where compiling it is a 400 naming the field too.
import { invalidField } from '../errors/easel-error.js';
import type { GuideSpec } from '../pipelines/text/guided.js';

/** The request fields that ask for guided decoding. */
export const GUIDE_FIELDS = ['response_format', 'guided_json', 'guided_regex', 'guided_choice', 'guided_grammar', 'guide'] as const;

/** The most characters a schema (as JSON), a regular expression or a grammar may have. */
export const MAX_GUIDE_CHARS = 16_384;
const MAX_SCHEMA_DEPTH = 32;
const MAX_CHOICES = 256;
/**
 * Counted repetitions nested in a regular expression (`((a{100}){100})`: 10,000) multiply into the
 * automaton xgrammar builds: 10,000 compiles in about 70 ms here, 1,000,000 in 6 s, during which
 * the model's worker makes no step. A grammar's rules can nest across rules, so its bound is on
 * the product of all its counted repetitions (100,000: about 0.5 s).
 */
const MAX_NESTED_REPETITION = 10_000;
const MAX_GRAMMAR_REPETITION = 100_000;
const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);
/** Keywords whose value is a schema, a list of schemas, or a map of schemas. */
const ONE_SCHEMA = ['items', 'additionalProperties', 'not', 'contains', 'propertyNames', 'unevaluatedProperties', 'additionalItems', 'if', 'then', 'else'];
const SCHEMA_LISTS = ['anyOf', 'oneOf', 'allOf', 'prefixItems'];
const SCHEMA_MAPS = ['properties', '$defs', 'definitions', 'patternProperties', 'dependentSchemas'];

/** The guide a request asks for, or undefined; a 400 naming the field when it is malformed or there are two. */
export function parseGuide(input: Readonly<Record<string, unknown>>): GuideSpec | undefined {
  const given = GUIDE_FIELDS.filter((f) => input[f] !== undefined && input[f] !== null && !(f === 'response_format' && (input[f] as { type?: unknown }).type === 'text'));
  if (given.length > 1) throw invalidField(given[1]!, `send one of ${GUIDE_FIELDS.slice(0, -1).join(', ')}; this request has ${given.join(' and ')}`);
  const field = given[0];
  if (field === undefined) return undefined;
  const value = input[field];
  switch (field) {
    case 'response_format':
      return responseFormat(value);
    case 'guided_json': {
      // vLLM takes the schema as an object or as its JSON text.
      let schema = value;
      if (typeof value === 'string') {
        if (value.length > MAX_GUIDE_CHARS) throw invalidField(field, `guided_json has ${value.length} characters; at most ${MAX_GUIDE_CHARS}`);
        try {
          schema = JSON.parse(value);
        } catch {
          throw invalidField(field, 'guided_json must be a JSON schema (an object, or its JSON text)');
        }
      }
      return { type: 'json_schema', schema: checkSchema(schema, field), field };
    }
    case 'guided_regex':
      return { type: 'regex', pattern: pattern(value, field), field };
    case 'guided_grammar':
      return { type: 'grammar', grammar: grammar(value, field), field };
    case 'guided_choice': {
      if (!Array.isArray(value) || value.length === 0 || value.length > MAX_CHOICES || !value.every((c) => typeof c === 'string' && c.length > 0 && c.length <= 1024)) {
        throw invalidField(field, `guided_choice must be a list of 1 to ${MAX_CHOICES} non-empty strings of at most 1024 characters`);
      }
      return { type: 'choice', choices: value as string[], field };
    }
    case 'guide':
      return admitted(value);
  }
}

/** OpenAI's response_format: json_object (any object) or json_schema. */
function responseFormat(value: unknown): GuideSpec {
  const f = value as { type?: unknown; json_schema?: { schema?: unknown; name?: unknown; strict?: unknown } } | null;
  if (!f || typeof f !== 'object') throw invalidField('response_format', 'response_format must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}');
  if (f.type === 'json_object') return { type: 'json_schema', schema: { type: 'object' }, field: 'response_format' };
  if (f.type !== 'json_schema') throw invalidField('response_format.type', `response_format.type must be text, json_object or json_schema, got ${JSON.stringify(f.type)}`);
  if (!f.json_schema || typeof f.json_schema !== 'object') throw invalidField('response_format.json_schema', 'response_format.json_schema must be an object: {"name": ..., "schema": {...}, "strict": true}');
  // OpenAI's schema is optional: without one, any JSON value.
  const field = 'response_format.json_schema.schema';
  return { type: 'json_schema', schema: f.json_schema.schema === undefined ? true : checkSchema(f.json_schema.schema, field), field };
}

/** The admitted form, parsed again (a job re-admitted on the node that runs it). */
function admitted(value: unknown): GuideSpec {
  const g = value as Partial<Record<string, unknown>> | null;
  const field = typeof g?.field === 'string' ? g.field : 'guide';
  switch (g?.type) {
    case 'json_schema':
      return { type: 'json_schema', schema: checkSchema(g.schema, field), field };
    case 'regex':
      return { type: 'regex', pattern: pattern(g.pattern, field), field };
    case 'grammar':
      return { type: 'grammar', grammar: grammar(g.grammar, field), field };
    case 'choice':
      return { ...(parseGuide({ guided_choice: g.choices }) as GuideSpec), field };
    case 'tools': {
      const tools = g.tools;
      if (!Array.isArray(tools) || tools.length === 0 || typeof g.required !== 'boolean' || typeof g.parallel !== 'boolean') throw invalidField('guide', 'guide must be the admitted form of a guided-decoding field');
      return {
        type: 'tools', required: g.required, parallel: g.parallel, field,
        tools: tools.map((t: { name?: unknown; parameters?: unknown }, i) => {
          if (typeof t?.name !== 'string') throw invalidField('guide', 'guide must be the admitted form of a guided-decoding field');
          return { name: t.name, parameters: checkSchema(t.parameters, `tools[${i}].function.parameters`) };
        }),
      };
    }
    default:
      throw invalidField('guide', 'guide must be the admitted form of a guided-decoding field');
  }
}

function text(value: unknown, field: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_GUIDE_CHARS) throw invalidField(field, `${field} must be ${what}: a non-empty string of at most ${MAX_GUIDE_CHARS} characters`);
  return value;
}

function pattern(value: unknown, field: string): string {
  const p = text(value, field, 'a regular expression');
  const n = repetition(p, false).nested;
  if (n > MAX_NESTED_REPETITION) throw invalidField(field, `${field} nests counted repetitions ({n,m}) to ${n} in all; at most ${MAX_NESTED_REPETITION}`);
  return p;
}

function grammar(value: unknown, field: string): string {
  const g = text(value, field, "a grammar in xgrammar's EBNF (GBNF), its start rule named root");
  const n = repetition(g, true).all;
  if (n > MAX_GRAMMAR_REPETITION) throw invalidField(field, `${field}'s counted repetitions ({n,m}) multiply to ${n}; at most ${MAX_GRAMMAR_REPETITION}`);
  return g;
}

/**
 * The counted repetitions of a regular expression or EBNF text: the largest product along one
 * nesting of groups (`nested`) and the product of them all (`all`). Escapes, character classes
 * and (in EBNF, `quoted`) string literals are skipped.
 */
function repetition(source: string, quoted: boolean): { nested: number; all: number } {
  // Per open group, the largest product inside it so far.
  const groups: number[] = [1];
  let last = 1;
  let nested = 1;
  let all = 1;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      i++;
      last = 1;
    } else if (c === '[' || (quoted && c === '"')) {
      const close = c === '[' ? ']' : '"';
      for (i++; i < source.length && source[i] !== close; i++) if (source[i] === '\\') i++;
      last = 1;
    } else if (c === '(') {
      groups.push(1);
    } else if (c === ')') {
      last = groups.length > 1 ? groups.pop()! : 1;
      groups[groups.length - 1] = Math.max(groups.at(-1)!, last);
    } else if (c === '{') {
      const m = /^\{(\d{0,9})(?:,(\d{0,9}))?\}/.exec(source.slice(i, i + 24));
      if (!m) continue;
      const bound = Math.max(Number(m[1] || 0), Number(m[2] || 0), 1);
      last *= bound;
      all *= bound;
      nested = Math.max(nested, last);
      groups[groups.length - 1] = Math.max(groups.at(-1)!, last);
      i += m[0].length - 1;
    } else last = 1;
  }
  return { nested, all };
}

/**
 * A JSON schema's shape, checked before the grammar engine sees it: its size, depth, `type`
 * names, `enum` and `required` lists, and that each `$ref` points inside the schema (`#` or
 * `#/…`). The 400 names the path, e.g. `response_format.json_schema.schema.properties.age.type`.
 */
export function checkSchema(schema: unknown, field: string): unknown {
  if (typeof schema === 'boolean') return schema;
  if (!isObject(schema)) throw invalidField(field, `${field} must be a JSON schema (an object)`);
  const size = JSON.stringify(schema).length;
  if (size > MAX_GUIDE_CHARS) throw invalidField(field, `the schema has ${size} characters as JSON; at most ${MAX_GUIDE_CHARS}`);
  const walk = (node: unknown, at: string, depth: number): void => {
    if (typeof node === 'boolean') return;
    if (!isObject(node)) throw invalidField(at, `${at} must be a schema (an object or a boolean)`);
    if (depth > MAX_SCHEMA_DEPTH) throw invalidField(at, `the schema nests deeper than ${MAX_SCHEMA_DEPTH} levels here`);
    const type = node.type;
    if (type !== undefined) {
      const names = Array.isArray(type) ? type : [type];
      const bad = names.find((t) => typeof t !== 'string' || !TYPES.has(t));
      if (names.length === 0 || bad !== undefined) throw invalidField(`${at}.type`, `type must be one of ${[...TYPES].join(', ')} (or a list of them), got ${JSON.stringify(bad ?? type)}`);
    }
    if (node.pattern !== undefined) {
      if (typeof node.pattern !== 'string') throw invalidField(`${at}.pattern`, 'pattern must be a regular expression (a string)');
      pattern(node.pattern, `${at}.pattern`);
    }
    if (node.enum !== undefined && (!Array.isArray(node.enum) || node.enum.length === 0)) throw invalidField(`${at}.enum`, 'enum must be a non-empty list of values');
    if (node.required !== undefined && (!Array.isArray(node.required) || !node.required.every((r) => typeof r === 'string'))) throw invalidField(`${at}.required`, 'required must be a list of property names');
    if (node.$ref !== undefined) {
      if (typeof node.$ref !== 'string' || resolve(schema, node.$ref) === undefined) throw invalidField(`${at}.$ref`, `$ref must point inside the schema ("#" or "#/$defs/name"), and ${JSON.stringify(node.$ref)} does not`);
    }
    for (const k of ONE_SCHEMA) if (node[k] !== undefined) walk(node[k], `${at}.${k}`, depth + 1);
    for (const k of SCHEMA_LISTS) {
      if (node[k] === undefined) continue;
      const list = node[k];
      if (!Array.isArray(list) || list.length === 0) throw invalidField(`${at}.${k}`, `${k} must be a non-empty list of schemas`);
      list.forEach((s, i) => walk(s, `${at}.${k}[${i}]`, depth + 1));
    }
    for (const k of SCHEMA_MAPS) {
      if (node[k] === undefined) continue;
      const map = node[k];
      if (!isObject(map)) throw invalidField(`${at}.${k}`, `${k} must map names to schemas`);
      for (const [name, s] of Object.entries(map)) walk(s, `${at}.${k}.${name}`, depth + 1);
    }
  };
  walk(schema, field, 0);
  return schema;
}

/** The schema a local `$ref` points at, or undefined. */
function resolve(root: Record<string, unknown>, ref: string): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    if (!isObject(node) || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
