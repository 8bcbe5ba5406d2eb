// Built-in handlers by name (in the worker process), and loading a custom handler module from a model directory when
// the operator allows it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EaselError } from '../errors/easel-error.js';
import type { ModelSpec } from '../models/model-spec.js';
import { checkCustomHandler } from './custom-handler.js';
import type { Handler } from './handler.js';

/**
 * Each built-in handler's module is imported by the worker that serves one: a text model's worker
 * does not hold the diffusion pipelines, nor (the API's admission checked the spec at
 * registration) the request parsers of every handler and the zod schemas they import: a
 * tiny-llama worker streaming at one stream holds ~8 MB of heap after a full mark instead of
 * ~11.6, and V8 marked it 1-3 times in 4 s instead of 10-11 (each ~20 ms of marking, on the
 * worker's thread for a small model). A Map: a user's "constructor" is an unknown name, not
 * Object's constructor.
 */
const FACTORIES: ReadonlyMap<string, () => Promise<Handler>> = new Map<string, () => Promise<Handler>>([
  ['tensor', async () => new (await import('./tensor-handler.js')).TensorHandler()],
  ['text-to-image', async () => new (await import('./text-to-image-handler.js')).TextToImageHandler()],
  ['text-generation', async () => new (await import('./text-generation-handler.js')).TextGenerationHandler()],
]);

export async function loadHandler(spec: ModelSpec, modelDir: string, allowCustomHandlers: boolean): Promise<Handler> {
  const builtIn = FACTORIES.get(spec.handler);
  if (builtIn) return builtIn();
  // Checked again here, where the code would run.
  checkCustomHandler(spec, allowCustomHandlers, [...FACTORIES.keys()]);
  const file = path.resolve(modelDir, spec.handler);
  if (!file.startsWith(path.resolve(modelDir) + path.sep) || !existsSync(file)) {
    throw new EaselError('EASEL_MODEL_INVALID', `model ${spec.name}: handler module ${spec.handler} is not a file inside the model directory`, { field: 'handler' });
  }
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown; createHandler?: unknown };
  const factory = mod.createHandler ?? mod.default;
  if (typeof factory !== 'function') {
    throw new EaselError('EASEL_MODEL_INVALID', `handler module ${spec.handler} must export createHandler() or a default handler factory`, { field: 'handler' });
  }
  return (factory as () => Handler)();
}
