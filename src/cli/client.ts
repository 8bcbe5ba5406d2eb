// The client commands: `easel generate` (submit a job, show a live progress bar fed by the job's
// event stream, save the image) and `easel jobs list|get|cancel`. They use the public HTTP API only.
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
async function follow(url: string, id: string, onProgress: (step: number, total: number) => void): Promise<JobView> {
  const res = await fetch(`${url}/v1/jobs/${id}/events`, { headers: { accept: 'text/event-stream' } });
  if (!res.ok || !res.body) throw new ClientError(`cannot follow job ${id}: HTTP ${res.status}`);
  let last: JobView | undefined;
  const parser = createParser({
    onEvent(event) {
      const data = JSON.parse(event.data) as Record<string, unknown>;
      if (event.event === 'progress') onProgress(data.step as number, data.total as number);
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
  let final: JobView;
  try {
    final = await follow(o.url, job.id, (step, total) => {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.setTotal(total);
      bar.update(step);
    });
  } finally {
    if (started) bar.stop();
    process.off('SIGINT', onInterrupt);
  }
  if (final.status !== 'succeeded') {
    throw new ClientError(`job ${job.id} ${final.status}${final.error ? `: ${final.error.code}: ${final.error.message}` : ''}`);
  }
  const output = final.outputs[0];
  if (!output) throw new ClientError(`job ${job.id} succeeded without an output`);
  const res = await fetch(`${o.url}${output.url}`);
  if (!res.ok) throw new ClientError(`cannot fetch ${output.url}: HTTP ${res.status}`);
  const extension = output.content_type.split('/')[1]?.replace('jpeg', 'jpg') ?? 'bin';
  const file = o.output ?? `easel-${job.id.slice(0, 8)}.${extension}`;
  await writeFile(file, new Uint8Array(await res.arrayBuffer()));
  return file;
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
