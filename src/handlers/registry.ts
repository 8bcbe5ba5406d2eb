// Built-in handlers by name (in the worker process), and loading a custom handler module from a model directory when
// the operator allows it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EaselError } from '../errors/easel-error.js';
import type { ModelSpec } from '../models/model-spec.js';
import { checkHandler } from './admission.js';
import type { Handler } from './handler.js';

/**
 * Each built-in handler's module is imported by the worker that serves one: a text model's worker
 * does not hold the diffusion pipelines (its heap after loading 12.5 -> 10.6 MB, which V8 marks
 * every few tens to hundreds of milliseconds under onnxruntime-node's output copies; 12 MB less
 * resident). A Map: a user's "constructor" is an unknown name, not Object's constructor.
 */
const FACTORIES: ReadonlyMap<string, () => Promise<Handler>> = new Map<string, () => Promise<Handler>>([
  ['tensor', async () => new (await import('./tensor-handler.js')).TensorHandler()],
  ['text-to-image', async () => new (await import('./text-to-image-handler.js')).TextToImageHandler()],
  ['text-generation', async () => new (await import('./text-generation-handler.js')).TextGenerationHandler()],
]);

export async function loadHandler(spec: ModelSpec, modelDir: string, allowCustomHandlers: boolean): Promise<Handler> {
  checkHandler(spec, allowCustomHandlers);
  const builtIn = FACTORIES.get(spec.handler);
  if (builtIn) return builtIn();
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
