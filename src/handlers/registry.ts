// Built-in handlers by name, and loading a custom handler module from a model directory when
// the operator allows it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EaselError } from '../errors/easel-error.js';
import type { ModelSpec } from '../models/model-spec.js';
import type { Handler, HandlerFactory } from './handler.js';
import { TensorHandler } from './tensor-handler.js';
import { TextToImageHandler } from './text-to-image-handler.js';

export const BUILT_IN_HANDLERS: Readonly<Record<string, HandlerFactory>> = Object.freeze({
  tensor: () => new TensorHandler(),
  'text-to-image': () => new TextToImageHandler(),
});

/**
 * The request-level batching compatibility key a handler chooses: requests batch together only
 * with equal keys. text-to-image batches by resolution and step count (the usual diffusion
 * batcher); step-level batching needs no key (the step loop mixes them).
 */
export function batchKey(spec: ModelSpec, input: Readonly<Record<string, unknown>>): string | undefined {
  if (spec.handler !== 'text-to-image') return undefined;
  const field = (name: string): unknown => input[name] ?? spec.defaults[name] ?? '';
  return `${String(field('width'))}x${String(field('height'))}/${String(field('num_inference_steps'))}`;
}

export function isCustomHandler(name: string): boolean {
  return /\.(m?js)$/.test(name);
}

/** Throws unless the spec names a built-in handler, or a custom module the operator allows. */
export function checkHandler(spec: ModelSpec, allowCustomHandlers: boolean): void {
  if (BUILT_IN_HANDLERS[spec.handler]) return;
  if (!isCustomHandler(spec.handler)) {
    throw new EaselError('EASEL_MODEL_INVALID', `model ${spec.name}: unknown handler "${spec.handler}"; built-in handlers: ${Object.keys(BUILT_IN_HANDLERS).join(', ')}, or a .js/.mjs module in the model directory`, 400, { field: 'handler' });
  }
  if (!allowCustomHandlers) {
    throw new EaselError('EASEL_FORBIDDEN', `model ${spec.name} uses the custom handler ${spec.handler}; custom handlers run arbitrary code and are loaded only with --allow-custom-handlers`, 403, { field: 'handler' });
  }
}

export async function loadHandler(spec: ModelSpec, modelDir: string, allowCustomHandlers: boolean): Promise<Handler> {
  checkHandler(spec, allowCustomHandlers);
  const builtIn = BUILT_IN_HANDLERS[spec.handler];
  if (builtIn) return builtIn();
  const file = path.resolve(modelDir, spec.handler);
  if (!file.startsWith(path.resolve(modelDir) + path.sep) || !existsSync(file)) {
    throw new EaselError('EASEL_MODEL_INVALID', `model ${spec.name}: handler module ${spec.handler} is not a file inside the model directory`, 400, { field: 'handler' });
  }
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown; createHandler?: unknown };
  const factory = mod.createHandler ?? mod.default;
  if (typeof factory !== 'function') {
    throw new EaselError('EASEL_MODEL_INVALID', `handler module ${spec.handler} must export createHandler() or a default handler factory`, 400, { field: 'handler' });
  }
  return (factory as () => Handler)();
}
