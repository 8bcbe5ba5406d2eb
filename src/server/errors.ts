// Errors → HTTP, in one place: EaselErrors keep their code and status; Fastify's own errors map
// to our codes; anything else is a plain 500, logged and never leaked.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EaselError, isEaselError, type ErrorCode } from '../errors/easel-error.js';

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'EASEL_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'EASEL_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'EASEL_BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'EASEL_BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'EASEL_BAD_REQUEST',
  FST_ERR_VALIDATION: 'EASEL_BAD_REQUEST',
  FST_REQ_FILE_TOO_LARGE: 'EASEL_BODY_TOO_LARGE',
  FST_FILES_LIMIT: 'EASEL_BODY_TOO_LARGE',
  FST_PARTS_LIMIT: 'EASEL_BODY_TOO_LARGE',
  FST_FIELDS_LIMIT: 'EASEL_BODY_TOO_LARGE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'EASEL_UNSUPPORTED_MEDIA_TYPE',
  FST_PROTO_VIOLATION: 'EASEL_BAD_REQUEST',
};

export function toEaselError(err: unknown): EaselError | undefined {
  if (isEaselError(err)) return err;
  const fe = err as Partial<FastifyError> & { type?: string };
  const code = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (code) return new EaselError(code, fe.message ?? code);
  if (err instanceof SyntaxError || fe.type === 'entity.parse.failed') return new EaselError('EASEL_BAD_REQUEST', `the body is not valid JSON: ${(err as Error).message}`);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) return new EaselError('EASEL_BAD_REQUEST', fe.message ?? 'bad request', fe.statusCode);
  return undefined;
}

export function sendError(reply: FastifyReply, err: EaselError): FastifyReply {
  if (err.retryAfterSeconds !== undefined) void reply.header('Retry-After', String(err.retryAfterSeconds));
  return reply.code(err.status).type('application/json').send({ code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) });
}

/** Error handling and JSON 404/405 for one Fastify instance. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const e = toEaselError(err);
    if (e) return sendError(reply, e);
    req.log.error({ err }, 'unhandled error');
    return sendError(reply, new EaselError('EASEL_INTERNAL', 'internal server error'));
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new EaselError('EASEL_NOT_FOUND', `no route for ${req.method} ${req.url.split('?')[0]}`)));
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
