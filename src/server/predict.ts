// A synchronous prediction through the work queue, for every route that answers with a result
// (TorchServe's /predictions, OpenAI's completions): admission here in the API process (the
// handler's parse), the queue's length limit, then the non-durable lane and the wait.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { EaselError, errors } from '../errors/easel-error.js';
import type { Payload } from '../jobs/job.js';
import { awaitPrediction } from '../jobs/prediction.js';
import type { WorkEvent } from '../jobs/work-event.js';
import type { ModelControl, ModelParameters, TextTools } from '../models/model-control.js';
import type { ModelSpec } from '../models/model-spec.js';
import type { JobRoutesOptions } from './job-routes.js';

export interface PredictOptions {
  control: ModelControl;
  /** The work queue (with `Prefer: respond-async` a prediction becomes a job, as in Cog). */
  jobs: JobRoutesOptions;
  /** For a model this node does not load: its queue's length limit and response timeout. */
  defaultMaxQueueLength: number;
  defaultResponseTimeoutMs: number;
  /** Time of a stage of the serving path (admission), for easel_stage_seconds. */
  stage?(model: string, stage: string, seconds: number): void;
}

export interface PredictCall {
  model: string;
  version?: string | undefined;
  input: Record<string, unknown>;
  accept?: string | undefined;
  /** Aborted when the client goes away. */
  signal?: AbortSignal | undefined;
  /** The work's events while it runs (a text model's token events, for streaming). */
  onEvent?: ((e: WorkEvent) => void) | undefined;
}

/** The spec of a model loaded here; undefined when this node does not load it (or that version). */
export function localSpec(control: ModelControl, name: string, version: string | undefined): ModelSpec | undefined {
  try {
    return control.spec(name, version);
  } catch {
    return undefined;
  }
}

/** Aborts when the client goes away before its answer is written (the prediction is then cancelled). */
export function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** A model's task and request parameters: from its registration here, or the config's spec of a model run elsewhere. */
export function modelParameters(o: PredictOptions, name: string): ModelParameters | undefined {
  if (localSpec(o.control, name, undefined)) return o.control.parameters(name);
  const elsewhere = o.jobs.elsewhere?.(name);
  return elsewhere && { task: elsewhere.task, parameters: elsewhere.parameters };
}

/** A text model's tokenizer, where this node knows the model (here, or from its config); a 400 for another kind. */
export function textToolsOf(o: PredictOptions, model: string, route: string): TextTools {
  const tools = localSpec(o.control, model, undefined) ? o.control.textTools(model) : o.jobs.elsewhere?.(model)?.text;
  if (tools) return tools;
  const task = modelParameters(o, model)?.task;
  throw new EaselError('EASEL_INVALID_PARAMETER', `model ${model} is ${task ? `a ${task} model` : 'not a text model this node knows'}; ${route} serves text-generation models`, { field: 'model' });
}

/**
 * Throws the 404 unless some node serves the model: loaded here, or (distributed mode) announced
 * by a worker node. Called before a large body is read for its meaning.
 */
export async function assertServed(o: PredictOptions, model: string, version: string | undefined, req?: FastifyRequest): Promise<void> {
  if (localSpec(o.control, model, version) === undefined) {
    // A version this node does not have of a model it serves is a 404 (other nodes' versions are not known here).
    if ((version !== undefined && localSpec(o.control, model, undefined) !== undefined) || !(await o.jobs.modelKnown(model))) o.control.spec(model, version);
  }
  // Served: the request's metrics may name the model.
  if (req) req.servedModel = model;
}

/**
 * A result as one HTTP body: the parts of a several-output result (images) go into its JSON as
 * base64 `images` — the one place base64 is made, for a client that reads JSON.
 */
export function responseBody(result: Payload): Payload {
  if (!result.parts) return result;
  const described = JSON.parse(Buffer.from(result.data).toString('utf8')) as Record<string, unknown>;
  const body = { images: result.parts.map((p) => Buffer.from(p.data).toString('base64')), ...described };
  return { contentType: 'application/json', data: Buffer.from(JSON.stringify(body)) };
}

/** Admission: the input parsed by the model's handler, where this node knows it (here, or from its config for an API-only node). */
export function admitPrediction(o: PredictOptions, model: string, version: string | undefined, input: Record<string, unknown>): Record<string, unknown> {
  const spec = localSpec(o.control, model, version);
  const t0 = performance.now();
  const request = spec ? o.control.admit(model, version, input) : (o.jobs.elsewhere?.(model)?.parse(input) ?? { ...input });
  if (spec) o.stage?.(model, 'admission', (performance.now() - t0) / 1000);
  return request;
}

/** Admits, queues and waits for one prediction; any worker of the model, on any node, runs it. */
export async function predict(o: PredictOptions, call: PredictCall): Promise<Payload> {
  const { model, version } = call;
  const spec = localSpec(o.control, model, version);
  const request = admitPrediction(o, model, version, call.input);
  const queue = o.jobs.backend;
  const limit = spec?.maxQueueLength ?? o.defaultMaxQueueLength;
  if ((await queue.queuedCount(model, false)) >= limit) throw errors.queueFull(`queue for ${model}`, limit, 'requests waiting', 1);
  const timeoutMs = spec?.responseTimeoutMs ?? o.defaultResponseTimeoutMs;
  const { job } = await queue.submit({ durable: false, model, version, input: request, accept: call.accept, deadline: Date.now() + timeoutMs });
  return awaitPrediction(queue, job, { model, timeoutMs, queueTimeoutMs: spec?.batching.queueTimeoutMs, signal: call.signal, onEvent: call.onEvent });
}
