// Route schema helpers (zod, through fastify-type-provider-zod): every route declares its body,
// query and params with these, so admission refuses a bad request with a 400 naming the field
// and what is allowed, and the OpenAPI document is generated from the same schemas.
import { z } from 'zod';

/** An object that refuses unknown keys, naming them and the keys it takes. */
export function strictObject<T extends z.ZodRawShape>(shape: T): z.ZodObject<T, z.core.$strict> {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown ${issue.keys.length > 1 ? 'fields' : 'field'} ${issue.keys.join(', ')}; allowed: ${allowed}` : undefined),
  });
}

/** An integer query parameter in [min, max] (query values arrive as strings). */
export function intQuery(name: string, min: number, max: number): z.ZodPipe<z.ZodString, z.ZodTransform<number, string>> {
  const message = `${name} must be an integer from ${min} to ${max}`;
  return z
    .string()
    .regex(/^-?\d{1,10}$/, { error: message })
    .transform((v, ctx) => {
      const n = Number(v);
      if (n < min || n > max) ctx.issues.push({ code: 'custom', message: `${message}, got ${v}`, input: v });
      return n;
    });
}

/** A boolean query parameter: true/false/1/0. */
export function boolQuery(name: string): z.ZodPipe<z.ZodEnum<{ true: 'true'; false: 'false'; '1': '1'; '0': '0' }>, z.ZodTransform<boolean, string>> {
  return z.enum(['true', 'false', '1', '0'], { error: `${name} must be true or false` }).transform((v) => v === 'true' || v === '1');
}

/** A name in a path (model, version): bounded, so a long one is a 404 or 400, never work. */
export const pathName = z.string().min(1).max(256);
/** A job id in a path. */
export const jobId = z.string().min(1).max(128);

/**
 * A JSON object passed through as it is (a record schema would rebuild it and silently drop a
 * `__proto__` key; the handler's parse must see it, and refuse it as unknown).
 */
export const jsonObject = z
  .custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v), { error: 'must be a JSON object' })
  .meta({ type: 'object', additionalProperties: true });
