// The client commands: `easel generate` (submit a job, show a live progress bar fed by the job's
// event stream — or, for a text model, print its tokens as they come — and save the result),
// `easel chat` (a chat completion streamed to the terminal) and `easel jobs list|get|cancel`.
// They use the public HTTP API only.
import { writeFile } from 'node:fs/promises';
import { SingleBar } from 'cli-progress';
import { createParser } from 'eventsource-parser';

interface JobView {
  id: string;
  status: string;
  model: string;
  progress: { step: number; total: number } | null;
  error: { code: string; message: string } | null;
  outputs: { url: string; content_type: string }[];
  input: Record<string, unknown>;
  created_at: string;
}

export interface GenerateOptions {
  url: string;
  model: string;
  output?: string | undefined;
  steps?: number | undefined;
  seed?: number | undefined;
  guidance?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  scheduler?: string | undefined;
  negativePrompt?: string | undefined;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
}

export class ClientError extends Error {}

async function call<T>(url: string, init?: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new ClientError(`cannot reach ${new URL(url).origin}: ${(err as Error).message}; is \`easel serve\` running there (--url)?`);
  }
  const body = (await res.json().catch(() => ({}))) as T & { code?: string; message?: string };
  if (!res.ok) throw new ClientError(`${res.status} ${body.code ?? ''}: ${body.message ?? res.statusText}`);
  return body;
}

/** Follows a job's SSE stream until it ends; returns its final state. */
async function follow(url: string, id: string, onProgress: (step: number, total: number) => void, onToken: (text: string) => void): Promise<JobView> {
  // From the job's first event: a fast text model may have made tokens before this connected.
  const res = await fetch(`${url}/v1/jobs/${id}/events`, { headers: { accept: 'text/event-stream', 'last-event-id': '0' } });
  if (!res.ok || !res.body) throw new ClientError(`cannot follow job ${id}: HTTP ${res.status}`);
  let last: JobView | undefined;
  const parser = createParser({
    onEvent(event) {
      const data = JSON.parse(event.data) as Record<string, unknown>;
      if (event.event === 'progress') onProgress(data.step as number, data.total as number);
      if (event.event === 'token' && typeof data.text === 'string') onToken(data.text);
      if (event.event === 'status') last = data as unknown as JobView;
    },
  });
  const decoder = new TextDecoder();
  for await (const chunk of res.body) parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
  return last ?? (await call<JobView>(`${url}/v1/jobs/${id}`));
}

export async function generate(prompt: string, o: GenerateOptions): Promise<string> {
  const input: Record<string, unknown> = { prompt };
  const fields: [string, unknown][] = [
    ['num_inference_steps', o.steps],
    ['seed', o.seed],
    ['guidance_scale', o.guidance],
    ['width', o.width],
    ['height', o.height],
    ['scheduler', o.scheduler],
    ['negative_prompt', o.negativePrompt],
    ['max_new_tokens', o.maxTokens],
    ['temperature', o.temperature],
  ];
  for (const [key, value] of fields) if (value !== undefined) input[key] = value;
  const job = await call<JobView>(`${o.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: o.model, input }) });

  // Ctrl-C cancels the job on the server, not just the command.
  const onInterrupt = (): void => {
    void fetch(`${o.url}/v1/jobs/${job.id}`, { method: 'DELETE' }).finally(() => process.exit(130));
  };
  process.once('SIGINT', onInterrupt);
  const bar = new SingleBar({
    format: `${o.model} |{bar}| {percentage}% | step {value}/{total} | {duration_formatted}`,
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 500,
    hideCursor: true,
  });
  let started = false;
  let streamed = false;
  let final: JobView;
  try {
    final = await follow(
      o.url,
      job.id,
      (step, total) => {
        if (!started) {
          bar.start(total, 0);
          started = true;
        }
        bar.setTotal(total);
        bar.update(step);
      },
      // A text model: its tokens, as they are made.
      (text) => {
        streamed = true;
        process.stdout.write(text);
      },
    );
  } finally {
    if (started) bar.stop();
    if (streamed) process.stdout.write('\n');
    process.off('SIGINT', onInterrupt);
  }
  if (final.status !== 'succeeded') {
    throw new ClientError(`job ${job.id} ${final.status}${final.error ? `: ${final.error.code}: ${final.error.message}` : ''}`);
  }
  const output = final.outputs[0];
  if (!output) throw new ClientError(`job ${job.id} succeeded without an output`);
  const res = await fetch(`${o.url}${output.url}`);
  if (!res.ok) throw new ClientError(`cannot fetch ${output.url}: HTTP ${res.status}`);
  const subtype = output.content_type.split(';')[0]!.split('/')[1];
  const extension = subtype === 'plain' ? 'txt' : (subtype?.replace('jpeg', 'jpg') ?? 'bin');
  const file = o.output ?? `easel-${job.id.slice(0, 8)}.${extension}`;
  await writeFile(file, new Uint8Array(await res.arrayBuffer()));
  return file;
}

export interface ChatOptions {
  url: string;
  model: string;
  system?: string | undefined;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  seed?: number | undefined;
}

/** One chat turn through POST /v1/chat/completions, its tokens printed as they arrive. Returns the answer's usage line. */
export async function chat(message: string, o: ChatOptions): Promise<string> {
  const messages = [...(o.system ? [{ role: 'system', content: o.system }] : []), { role: 'user', content: message }];
  const body = { model: o.model, messages, stream: true, stream_options: { include_usage: true }, max_tokens: o.maxTokens, temperature: o.temperature, seed: o.seed };
  let res: Response;
  try {
    res = await fetch(`${o.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch (err) {
    throw new ClientError(`cannot reach ${o.url}: ${(err as Error).message}; is \`easel serve\` running there (--url)?`);
  }
  if (!res.ok || !res.body) {
    const e = ((await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } }).error;
    throw new ClientError(`${res.status} ${e?.code ?? ''}: ${e?.message ?? res.statusText}`);
  }
  let usage = '';
  const parser = createParser({
    onEvent(event) {
      if (event.data === '[DONE]') return;
      const chunk = JSON.parse(event.data) as { choices: { delta: { content?: string } }[]; usage?: { prompt_tokens: number; completion_tokens: number }; error?: { message: string } };
      if (chunk.error) throw new ClientError(chunk.error.message);
      const text = chunk.choices[0]?.delta.content;
      if (text) process.stdout.write(text);
      if (chunk.usage) usage = `(${chunk.usage.prompt_tokens} prompt tokens, ${chunk.usage.completion_tokens} generated)`;
    },
  });
  const decoder = new TextDecoder();
  for await (const part of res.body) parser.feed(decoder.decode(part as Uint8Array, { stream: true }));
  process.stdout.write('\n');
  return usage;
}

export async function listJobs(url: string, filter: { status?: string | undefined; model?: string | undefined; limit?: number | undefined }): Promise<string> {
  const query = new URLSearchParams();
  const { status, model, limit } = filter;
  for (const [key, value] of Object.entries({ status, model, limit })) if (value !== undefined) query.set(key, String(value));
  const page = await call<{ jobs: JobView[] }>(`${url}/v1/jobs?${query.toString()}`);
  const rows = page.jobs.map((j) => [j.id, j.model, j.status, j.progress ? `${j.progress.step}/${j.progress.total}` : '-', j.created_at]);
  const header = ['ID', 'MODEL', 'STATUS', 'PROGRESS', 'CREATED'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export async function getJob(url: string, id: string): Promise<string> {
  return JSON.stringify(await call<JobView>(`${url}/v1/jobs/${id}`), null, 2);
}

export async function cancelJob(url: string, id: string): Promise<string> {
  const job = await call<JobView>(`${url}/v1/jobs/${id}`, { method: 'DELETE' });
  return `${job.id} ${job.status}${job.status === 'running' ? ' (stops at its next step)' : ''}`;
}
