// Request bodies: JSON bounded in depth and key count before it is held as a tree (a body nested
// thousands deep would overflow the stack of whoever walks it: serializers, IPC, SQLite), with
// `__proto__` kept as a plain key; and the content types each port accepts, others → 415.
import type { FastifyInstance } from 'fastify';
import { EaselError } from '../errors/easel-error.js';

export interface JsonLimits {
  /** Objects and arrays nested deeper than this are refused. */
  maxJsonDepth: number;
  /** Object keys in the whole document beyond this are refused (array elements are bounded by the body size). */
  maxJsonKeys: number;
}

const OPEN_OBJECT = 0x7b; // {
const OPEN_ARRAY = 0x5b; // [
const CLOSE_OBJECT = 0x7d; // }
const CLOSE_ARRAY = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const COLON = 0x3a; // :

/**
 * Parses JSON after one linear scan checks its depth and key count, so a hostile document is
 * refused before a tree is built. Native JSON.parse makes `"__proto__"` an own property, never
 * the prototype; schemas then refuse it as an unknown key.
 */
export function parseJsonBounded(text: string, limits: JsonLimits): unknown {
  let depth = 0;
  let keys = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > limits.maxJsonDepth) throw badJson(`the JSON body is nested deeper than ${limits.maxJsonDepth} levels`);
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) depth--;
    else if (c === COLON && ++keys > limits.maxJsonKeys) throw badJson(`the JSON body has more than ${limits.maxJsonKeys} keys`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badJson(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

function badJson(message: string): EaselError {
  return new EaselError('EASEL_BAD_REQUEST', message, { field: 'body' });
}

/** Replaces Fastify's JSON parser with the bounded one (every port). */
export function installJsonParser(app: FastifyInstance, limits: JsonLimits): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    // No route takes it: the router's 404 (or 405), not a complaint about a body nothing would read.
    if (req.is404) {
      done(null, undefined);
      return;
    }
    if (body === '') {
      done(new EaselError('EASEL_BAD_REQUEST', 'the JSON body is empty', { field: 'body' }), undefined);
      return;
    }
    try {
      done(null, parseJsonBounded(body as string, limits));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  // Text only where a route takes it (/predictions registers its own); elsewhere 415 naming what is accepted.
  app.removeContentTypeParser('text/plain');
}

/** The media types /predictions takes, besides JSON and multipart (registered by @fastify/multipart). */
export const PREDICTION_MEDIA_TYPES = ['application/json', 'multipart/form-data', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream'] as const;

/** Text (a prompt, or JSON sent with curl -d) and raw bytes for /predictions, as TorchServe takes them. */
export function installPredictionParsers(app: FastifyInstance): void {
  const asString = { parseAs: 'string' } as const;
  app.addContentTypeParser('text/plain', asString, (_req, body, done) => done(null, body));
  app.addContentTypeParser('application/x-www-form-urlencoded', asString, (_req, body, done) => done(null, body));
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
}
