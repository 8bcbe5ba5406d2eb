// Errors → HTTP, in one place: EaselErrors keep their code and status; Fastify's own errors map
// to our codes; anything else is a plain 500, logged and never leaked.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EaselError, isEaselError, type ErrorCode } from '../errors/easel-error.js';
import { PREDICTION_MEDIA_TYPES } from './body-parsers.js';

// Fastify's own errors that a client can cause, mapped to ours (a Map: codes are looked up, not indexed).
const FASTIFY_CODES: ReadonlyMap<string, ErrorCode> = new Map<string, ErrorCode>([
  ['FST_ERR_CTP_BODY_TOO_LARGE', 'EASEL_BODY_TOO_LARGE'],
  ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 'EASEL_UNSUPPORTED_MEDIA_TYPE'],
  ['FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'EASEL_BAD_REQUEST'],
  ['FST_ERR_CTP_EMPTY_JSON_BODY', 'EASEL_BAD_REQUEST'],
  ['FST_ERR_CTP_INVALID_JSON_BODY', 'EASEL_BAD_REQUEST'],
  ['FST_ERR_CTP_EMPTY_TYPE', 'EASEL_UNSUPPORTED_MEDIA_TYPE'],
  ['FST_ERR_CTP_INVALID_TYPE', 'EASEL_UNSUPPORTED_MEDIA_TYPE'],
  ['FST_ERR_VALIDATION', 'EASEL_BAD_REQUEST'],
  ['FST_REQ_FILE_TOO_LARGE', 'EASEL_BODY_TOO_LARGE'],
  ['FST_FILES_LIMIT', 'EASEL_BODY_TOO_LARGE'],
  ['FST_PARTS_LIMIT', 'EASEL_BODY_TOO_LARGE'],
  ['FST_FIELDS_LIMIT', 'EASEL_BODY_TOO_LARGE'],
  ['FST_INVALID_MULTIPART_CONTENT_TYPE', 'EASEL_UNSUPPORTED_MEDIA_TYPE'],
  ['FST_PROTO_VIOLATION', 'EASEL_BAD_REQUEST'],
  ['FST_ERR_BAD_URL', 'EASEL_BAD_REQUEST'],
  ['FST_ERR_MAX_PARAM_LENGTH', 'EASEL_URI_TOO_LONG'],
  ['FST_ERR_ASYNC_CONSTRAINT', 'EASEL_BAD_REQUEST'],
]);

interface ValidationIssue {
  keyword: string;
  instancePath: string;
  message?: string;
  params?: { keys?: string[] };
}

/** A schema violation as one client error naming the field: `input.prompt`, `limit`, `body`. */
function validationError(issues: readonly ValidationIssue[], context: string | undefined): EaselError {
  const issue = issues[0];
  const where = context === 'querystring' ? 'query parameter' : context === 'params' ? 'path parameter' : context === 'headers' ? 'header' : 'field';
  const path = (issue?.instancePath ?? '').split('/').filter(Boolean).join('.');
  const unknownKey = issue?.keyword === 'unrecognized_keys' ? issue.params?.keys?.[0] : undefined;
  const field = unknownKey !== undefined ? (path ? `${path}.${unknownKey}` : unknownKey) : path || (context === 'body' ? 'body' : (context ?? 'body'));
  const message = issue?.message ?? 'is invalid';
  // A parameter out of its range is INVALID_PARAMETER; a body of the wrong shape is BAD_REQUEST.
  const code = context === 'querystring' || context === 'params' || (path !== '' && unknownKey === undefined) ? 'EASEL_INVALID_PARAMETER' : 'EASEL_BAD_REQUEST';
  return new EaselError(code, unknownKey !== undefined || !path ? message : `${where} ${field}: ${message}`, { field });
}

export function toEaselError(err: unknown): EaselError | undefined {
  if (isEaselError(err)) return err;
  const fe = err as Partial<FastifyError> & { type?: string };
  if (Array.isArray(fe.validation) && fe.validation.length > 0) return validationError(fe.validation as ValidationIssue[], fe.validationContext);
  const code = fe.code === undefined ? undefined : FASTIFY_CODES.get(fe.code);
  if (code) return new EaselError(code, fe.message ?? code);
  if (err instanceof SyntaxError || fe.type === 'entity.parse.failed') return new EaselError('EASEL_BAD_REQUEST', `the body is not valid JSON: ${(err as Error).message}`);
  // The static files' refusal of a path outside them (`/ui/../v1/models`): no such route, as for any other unknown path.
  if (fe.statusCode === 403 || fe.statusCode === 404) return new EaselError('EASEL_NOT_FOUND', 'no such route (paths are not resolved: "/ui/../x" is not "/x")');
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) return new EaselError('EASEL_BAD_REQUEST', fe.message ?? 'bad request');
  return undefined;
}

export function errorBody(err: EaselError): Record<string, unknown> {
  return { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) };
}

export function sendError(reply: FastifyReply, err: EaselError, extra: Record<string, unknown> = {}): FastifyReply {
  if (err.retryAfterSeconds !== undefined) void reply.header('Retry-After', String(err.retryAfterSeconds));
  return reply.code(err.status).type('application/json').send({ ...errorBody(err), ...extra });
}

/** Error handling and JSON 404/405 for one Fastify instance. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const e = toEaselError(err);
    if (e?.code === 'EASEL_UNSUPPORTED_MEDIA_TYPE' && !isEaselError(err)) {
      const accepted = req.url.startsWith('/predictions/') ? PREDICTION_MEDIA_TYPES.join(', ') : 'application/json';
      return sendError(reply, new EaselError(e.code, `unsupported Content-Type ${JSON.stringify(truncate(String(req.headers['content-type'] ?? ''), 100))}; accepted: ${accepted}`, { field: 'Content-Type' }));
    }
    if (e) return sendError(reply, e);
    // Details (stack, paths) stay in the log; the client gets the request id to quote.
    req.log.error({ err, requestId: req.id }, 'unhandled error');
    return sendError(reply, new EaselError('EASEL_INTERNAL', 'internal server error'), { request_id: req.id });
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new EaselError('EASEL_NOT_FOUND', `no route for ${req.method} ${truncate(req.url.split('?')[0] ?? '', 200)}`)));
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/**
 * Errors Node's HTTP parser finds before Fastify sees a request (headers too large, a malformed
 * request line) answered in Easel's shape, then the connection closed.
 */
export function clientErrorResponse(err: NodeJS.ErrnoException): string {
  const e =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new EaselError('EASEL_HEADERS_TOO_LARGE', 'the request headers are too large')
      : err.code === 'HPE_URI_TOO_LONG' || err.code === 'HPE_URL_TOO_LONG'
        ? new EaselError('EASEL_URI_TOO_LONG', 'the request URL is too long')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new EaselError('EASEL_REQUEST_TIMEOUT', 'the request (headers and body) did not arrive within the request timeout')
          : new EaselError('EASEL_BAD_REQUEST', 'the request could not be parsed as HTTP/1.1');
  const body = JSON.stringify(errorBody(e));
  const reason = new Map([[431, 'Request Header Fields Too Large'], [414, 'URI Too Long'], [408, 'Request Timeout']]).get(e.status) ?? 'Bad Request';
  return `HTTP/1.1 ${e.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

const ALL_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'] as const;

/** Answers 405 (with Allow) for the methods a path does not take. */
export function methodNotAllowed(app: FastifyInstance, url: string, allowed: readonly string[]): void {
  const others = ALL_METHODS.filter((m) => !allowed.includes(m) && !(m === 'HEAD' && allowed.includes('GET')));
  if (others.length === 0) return;
  app.route({
    method: [...others],
    url,
    handler: (req, reply) => {
      void reply.header('Allow', allowed.join(', '));
      return sendError(reply, new EaselError('EASEL_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url}; allowed: ${allowed.join(', ')}`));
    },
  });
}
