// Admission, in the API process: each built-in handler's pure `parse(input)` turns a request's
// raw fields into the request it will run (defaults filled, seed drawn), or throws a 400 naming
// the field. Built from the model's spec and its files' JSON configs at registration, so a model
// whose easel.yaml cannot make a valid request is refused there. Nothing here loads a session.
import { EaselError, invalidField } from '../errors/easel-error.js';
import type { ModelParameters, TextTools } from '../models/model-control.js';
import type { ModelEntry, ModelSpec } from '../models/model-spec.js';
import { checkCustomHandler } from './custom-handler.js';
import { checkDraft, parseTextGeneration, textGenerationParameters, textGenerationRules, textTools } from './text-generation-request.js';
import { parseTextToImage, textToImageParameters, textToImageRules } from './text-to-image-request.js';

/** A request's fields as the client sent them → the validated request the worker runs. */
export type RequestParser = (input: Readonly<Record<string, unknown>>) => Record<string, unknown>;

export interface Admission extends ModelParameters {
  readonly parse: RequestParser;
  /** A text model's tokenizer, as its parse uses it. */
  readonly text?: TextTools | undefined;
}

export type BatchingMode = 'none' | 'request' | 'step';

/** What a handler supports, declared once here: the scheduling layer reads it, never a handler's name. */
export interface HandlerBatching {
  readonly modes: readonly BatchingMode[];
  /** The mode when easel.yaml names none; else request-level when batchSize > 1. */
  readonly preferred?: BatchingMode | undefined;
}

interface BuiltInAdmission {
  admission(entry: ModelEntry): { parse: RequestParser; parameters: Record<string, unknown>; text?: TextTools };
  batching: HandlerBatching;
  /** Request-level batching: requests batch together only with equal keys. */
  batchKey?(request: Readonly<Record<string, unknown>>): string;
}

/** A custom handler gets batches of requests (TorchServe's batchSize), never a step API. */
const CUSTOM_BATCHING: HandlerBatching = { modes: ['none', 'request'] };

const TENSOR_FIELDS = ['data', 'inputs'];

// A Map: a model's `handler: constructor` is an unknown name, not Object's constructor.
const BUILT_INS: ReadonlyMap<string, BuiltInAdmission> = new Map<string, BuiltInAdmission>([
  [
    'tensor',
    {
      // The graph's inputs are known only to the worker's session: here, the request's shape.
      admission: () => ({
        parse: (input) => {
          const unknown = Object.keys(input).filter((k) => !TENSOR_FIELDS.includes(k));
          if (unknown.length > 0) throw invalidField(unknown[0]!, `unknown field ${unknown.join(', ')}; the tensor handler takes data (a number array) or inputs (named tensors)`);
          if (input.data === undefined && input.inputs === undefined) throw invalidField('data', 'send "data" (a number array) or "inputs" (named tensors)');
          return { ...input };
        },
        parameters: { fields: TENSOR_FIELDS },
      }),
      batching: { modes: ['none', 'request'] },
    },
  ],
  [
    'text-to-image',
    {
      admission: ({ spec, dir }) => {
        const rules = textToImageRules(spec, dir);
        return { parse: (input) => ({ ...parseTextToImage(input, rules) }), parameters: textToImageParameters(rules) };
      },
      // Step-level by default (a step API: diffusionSteps); request-level on request.
      batching: { modes: ['none', 'request', 'step'], preferred: 'step' },
      // The usual diffusion batcher: same resolution and step count.
      batchKey: (r) => `${String(r.width)}x${String(r.height)}/${String(r.num_inference_steps)}`,
    },
  ],
  [
    'text-generation',
    {
      admission: (entry) => {
        // A draft model is checked against this one when the model is registered.
        if (entry.spec.speculative) checkDraft(entry);
        const rules = textGenerationRules(entry.spec, entry.dir);
        return { parse: (input) => ({ ...parseTextGeneration(input, rules) }), parameters: textGenerationParameters(rules), text: textTools(rules) };
      },
      // Iteration-level (continuous) batching by default: the decoder's step API.
      batching: { modes: ['none', 'request', 'step'], preferred: 'step' },
    },
  ],
]);

export const BUILT_IN_HANDLER_NAMES: readonly string[] = [...BUILT_INS.keys()];

/** DeepSpeed-MII's task names (setup_config.json) → the handler that serves each. */
export const TASKS: ReadonlyMap<string, string> = new Map([
  ['text-generation', 'text-generation'],
  ['text-to-image', 'text-to-image'],
]);

/** Throws unless the spec names a built-in handler, or a custom module the operator allows. */
export function checkHandler(spec: ModelSpec, allowCustomHandlers: boolean): void {
  const mode = spec.batching.mode;
  if (mode !== undefined && !handlerBatching(spec.handler).modes.includes(mode)) {
    throw new EaselError('EASEL_MODEL_INVALID', `model ${spec.name}: the ${spec.handler} handler does not support batching mode "${mode}"; it supports ${handlerBatching(spec.handler).modes.join(', ')}`, { field: 'batching.mode' });
  }
  if (spec.speculative && spec.handler !== 'text-generation') {
    throw new EaselError('EASEL_MODEL_INVALID', `model ${spec.name}: speculative decoding is for the text-generation handler, not ${spec.handler}`, { field: 'speculative' });
  }
  if (!BUILT_INS.has(spec.handler)) checkCustomHandler(spec, allowCustomHandlers, BUILT_IN_HANDLER_NAMES);
}

/**
 * The model's admission: its request parser and public parameters. A custom handler's code runs
 * only in its workers, so its requests pass here as the JSON the body parser bounded (depth,
 * keys, size), and its preprocess validates.
 */
export function admission(entry: ModelEntry): Admission {
  const builtIn = BUILT_INS.get(entry.spec.handler);
  if (!builtIn) return { task: null, parse: (input) => ({ ...input }), parameters: {} };
  return { task: entry.spec.handler, ...builtIn.admission(entry) };
}

/** The batching modes a handler supports. */
export function handlerBatching(handler: string): HandlerBatching {
  return BUILT_INS.get(handler)?.batching ?? CUSTOM_BATCHING;
}

/** The request-level batching key of an admitted request, when its handler has one. */
export function batchKey(spec: ModelSpec, request: Readonly<Record<string, unknown>>): string | undefined {
  return BUILT_INS.get(spec.handler)?.batchKey?.(request);
}
