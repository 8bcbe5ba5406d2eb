// The playground's client of Easel's public HTTP API — the same routes any client uses: the
// OpenAI model list, /v1/jobs with its server-sent events, /v1/chat/completions, /ping.
import { createParser, type EventSourceMessage } from 'eventsource-parser';

const KEY_STORAGE = 'easel.apiKey';

/** An error as the API words it: its code, its message, and the request field it names. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string | undefined,
  ) {
    super(message);
  }
}

/** Told when the server asks for an API key (401), so the page can show its key field. */
let onKeyNeeded: () => void = () => {};
export function whenKeyNeeded(f: () => void): void {
  onKeyNeeded = f;
}

export function apiKey(): string {
  return localStorage.getItem(KEY_STORAGE) ?? '';
}

export function setApiKey(key: string): void {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  if (json) h['content-type'] = 'application/json';
  const key = apiKey();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

/** Easel's error shape ({code, message, field}) or OpenAI's ({error: {code, message, param}}). */
async function toError(res: Response): Promise<ApiError> {
  if (res.status === 401) onKeyNeeded();
  const body = (await res.json().catch(() => ({}))) as { code?: string; message?: string; field?: string; error?: { code?: string; message?: string; param?: string | null } };
  const e = body.error ?? { code: body.code, message: body.message, param: body.field };
  return new ApiError(res.status, e.code ?? `HTTP_${res.status}`, e.message ?? res.statusText, e.param ?? undefined);
}

async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(path, { ...init, headers: { ...headers(init.body !== undefined), ...(init.headers as Record<string, string> | undefined) } });
  if (!res.ok) throw await toError(res);
  return res;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await call(path)).json() as Promise<T>;
}

export async function postJson<T>(path: string, body: unknown): Promise<T> {
  return (await call(path, { method: 'POST', body: JSON.stringify(body) })).json() as Promise<T>;
}

export async function remove(path: string): Promise<void> {
  await call(path, { method: 'DELETE' });
}

export async function getBlob(path: string): Promise<Blob> {
  return (await call(path)).blob();
}

// ---- models

export interface TextToImageParameters {
  defaults: Record<string, unknown> & { num_inference_steps: number; guidance_scale: number; width: number; height: number; scheduler: string };
  limits: { max_inference_steps: number; max_width: number; max_height: number; max_num_images: number; max_guidance_scale: number };
  size_multiple: number;
  schedulers: string[];
  /** The model has a VAE encoder: an init image (and a mask) may be sent. */
  image_to_image?: boolean;
}

export interface TextGenerationParameters {
  defaults: Record<string, unknown>;
  context_length: number;
  chat: boolean;
}

export interface Model {
  id: string;
  easel: { task: string | null; parameters: Record<string, unknown> } | null;
}

export async function listModels(): Promise<Model[]> {
  return (await getJson<{ data: Model[] }>('/v1/models')).data;
}

// ---- jobs

export interface Job {
  id: string;
  model: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  queue_position: number | null;
  estimated_seconds: number | null;
  progress: { step: number; total: number; fraction: number } | null;
  error: { code: string; message: string; field?: string } | null;
  outputs: { url: string; content_type: string; bytes: number }[];
  input: Record<string, unknown>;
}

export type JobEvent =
  | { type: 'status'; data: Job }
  | { type: 'progress'; data: { step: number; total: number; fraction: number } }
  | { type: 'preview'; data: { content_type: string; data: string } };

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * Follows a job's server-sent events until its final status. A dropped stream is resumed with
 * Last-Event-ID (the server replays exactly what was missed); `signal` stops following.
 */
export async function followJob(id: string, onEvent: (e: JobEvent) => void, signal: AbortSignal): Promise<void> {
  let last: string | undefined;
  let done = false;
  while (!done && !signal.aborted) {
    try {
      const res = await call(`/v1/jobs/${id}/events`, { signal, headers: last ? { 'last-event-id': last } : {} });
      await readSse(res, signal, (m) => {
        if (m.id) last = m.id;
        const e = { type: m.event, data: JSON.parse(m.data) as unknown } as JobEvent;
        onEvent(e);
        if (e.type === 'status' && FINAL.has(e.data.status)) done = true;
      });
    } catch (err) {
      if (signal.aborted || (err instanceof ApiError && err.status < 500)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function readSse(res: Response, signal: AbortSignal, onMessage: (m: EventSourceMessage) => void): Promise<void> {
  const parser = createParser({ onEvent: onMessage });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const stop = (): void => void reader.cancel().catch(() => undefined);
  signal.addEventListener('abort', stop, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
    }
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

// ---- chat

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  /** An assistant turn's function calls. */
  tool_calls?: ToolCall[] | undefined;
  /** A tool turn: the call it answers. */
  tool_call_id?: string | undefined;
}

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

/** Streams a chat completion: each piece of text as it comes, each function call as it is made; resolves with the usage the server counted. */
export async function streamChat(body: Record<string, unknown>, onText: (text: string) => void, signal: AbortSignal, onToolCall?: (call: ToolCall) => void): Promise<ChatUsage | undefined> {
  const res = await call('/v1/chat/completions', { method: 'POST', body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }), signal });
  let usage: ChatUsage | undefined;
  try {
    await readSse(res, signal, (m) => {
      if (m.data === '[DONE]') return;
      const chunk = JSON.parse(m.data) as { choices: { delta: { content?: string; tool_calls?: (ToolCall & { index: number })[] } }[]; usage?: ChatUsage | null; error?: { message: string } };
      if (chunk.error) throw new ApiError(500, 'EASEL_STREAM_FAILED', chunk.error.message);
      const text = chunk.choices[0]?.delta.content;
      if (text) onText(text);
      // Easel sends each call whole, in one delta.
      for (const { index: _, ...call } of chunk.choices[0]?.delta.tool_calls ?? []) onToolCall?.(call);
      if (chunk.usage) usage = chunk.usage;
    });
  } catch (err) {
    if (!signal.aborted) throw err;
  }
  return usage;
}

export async function healthy(): Promise<boolean> {
  try {
    const res = await fetch('/ping');
    return res.ok;
  } catch {
    return false;
  }
}
