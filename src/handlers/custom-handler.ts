// Custom handlers (a .js/.mjs module in the model directory): how one is named, and the
// operator's permission to run one. Its own module: the worker process checks the permission again
// before it imports the code, without loading the API's request parsers (admission.ts).
import { EaselError } from '../errors/easel-error.js';
import type { ModelSpec } from '../models/model-spec.js';

function isCustomHandler(name: string): boolean {
  return /\.(m?js)$/.test(name);
}

/** Throws unless a handler that is not one of `builtIns` is a custom module the operator allows. */
export function checkCustomHandler(spec: ModelSpec, allowCustomHandlers: boolean, builtIns: readonly string[]): void {
  if (!isCustomHandler(spec.handler)) {
    throw new EaselError('EASEL_MODEL_INVALID', `model ${spec.name}: unknown handler "${spec.handler}"; built-in handlers: ${builtIns.join(', ')}, or a .js/.mjs module in the model directory`, { field: 'handler' });
  }
  if (!allowCustomHandlers) {
    throw new EaselError('EASEL_FORBIDDEN', `model ${spec.name} uses the custom handler ${spec.handler}; custom handlers run arbitrary code and are loaded only with --allow-custom-handlers`, { field: 'handler' });
  }
}
