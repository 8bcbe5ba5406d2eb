// The `easel` command. The only module that wires the others together.
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { configSchema, envName, loadConfig, parseModelList, PACKAGE_ROOT } from '../config/config.js';
import { createArchive, type ArchiveFormat } from '../models/archive.js';
import type * as Client from './client.js';
import { serve } from './serve.js';
import { work } from './worker.js';

export const VERSION = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const collect = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got "${v}"`);
  return n;
};
const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`expected a number, got "${v}"`);
  return n;
};
/** Options shared by `serve` and `worker`: models, state, the job queue, logging. */
function nodeOptions(command: Command): Command {
  return command
    .addOption(new Option('--config <file>', 'YAML or JSON config file (keys as below, camelCase)').env('EASEL_CONFIG'))
    .addOption(new Option('--model-store <dir>', 'directory of model directories and archives (default: the bundled models/)'))
    .addOption(new Option('--models <name=path...>', 'models to load at start, NAME=PATH or PATH, comma- or space-separated (default: every model in the store)'))
    .addOption(new Option('--data-dir <dir>', 'where extracted archives and state are kept (default .easel)'))
    .addOption(new Option('--allowed-urls <regex...>', 'regular expressions that a remote model URL must match as a whole (default: none allowed)'))
    .addOption(new Option('--webhook-allowed-hosts <regex...>', 'regular expressions a webhook host (name or name:port) must match as a whole to be reached on an internal address (default: public addresses only)'))
    .addOption(new Option('--allow-custom-handlers', 'load handler modules shipped inside model archives (runs their code)'))
    .addOption(new Option('--max-archive-bytes <n>', 'largest total size a model archive may expand to (default 2 GiB)').argParser(int))
    .addOption(new Option('--worker-restart-backoff-ms <ms...>', 'delays before restarting a dead worker, one per consecutive failure (default 100,500,1000,2000,5000,10000)'))
    .addOption(new Option('--max-attempts <n>', 'runs a request or job gets when its worker (or worker node) dies under it; a text run goes on where it stopped (default 3: survives two crashes)').argParser(int))
    .addOption(new Option('--max-queue-length <n>', 'requests waiting per model before 503 (default 100)').argParser(int))
    .addOption(new Option('--shutdown-grace-ms <n>', 'on SIGTERM, how long in-flight requests may finish (default 30000)').argParser(int))
    .addOption(new Option('--queue <url>', 'job queue: embedded (SQLite in --data-dir, the default) or redis://host:port (distributed mode)'))
    .addOption(new Option('--artifact-dir <dir>', 'where job outputs are written (default <data-dir>/artifacts); nodes of one deployment share it'))
    .addOption(new Option('--artifact-url <s3-url>', 'job outputs in S3 (s3://bucket[/prefix]) instead of --artifact-dir; credentials from AWS_* variables or profiles'))
    .addOption(new Option('--s3-endpoint <url>', 'an S3-compatible endpoint other than AWS (MinIO, R2)'))
    .addOption(new Option('--job-lock-ms <n>', 'distributed mode: how long a dead worker node holds a job before another takes it (default 30000)').argParser(int))
    .addOption(new Option('--job-ttl-ms <n>', 'how long finished jobs and their outputs are kept (default 86400000, a day)').argParser(int))
    .addOption(new Option('--webhook-secret <secret>', 'signs webhook deliveries (HMAC-SHA256, Standard Webhooks headers); at least 16 characters'))
    .addOption(new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (default info)'))
    .addOption(new Option('--pool <name>', 'the worker pool of this node (spot, on-demand…): routing rules and cost metrics name it (default "default")'))
    .addOption(new Option('--price-per-hour <price>', 'what one worker of this node costs per hour: easel_cost_total (default 0)').argParser(Number))
    .addOption(new Option('--pool-rules <json>', 'which priority classes each pool takes, as JSON: {"spot": {"after": {"high": 30}}} (high work waits 30 s for another pool)').argParser((v: string) => JSON.parse(v) as unknown))
    .addOption(new Option('--profile-dir <dir>', 'profile the workers: each writes ONNX Runtime\'s profile of its sessions (Chrome trace JSON) and a V8 CPU profile (.cpuprofile, for flame graphs) here when it stops'))
    .addOption(new Option('--profile-cpu-only', 'with --profile-dir, only the CPU profiles: ONNX Runtime\'s own profiling records every node of every call and slows a small model many times over'));
}

/**
 * The config from flags (over environment, config file and defaults). Commander names each
 * option's value after the config key (--max-queue-length → maxQueueLength): the config schema
 * is the one list of keys; only values that need reshaping are named here.
 */
function configFrom(opts: Record<string, unknown>): ReturnType<typeof loadConfig> {
  const flags: Record<string, unknown> = {};
  for (const key of Object.keys(configSchema.shape)) if (opts[key] !== undefined) flags[key] = opts[key];
  if (opts.models) Object.assign(flags, { models: parseModelList(collect((opts.models as string[]).join(','))), loadAllModels: false });
  if (opts.workerRestartBackoffMs) flags.workerRestartBackoffMs = collect((opts.workerRestartBackoffMs as string[]).join(',')).map(Number);
  // Commander sets localWorkers: true unless --no-local-workers; only the flag should override.
  flags.localWorkers = opts.localWorkers === false ? false : undefined;
  return loadConfig({ file: opts.config as string | undefined, env: process.env, flags });
}

const DEFAULT_URL = process.env.EASEL_URL ?? 'http://localhost:8080';

/** Where the client commands find the server. */
const urlOption = (): Option => new Option('--url <url>', "the server's inference API (or EASEL_URL)").default(DEFAULT_URL);

/** What `generate` and `chat` share for text models. */
function samplingOptions(command: Command, maxTokensHelp: string): Command {
  return command.addOption(urlOption()).option('--max-tokens <n>', maxTokensHelp, int).option('--temperature <t>', 'text models: temperature (0: greedy)', num);
}

/**
 * Runs a client command, turning its errors into one line on stderr and exit code 1. The client
 * (and its progress bar) is imported here, not by `easel serve`.
 */
async function client(run: (c: typeof Client) => Promise<string>): Promise<void> {
  const c = await import('./client.js');
  try {
    console.log(await run(c));
  } catch (err) {
    if (!(err instanceof c.ClientError)) throw err;
    console.error(`easel: ${err.message}`);
    process.exitCode = 1;
  }
}

export function buildProgram(): Command {
  // Positional options: `easel archive --version 2.0` is the archive's version, not Easel's.
  const program = new Command('easel').description('Easel: a model server for generative AI on ONNX Runtime').version(VERSION).enablePositionalOptions();

  const helpAfter = `\nEvery option can also be set with an environment variable (--port → ${envName('port')}) or in the config file.\nPrecedence: flags, then environment, then config file, then defaults.`;
  nodeOptions(
    program
      .command('serve')
      .description('Serve models over the TorchServe-compatible inference (8080), management (8081) and metrics (8082) APIs, with async jobs.')
      .addOption(new Option('--host <host>', 'inference API address (default 0.0.0.0)'))
      .addOption(new Option('--port <port>', 'inference API port (default 8080)').argParser(int))
      .addOption(new Option('--management-host <host>', 'management API address (default 127.0.0.1; elsewhere needs --management-token)'))
      .addOption(new Option('--management-port <port>', 'management API port (default 8081)').argParser(int))
      .addOption(new Option('--management-token <token>', 'bearer token the management API requires'))
      .addOption(new Option('--api-keys-file <file>', 'require API keys on the inference API: a YAML file of {name, sha256, models?, rateLimitPerMinute?} (also EASEL_API_KEYS=name=key,...)'))
      .addOption(new Option('--max-auth-failures-per-minute <n>', 'wrong or missing API keys (or management tokens) one address may send in a minute; then 429 until the minute ends (default 20)').argParser(int))
      .addOption(new Option('--rate-limit-per-minute <n>', 'requests per minute per API key (or client address); 0: none (default)').argParser(int))
      .addOption(new Option('--cors-origins <origins>', 'origins allowed to call the inference API from a browser (comma-separated, or *)').argParser((v: string) => v.split(',').map((s) => s.trim()).filter(Boolean)))
      .addOption(new Option('--metrics-host <host>', 'metrics API address (default 127.0.0.1)'))
      .addOption(new Option('--metrics-port <port>', 'metrics API port (default 8082)').argParser(int))
      .addOption(new Option('--max-body-bytes <n>', 'largest request body (default 16 MiB)').argParser(int))
      .addOption(new Option('--max-job-input-bytes <n>', "a job's input as stored, uploaded bytes included (default 8 MiB); larger is 413").argParser(int))
      .addOption(new Option('--max-queued-jobs-per-key <n>', 'queued jobs one API key may have, every model together (default 1000); more answer 429').argParser(int))
      .addOption(new Option('--max-streams-per-client <n>', 'open event streams (SSE and WebSocket) per API key, or per address without keys (default 100); more answer 429').argParser(int))
      .addOption(new Option('--request-timeout-ms <n>', 'time a client has to send a whole request, headers and body, before 408 (default 60000)').argParser(int))
      .addOption(new Option('--max-connections <n>', "open connections of the inference port; at the limit the oldest idle one makes room (default 0: 60 % of the process's open-file limit, at most 8192)").argParser(int))
      .addOption(new Option('--max-json-depth <n>', 'JSON bodies nested deeper are refused with 400 (default 32)').argParser(int))
      .addOption(new Option('--sse-heartbeat-ms <n>', 'an SSE stream of job events sends a comment line this often (default 15000)').argParser(int))
      .addOption(new Option('--max-json-keys <n>', 'JSON bodies with more object keys are refused with 400 (default 1000)').argParser(int))
      .addOption(new Option('--max-queued-jobs <n>', 'queued jobs per model before POST /v1/jobs answers 503 (default 10000)').argParser(int))
      .addOption(new Option('--no-local-workers', 'API only: load no models here; jobs run on `easel worker` nodes (with --queue redis://)')),
  )
    .addHelpText('after', helpAfter)
    .action(async (opts: Record<string, unknown>) => {
      await serve(configFrom(opts));
    });

  nodeOptions(
    program
      .command('worker')
      .description('A worker node of the distributed mode: runs models and takes jobs from the shared Redis queue; HTTP for its metrics only.')
      .addOption(new Option('--metrics-host <host>', 'metrics API address (default 127.0.0.1)'))
      .addOption(new Option('--metrics-port <port>', 'metrics API port (default: any free port, logged in "easel worker ready"; give one for a fixed scrape target)').argParser(int)),
  )
    .addHelpText('after', helpAfter)
    .action(async (opts: Record<string, unknown>) => {
      await work(configFrom(opts));
    });

  program
    .command('archive')
    .description('Package a model directory into an .easel archive (the flags of torch-model-archiver).')
    .requiredOption('--model-name <name>', 'model name (the archive is <name>.easel)')
    .option('--version <version>', 'model version', '1.0')
    .option('--handler <handler>', 'built-in handler name, or a .js/.mjs module among the files')
    .option('--serialized-file <file>', 'the model file (e.g. model.onnx)')
    .option('--config-file <file>', 'easel.yaml or TorchServe model-config.yaml to include')
    .option('--extra-files <files>', 'comma-separated files or directories to include (a directory adds its contents)', collect, [])
    .requiredOption('--export-path <dir>', 'where to write the archive')
    .addOption(new Option('--archive-format <format>', 'archive format').choices(['tgz', 'zip', 'no-archive', 'default']).default('tgz'))
    .option('-f, --force', 'overwrite an existing archive', false)
    .action(async (opts: { modelName: string; version: string; handler?: string; serializedFile?: string; configFile?: string; extraFiles: string[]; exportPath: string; archiveFormat: string; force: boolean }) => {
      const out = await createArchive({
        modelName: opts.modelName, version: opts.version, handler: opts.handler, configFile: opts.configFile,
        extraFiles: [...(opts.serializedFile ? [opts.serializedFile] : []), ...opts.extraFiles], exportPath: opts.exportPath,
        format: (opts.archiveFormat === 'default' ? 'tgz' : opts.archiveFormat) as ArchiveFormat, force: opts.force, archiverVersion: VERSION,
      });
      console.log(out);
    });
  samplingOptions(program.command('generate'), 'text models: max_new_tokens')
    .description('Generate through a running server: submits a job, shows its progress (a text model\'s tokens as they come), saves the result.')
    .argument('<prompt>', 'what to draw (or the text to continue)')
    .option('--model <name>', 'a model on that server (text-to-image or text)', 'tiny-sd')
    .option('-o, --output <file>', 'where to save the image (default easel-<job id>.png)')
    .option('--steps <n>', 'num_inference_steps', int)
    .option('--seed <n>', 'seed (same seed, same image)', int)
    .option('--guidance <g>', 'guidance_scale', num)
    .option('--width <px>', 'width', int)
    .option('--height <px>', 'height', int)
    .option('--scheduler <name>', 'ddim, euler, euler_a, dpmpp_2m, lcm or pndm')
    .option('--negative-prompt <text>', 'what not to draw')
    .action(async (prompt: string, opts: { url: string; model: string; output?: string; steps?: number; seed?: number; guidance?: number; width?: number; height?: number; scheduler?: string; negativePrompt?: string; maxTokens?: number; temperature?: number }) => {
      await client(async (c) => `saved ${await c.generate(prompt, opts)}`);
    });
  samplingOptions(program.command('chat'), 'max_tokens')
    .description('Chat with a text model of a running server: the answer streams to the terminal (POST /v1/chat/completions).')
    .argument('<message...>', 'what to say')
    .option('--model <name>', 'a text model on that server', 'tiny-lm')
    .option('--system <text>', 'a system prompt')
    .option('--seed <n>', 'seed', int)
    .action(async (words: string[], opts: { url: string; model: string; system?: string; maxTokens?: number; temperature?: number; seed?: number }) => {
      await client((c) => c.chat(words.join(' '), opts));
    });

  const jobs = program.command('jobs').description('List, inspect and cancel jobs on a running server.');
  jobs
    .command('list')
    .addOption(urlOption())
    .option('--status <status>', 'queued, running, succeeded, failed or cancelled')
    .option('--model <name>', 'only this model\'s jobs')
    .option('--limit <n>', 'how many (newest first)', int, 20)
    .action(async (opts: { url: string; status?: string; model?: string; limit: number }) => client((c) => c.listJobs(opts.url, opts)));
  jobs
    .command('get')
    .argument('<id>')
    .addOption(urlOption())
    .action(async (id: string, opts: { url: string }) => client((c) => c.getJob(opts.url, id)));
  jobs
    .command('cancel')
    .argument('<id>')
    .addOption(urlOption())
    .action(async (id: string, opts: { url: string }) => client((c) => c.cancelJob(opts.url, id)));
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
