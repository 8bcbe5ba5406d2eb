// OpenAI's API on the inference port, as vLLM serves it: GET /v1/models, POST /v1/completions,
// POST /v1/chat/completions (stream: true as SSE `data:` chunks ending in `data: [DONE]`) and
// POST /v1/images/generations and /v1/images/edits (multipart: image, mask) for text-to-image models. Each choice is one prediction through
// the work queue; errors answer in OpenAI's {"error": {message, type, param, code}} shape.
import { randomUUID } from 'node:crypto';
import multipart from '@fastify/multipart';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { EaselError, isEaselError } from '../errors/easel-error.js';
import type { WorkEvent } from '../jobs/work-event.js';
import type { Metrics } from '../metrics/metrics.js';
import type { TokenLogprob } from '../models/model-control.js';
import { toEaselError } from './errors.js';
import { multipartFields } from './inference-routes.js';
import { countRequests } from './request-metrics.js';
import { ToolCallStream, type ParsedToolCall } from '../handlers/tool-calls.js';
import { admitPrediction, assertServed, clientGone, modelParameters, predict, textToolsOf, type PredictOptions } from './predict.js';
import { jsonObject, pathName, strictObject } from './schemas.js';
import { streamWrite } from './stream-write.js';

export interface OpenAiRouteOptions extends PredictOptions {
  isDraining(): boolean;
  metrics: Metrics;
  /** A multipart body (images/edits) at most. */
  maxBodyBytes: number;
}

/** What a text model's JSON answer carries (the text-generation handler's Accept: application/json form). */
interface Generated {
  text: string;
  finish_reason: 'stop' | 'length' | 'tool_calls';
  /** With tools: the answer's calls, and its text around them (null: none). */
  tool_calls?: ParsedToolCall[];
  content?: string | null;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  logprobs?: TokenLogprob[];
  /** With echo and logprobs: the prompt's tokens scored (the first null). */
  prompt_logprobs?: TokenLogprob[];
}

const stop = z.union([z.string(), z.array(z.string()).max(8)]).optional().nullable();
const sampling = {
  model: pathName.describe('a registered text model'),
  max_tokens: z.number().int().min(0).optional().nullable(),
  temperature: z.number().min(0).max(2).optional().nullable(),
  top_p: z.number().gt(0).max(1).optional().nullable(),
  top_k: z.number().int().min(-1).optional().nullable(),
  min_p: z.number().min(0).max(1).optional().nullable(),
  n: z.number().int().min(1).max(16).optional().nullable(),
  stream: z.boolean().optional().nullable(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).optional().nullable(),
  stop,
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional().nullable(),
  presence_penalty: z.number().min(-2).max(2).optional().nullable(),
  frequency_penalty: z.number().min(-2).max(2).optional().nullable(),
  repetition_penalty: z.number().positive().optional().nullable(),
  logit_bias: z.record(z.string(), z.number()).optional().nullable(),
  stop_token_ids: z.array(z.number().int().min(0)).max(64).optional().nullable(),
  // vLLM's extras, honoured as /predictions honours them.
  min_tokens: z.number().int().min(0).optional().nullable(),
  ignore_eos: z.boolean().optional().nullable(),
  user: z.string().optional(),
  // Structured outputs (guided decoding; the text-generation handler checks the schema itself).
  response_format: z
    .union([
      strictObject({ type: z.literal('text') }),
      strictObject({ type: z.literal('json_object') }),
      strictObject({
        type: z.literal('json_schema'),
        json_schema: strictObject({ name: z.string().max(64), description: z.string().optional(), schema: jsonObject.optional(), strict: z.boolean().optional().nullable() }),
      }),
    ])
    .optional()
    .nullable(),
  // vLLM's guided decoding fields.
  guided_json: z.union([jsonObject, z.string()]).optional().nullable(),
  guided_regex: z.string().optional().nullable(),
  guided_choice: z.array(z.string()).optional().nullable(),
  guided_grammar: z.string().optional().nullable(),
  // Fields OpenAI defines that Easel does not honour: refused, never silently ignored.
  functions: refused('functions', 'function calling is not supported'),
  function_call: refused('function_call', 'function calling is not supported'),
};
const completionBody = strictObject({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).min(1).max(16), z.array(z.number().int().min(0)).min(1), z.array(z.array(z.number().int().min(0)).min(1)).min(1).max(16)]),
  logprobs: z.number().int().min(0).max(20).optional().nullable(),
  echo: z.boolean().optional(),
  suffix: refused('suffix', 'insertion (a suffix after the completion) is not supported'),
  tools: refused('tools', 'tools are offered to chat models: use /v1/chat/completions'),
  tool_choice: refused('tool_choice', 'tools are offered to chat models: use /v1/chat/completions'),
  best_of: z.literal(1, { error: 'best_of must be 1 (choosing the best of several completions is not supported; ask for n of them)' }).optional().nullable(),
});
/** The chat roles a message may have. */
const role = z.enum(['system', 'user', 'assistant', 'developer', 'tool']);
const toolCall = strictObject({ id: z.string().max(256), type: z.literal('function'), function: strictObject({ name: z.string().max(64), arguments: z.string() }) });
const chatBody = strictObject({
  ...sampling,
  messages: z
    .array(
      strictObject({
        role: role,
        // An assistant turn that called functions may have no text.
        content: z.union([z.string(), z.array(jsonObject)]).nullable().optional(),
        name: z.string().optional(),
        tool_calls: z.array(toolCall).max(64).optional().nullable(),
        tool_call_id: z.string().max(256).optional(),
      }),
    )
    .min(1)
    .max(256),
  // Tool calling (the text-generation handler checks the functions' schemas itself).
  tools: z.array(jsonObject).max(64).optional().nullable(),
  tool_choice: z.union([z.enum(['none', 'auto', 'required']), jsonObject]).optional().nullable(),
  parallel_tool_calls: z.boolean().optional().nullable(),
  max_completion_tokens: z.number().int().min(1).optional().nullable(),
  logprobs: z.boolean().optional().nullable(),
  top_logprobs: z.number().int().min(0).max(20).optional().nullable(),
});
const tokenizeBody = strictObject({
  model: pathName,
  prompt: z.string().optional(),
  messages: z.array(strictObject({ role: role, content: z.string() })).min(1).max(256).optional(),
  add_special_tokens: z.boolean().optional(),
  // The chat template is always applied ready for the assistant's turn.
  add_generation_prompt: z.literal(true).optional(),
});
const detokenizeBody = strictObject({ model: pathName, tokens: z.array(z.number().int().min(0)).max(65_536) });
const imagesBody = strictObject({
  model: pathName,
  prompt: z.string().min(1).max(4000),
  n: z.number().int().min(1).max(10).optional(),
  size: z.string().regex(/^\d{1,5}x\d{1,5}$/, { error: 'size must be WIDTHxHEIGHT, e.g. 64x64' }).optional(),
  response_format: z.enum(['b64_json']).optional(),
  seed: z.number().int().min(0).optional(),
  user: z.string().optional(),
});

/** images/edits' form fields (the image and mask are files, the rest text). */
const editsForm = strictObject({
  model: pathName,
  prompt: z.string().min(1).max(4000),
  image: z.instanceof(Uint8Array, { error: 'image must be a file part (an image as PNG, JPEG or WebP)' }),
  mask: z.instanceof(Uint8Array, { error: 'mask must be a file part (a PNG whose transparent pixels mark what to repaint)' }).optional(),
  n: z.coerce.number().int().min(1).max(10).optional(),
  size: imagesBody.shape.size,
  response_format: imagesBody.shape.response_format,
  seed: z.coerce.number().int().min(0).optional(),
  user: z.string().optional(),
});

type Sampling = z.infer<typeof completionBody> | z.infer<typeof chatBody>;

/** Tokens' scores in a chat choice's (or chunk's) `logprobs` shape. */
function chatLogprobs(scores: readonly TokenLogprob[]): unknown {
  const bytes = (token: string): number[] => [...Buffer.from(token)];
  return { content: scores.map((l) => ({ token: l.token, logprob: l.logprob, bytes: bytes(l.token), top_logprobs: (l.top_logprobs ?? []).map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytes(t.token) })) })) };
}

/** Tokens' scores in a completion choice's (or chunk's) `logprobs` shape; text offsets count on from `offset` (as vLLM's). */
function completionLogprobs(scores: readonly TokenLogprob[], offset: number): unknown {
  let at = offset;
  const textOffset = scores.map((l) => (at += l.token.length) - l.token.length);
  return { tokens: scores.map((l) => l.token), token_logprobs: scores.map((l) => l.logprob), top_logprobs: scores.map((l) => (l.top_logprobs ? Object.fromEntries(l.top_logprobs.map((t) => [t.token, t.logprob])) : null)), text_offset: textOffset };
}

/** A field OpenAI defines that Easel refuses (400 naming it and why) rather than ignores. */
function refused(field: string, why: string): z.ZodOptional<z.ZodUnknown> {
  return z.unknown().refine((v) => v === undefined || v === null, { error: `${field}: ${why}; this server refuses it rather than ignore it` }).optional();
}

/** OpenAI's error shape; the type says whose fault it was. */
function openAiError(err: EaselError, requestId: string): { error: { message: string; type: string; param: string | null; code: string } } {
  const type = err.status >= 500 ? 'server_error' : err.status === 404 ? 'not_found_error' : err.status === 401 ? 'authentication_error' : err.status === 503 ? 'overloaded_error' : 'invalid_request_error';
  return { error: { message: err.status >= 500 && err.code === 'EASEL_INTERNAL' ? `internal error (request ${requestId})` : err.message, type, param: err.field ?? null, code: err.code } };
}

/** The text-generation fields of one choice. */
function generationInput(b: Sampling, index: number): Record<string, unknown> {
  const input: Record<string, unknown> = { stream: true };
  const set = (key: string, v: unknown): void => {
    if (v !== undefined && v !== null) input[key] = v;
  };
  // Named as the client named it, so that a 400 names the field the client sent.
  set('max_tokens', ('max_completion_tokens' in b ? b.max_completion_tokens : undefined) ?? b.max_tokens);
  set('temperature', b.temperature);
  set('top_p', b.top_p);
  if (b.top_k !== undefined && b.top_k !== null && b.top_k > 0) input.top_k = b.top_k;
  set('min_p', b.min_p);
  set('presence_penalty', b.presence_penalty);
  set('frequency_penalty', b.frequency_penalty);
  set('repetition_penalty', b.repetition_penalty);
  set('logit_bias', b.logit_bias);
  set('stop', b.stop);
  set('stop_token_ids', b.stop_token_ids);
  set('min_tokens', b.min_tokens);
  set('ignore_eos', b.ignore_eos);
  for (const field of ['response_format', 'guided_json', 'guided_regex', 'guided_choice', 'guided_grammar'] as const) set(field, b[field]);
  // n choices from one seed: each its own, reproducible.
  if (b.seed !== undefined && b.seed !== null) input.seed = (b.seed + index) % 2 ** 32;
  return input;
}

/**
 * The text routes' body limit: a prompt is at most 100,000 characters (less for a small context),
 * and a body is parsed on the API process's event loop (about 10 ms a MB here) before anything
 * else can refuse it.
 */
const TEXT_BODY_BYTES = 256 * 1024;

export async function openAiRoutes(app: FastifyInstance, o: OpenAiRouteOptions): Promise<void> {
  countRequests(app, o.metrics);
  // These routes answer errors as OpenAI's clients expect them.
  app.setErrorHandler((err: FastifyError | EaselError, req, reply) => {
    const e = isEaselError(err) ? err : (toEaselError(err) ?? new EaselError('EASEL_INTERNAL', 'internal error'));
    if (!isEaselError(err) && !toEaselError(err)) req.log.error({ err }, 'unexpected error');
    if (e.retryAfterSeconds !== undefined) void reply.header('retry-after', String(e.retryAfterSeconds));
    return reply.code(e.status).send(openAiError(e, String(req.id)));
  });

  // OpenAI's model object, with Easel's own `easel: {task, parameters}` (what a form may offer:
  // defaults, limits, schedulers; null where this node does not know the model's handler).
  const model = (id: string): Record<string, unknown> => {
    const parameters = modelParameters(o, id);
    // vLLM's max_model_len: a text model's context, for clients that size requests by it.
    const context = (parameters?.parameters as { context_length?: unknown } | undefined)?.context_length;
    return { id, object: 'model', created: 0, owned_by: 'easel', ...(typeof context === 'number' ? { max_model_len: context } : {}), easel: parameters ?? null };
  };
  app.get('/v1/models', { schema: { summary: "The models served (OpenAI list shape), each with its task and request parameters in `easel`." } }, async () => {
    const names = new Set([...o.control.list().map((m) => m.modelName), ...(await o.jobs.models())]);
    return { object: 'list', data: [...names].sort().map(model) };
  });
  app.get('/v1/models/:model', { schema: { summary: 'One served model (OpenAI shape), with its task and request parameters in `easel`.', params: z.object({ model: pathName }) } }, async (req) => {
    const { model: id } = req.params as { model: string };
    await assertServed(o, id, undefined);
    return model(id);
  });

  /** `echoes[i]`: text that choice i starts with (a completion's prompt, with `echo`). */
  const run = async (req: FastifyRequest, reply: FastifyReply, b: Sampling, inputs: Record<string, unknown>[], chat: boolean, echoes: readonly string[] = []): Promise<FastifyReply | undefined> => {
    if (o.isDraining()) throw new EaselError('EASEL_SHUTTING_DOWN', 'the server is shutting down and accepts no new requests', { retryAfterSeconds: 5 });
    await assertServed(o, b.model, undefined, req);
    const task = modelParameters(o, b.model)?.task;
    if (task !== undefined && task !== 'text-generation') {
      throw new EaselError('EASEL_INVALID_PARAMETER', `model ${b.model} is a ${task} model; ${chat ? '/v1/chat/completions' : '/v1/completions'} serves text-generation models`, { field: 'model' });
    }
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const object = chat ? 'chat.completion' : 'text_completion';
    // Each distinct prompt is tokenized once, however many choices (n) it has: the copies carry its tokens.
    const tokenized = new Map<string, Record<string, unknown>>();
    for (const input of inputs) {
      // A prompt given as token ids is admitted as it is (its ids checked).
      if (input.prompt_tokens !== undefined) continue;
      const text = JSON.stringify(input.messages ?? input.prompt);
      if (!tokenized.has(text)) tokenized.set(text, admitPrediction(o, b.model, undefined, input));
      const admitted = tokenized.get(text)!;
      if (admitted.prompt_tokens === undefined) continue;
      delete input.messages;
      delete input.prompt;
      input.prompt_tokens = admitted.prompt_tokens;
      // The tools are in the prompt now: what is left of them is the guide and the choice (their admitted forms).
      if (input.tools !== undefined) {
        for (const field of ['tools', 'tool_choice', 'parallel_tool_calls']) delete input[field];
        for (const field of ['tool_choice', 'guide']) if (admitted[field] !== undefined) input[field] = admitted[field];
      }
    }
    const signal = clientGone(reply);
    const call = (input: Record<string, unknown>, onEvent?: (e: WorkEvent) => void): Promise<Generated> =>
      predict(o, { model: b.model, input, accept: 'application/json', signal, onEvent }).then((r) => JSON.parse(Buffer.from(r.data).toString('utf8')) as Generated);
    const logprobsOf = (g: Generated): unknown => {
      if (!g.logprobs && !g.prompt_logprobs) return null;
      // With echo, the prompt's tokens come first (the first unscored: null), then the completion's.
      return chat ? chatLogprobs(g.logprobs ?? []) : completionLogprobs([...(g.prompt_logprobs ?? []), ...(g.logprobs ?? [])], 0);
    };
    // Each prompt counts once, however many choices (n) it had.
    const perPrompt = Math.max(1, b.n ?? 1);
    const usage = (all: Generated[]): Record<string, number> => {
      const prompt = all.filter((_, i) => i % perPrompt === 0).reduce((n, g) => n + g.usage.prompt_tokens, 0);
      const completion = all.reduce((n, g) => n + g.usage.completion_tokens, 0);
      return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    };
    if (!b.stream) {
      const all = await Promise.all(inputs.map((input) => call(input)));
      return reply.send({
        id, object, created, model: b.model,
        choices: all.map((g, index) => (chat ? { index, message: g.tool_calls ? { role: 'assistant', content: g.content ?? null, tool_calls: g.tool_calls } : { role: 'assistant', content: g.text }, logprobs: logprobsOf(g), finish_reason: g.finish_reason } : { index, text: (echoes[index] ?? '') + g.text, logprobs: logprobsOf(g), finish_reason: g.finish_reason })),
        usage: usage(all),
      });
    }
    // Streamed: each choice's text deltas as chunks, then its finish reason; usage last if asked.
    const chunkObject = chat ? 'chat.completion.chunk' : 'text_completion';
    let started = false;
    const send = (payload: unknown): void => {
      if (!started) {
        started = true;
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      }
      if (!reply.raw.writableEnded) streamWrite(reply.raw, `data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`);
    };
    // With tools, each choice's text passes through a splitter that holds a call back until it is whole.
    const callsExpected = chat && 'tools' in b && Array.isArray(b.tools) && b.tool_choice !== 'none';
    const chunk = (index: number, delta: Record<string, unknown> | string, finish: string | null, logprobs: unknown = null): unknown =>
      chat ? { id, object: chunkObject, created, model: b.model, choices: [{ index, delta, logprobs, finish_reason: finish }] } : { id, object: chunkObject, created, model: b.model, choices: [{ index, text: delta, logprobs, finish_reason: finish }] };
    try {
      const all = await Promise.all(
        inputs.map(async (input, index) => {
          if (chat) send(chunk(index, { role: 'assistant', content: '' }, null));
          if (echoes[index]) send(chunk(index, echoes[index], null));
          // A chunk's logprobs are its tokens' (text offsets count from the completion's start).
          let offset = (echoes[index] ?? '').length;
          const splitter = callsExpected ? new ToolCallStream() : undefined;
          let calls = 0;
          // A call streams as OpenAI's tool-call delta: its index, id, name and arguments, whole.
          const sendParts = (parts: ReturnType<ToolCallStream['push']>, logprobs: unknown): void => {
            for (const part of parts) {
              if ('text' in part) send(chunk(index, { content: part.text }, null, logprobs));
              else send(chunk(index, { tool_calls: [{ index: calls++, ...part.call }] }, null, logprobs));
              logprobs = null;
            }
          };
          const g = await call(input, (e) => {
            if (e.type !== 'token' || typeof e.data.text !== 'string') return;
            const scores = Array.isArray(e.data.logprobs) ? (e.data.logprobs as TokenLogprob[]) : undefined;
            if (e.data.text.length === 0 && !scores?.length) return;
            const logprobs = scores ? (chat ? chatLogprobs(scores) : completionLogprobs(scores, offset)) : null;
            offset += e.data.text.length;
            if (splitter) sendParts(splitter.push(e.data.text), logprobs);
            else send(chunk(index, chat ? { content: e.data.text } : e.data.text, null, logprobs));
          });
          if (splitter) sendParts(splitter.end(), null);
          send(chunk(index, chat ? {} : '', g.finish_reason));
          return g;
        }),
      );
      if (b.stream_options?.include_usage) send({ id, object: chunkObject, created, model: b.model, choices: [], usage: usage(all) });
      send('[DONE]');
      reply.raw.end();
      return undefined;
    } catch (err) {
      if (!started) throw err;
      // Headers are gone: the error travels as a last event, as OpenAI's servers do.
      const e = isEaselError(err) ? err : new EaselError('EASEL_INTERNAL', 'internal error');
      send(openAiError(e, String(req.id)));
      reply.raw.end();
      return undefined;
    }
  };

  app.post('/v1/completions', { bodyLimit: TEXT_BODY_BYTES, schema: { summary: 'Text completion (OpenAI).', body: completionBody } }, async (req, reply) => {
    const b = req.body as z.infer<typeof completionBody>;
    // A string, strings, token ids (as vLLM and OpenAI take them), or lists of token ids.
    const prompts: (string | number[])[] = typeof b.prompt === 'string' ? [b.prompt] : typeof b.prompt[0] === 'number' ? [b.prompt as number[]] : (b.prompt as (string | number[])[]);
    const n = b.n ?? 1;
    // Prompt log-probabilities are not computed: echo gives the prompt's text, not its logprobs.
    // max_tokens 0 scores a prompt without generating (lm-evaluation-harness's log-likelihoods): with echo only.
    if (b.max_tokens === 0 && !b.echo) throw new EaselError('EASEL_INVALID_PARAMETER', 'max_tokens 0 needs echo: true (the prompt is scored, nothing generated)', { field: 'max_tokens' });
    const scorePrompt = b.echo === true && b.logprobs !== undefined && b.logprobs !== null;
    const inputs = prompts.flatMap((prompt) =>
      // logprobs: 0 asks for the chosen tokens' log-probabilities with no alternatives.
      Array.from({ length: n }, (_, i) => ({
        ...generationInput(b, i), ...(typeof prompt === 'string' ? { prompt } : { prompt_tokens: prompt }),
        ...(b.logprobs !== undefined && b.logprobs !== null ? { logprobs: true, top_logprobs: b.logprobs } : {}),
        ...(scorePrompt ? { prompt_logprobs: b.logprobs } : {}),
      })),
    );
    // Echo gives a prompt's text; token ids are decoded for it.
    const echoed = (prompt: string | number[]): string => (typeof prompt === 'string' ? prompt : textToolsOf(o, b.model, '/v1/completions').detokenize(prompt));
    return run(req, reply, b, inputs, false, b.echo ? prompts.flatMap((prompt) => Array.from({ length: n }, () => echoed(prompt))) : []);
  });

  // vLLM's tokenizer routes: a prompt's (or a chat's) token ids as the model's admission makes them, and ids back to text.
  app.post('/tokenize', { bodyLimit: TEXT_BODY_BYTES, schema: { summary: "A prompt's or a chat's token ids, as the model encodes them (vLLM).", body: tokenizeBody } }, async (req) => {
    const b = req.body as z.infer<typeof tokenizeBody>;
    await assertServed(o, b.model, undefined, req);
    const text = textToolsOf(o, b.model, '/tokenize');
    if ((b.prompt === undefined) === (b.messages === undefined)) throw new EaselError('EASEL_INVALID_PARAMETER', 'send one of "prompt" (a string) or "messages"', { field: 'prompt' });
    const tokens = text.tokenize({ prompt: b.prompt, messages: b.messages, addSpecialTokens: b.add_special_tokens });
    return { count: tokens.length, max_model_len: text.contextLength, tokens };
  });
  app.post('/detokenize', { bodyLimit: TEXT_BODY_BYTES, schema: { summary: 'The text of token ids (vLLM).', body: detokenizeBody } }, async (req) => {
    const b = req.body as z.infer<typeof detokenizeBody>;
    await assertServed(o, b.model, undefined, req);
    return { prompt: textToolsOf(o, b.model, '/detokenize').detokenize(b.tokens) };
  });

  app.post('/v1/chat/completions', { bodyLimit: TEXT_BODY_BYTES, schema: { summary: 'Chat completion through the model\'s chat template (OpenAI).', body: chatBody } }, async (req, reply) => {
    const b = req.body as z.infer<typeof chatBody>;
    if (b.top_logprobs && !b.logprobs) throw new EaselError('EASEL_INVALID_PARAMETER', 'top_logprobs needs logprobs: true', { field: 'top_logprobs' });
    const messages = b.messages.map((m) => ({ role: m.role, content: m.content ?? null, ...(m.tool_calls ? { tool_calls: m.tool_calls } : {}), ...(m.tool_call_id ? { tool_call_id: m.tool_call_id } : {}) }));
    const tools = b.tools ? { tools: b.tools, ...(b.tool_choice ? { tool_choice: b.tool_choice } : {}), ...(typeof b.parallel_tool_calls === 'boolean' ? { parallel_tool_calls: b.parallel_tool_calls } : {}) } : b.tool_choice ? { tool_choice: b.tool_choice } : {};
    const inputs = Array.from({ length: b.n ?? 1 }, (_, i) => ({
      ...generationInput(b, i), messages, ...tools,
      ...(b.logprobs ? { logprobs: true, ...(b.top_logprobs ? { top_logprobs: b.top_logprobs } : {}) } : {}),
    }));
    return run(req, reply, b, inputs, true);
  });

  /** One prediction of n PNGs, answered as OpenAI's images list. */
  const images = async (reply: FastifyReply, model: string, input: Record<string, unknown>): Promise<FastifyReply> => {
    const result = await predict(o, { model, input, accept: 'application/json', signal: clientGone(reply) });
    const parts = result.parts ?? [result];
    return reply.send({ created: Math.floor(Date.now() / 1000), data: parts.map((p) => ({ b64_json: Buffer.from(p.data).toString('base64') })) });
  };
  const sizeFields = (size: string | undefined): Record<string, number> => {
    const [width, height] = (size ?? '').split('x').map(Number);
    return size ? { width: width!, height: height! } : {};
  };

  app.post('/v1/images/generations', { schema: { summary: 'Images from a text-to-image model (OpenAI): b64_json.', body: imagesBody } }, async (req, reply) => {
    const b = req.body as z.infer<typeof imagesBody>;
    await assertServed(o, b.model, undefined, req);
    return images(reply, b.model, { prompt: b.prompt, num_images: b.n ?? 1, output_format: 'png', ...sizeFields(b.size), ...(b.seed !== undefined ? { seed: b.seed } : {}) });
  });

  // images/edits is multipart (OpenAI's clients send the image and mask as files): the parser is this route's alone.
  await app.register(async (edits) => {
    await edits.register(multipart, { limits: { fileSize: o.maxBodyBytes, files: 2, fields: 16, parts: 18, fieldSize: 64 * 1024 } });
    edits.post('/v1/images/edits', { schema: { summary: 'Image edits (OpenAI): a multipart image, an optional mask whose transparent pixels are repainted, and a prompt; b64_json. Without a mask, image-to-image.' } }, async (req, reply) => {
      if (!req.isMultipart()) throw new EaselError('EASEL_BAD_REQUEST', 'images/edits takes multipart/form-data: image (a file), prompt and model, optionally mask (a file), n and size', { field: 'body' });
      const parsed = editsForm.safeParse(await multipartFields(req));
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        const field = issue.code === 'unrecognized_keys' ? issue.keys[0]! : String(issue.path[0] ?? 'body');
        throw new EaselError('EASEL_INVALID_PARAMETER', issue.code === 'unrecognized_keys' ? `unknown field ${field}; images/edits takes ${Object.keys(editsForm.shape).join(', ')}` : `${field}: ${issue.message}`, { field });
      }
      const b = parsed.data;
      await assertServed(o, b.model, undefined, req);
      // OpenAI's mask: transparent pixels mark what to repaint (diffusers' mask_image is white there).
      const mask = b.mask ? { mask_image: b.mask, mask_alpha: true } : {};
      return images(reply, b.model, { prompt: b.prompt, image: b.image, ...mask, num_images: b.n ?? 1, output_format: 'png', ...sizeFields(b.size), ...(b.seed !== undefined ? { seed: b.seed } : {}) });
    });
  });
}
