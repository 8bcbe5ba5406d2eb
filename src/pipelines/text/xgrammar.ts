// xgrammar (the grammar engine vLLM and SGLang use for guided decoding), from its WebAssembly
// build on npm, @mlc-ai/web-xgrammar.
//
// Why it is loaded by hand: the package declares `"type": "module"` but ships a UMD bundle.
// Node's `import` then reads the bundle as an ES module that exports nothing, and `require()`
// refuses a `.js` file of a `"type": "module"` package. So the bundle is run as the CommonJS
// script it is: compiled with CommonJS's wrapper arguments (exports, require, module,
// __filename, __dirname) by `vm.compileFunction`. Its Emscripten loader's one dynamic
// `import('module')` becomes the `require` it is given (a dynamic import in vm-compiled code needs
// an experimental flag or loader).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import type * as XG from '@mlc-ai/web-xgrammar';

export type Xgrammar = typeof XG;

let loaded: Promise<Xgrammar> | undefined;

/**
 * What the WebAssembly module last printed as an error: xgrammar reports why a schema or grammar
 * is refused there (`[FATAL] …: Unsupported type "objec"`) and throws a bare `Aborted()`.
 * Emscripten binds `console.error` when the module starts, so the sink is put in place then.
 */
let lastError = '';

/** The xgrammar module, loaded once per process. */
export function xgrammar(): Promise<Xgrammar> {
  loaded ??= start();
  return loaded;
}

async function start(): Promise<Xgrammar> {
  const require = createRequire(import.meta.url);
  const file = require.resolve('@mlc-ai/web-xgrammar');
  const source = readFileSync(file, 'utf8');
  const dynamicImport = "import('module')";
  if (source.split(dynamicImport).length !== 2) throw new Error(`${file}: expected one ${dynamicImport} in @mlc-ai/web-xgrammar's bundle; this version is not one Easel knows`);
  const run = vm.compileFunction(source.replace(dynamicImport, "Promise.resolve(require('module'))"), ['exports', 'require', 'module', '__filename', '__dirname'], { filename: file });
  const module = { exports: {} as Xgrammar };
  run(module.exports, createRequire(file), module, file, path.dirname(file));
  const xg = module.exports;
  const original = console.error;
  console.error = (...args: unknown[]): void => {
    const text = args.map(String).join(' ');
    if (text.includes('[FATAL]')) lastError = text;
    // The abort that follows it becomes the caller's error.
    else if (!text.startsWith('Aborted(')) original(...args);
  };
  try {
    // The WebAssembly module starts at its first call.
    (await xg.TokenizerInfo.createTokenizerInfo(['a'], 'raw')).dispose();
  } finally {
    console.error = original;
  }
  return xg;
}

/**
 * Runs an xgrammar call that may refuse its input, and turns a refusal into its reason: the
 * `[FATAL]` line's text after the C++ source location.
 */
export async function explained<T>(call: () => Promise<T>): Promise<T> {
  lastError = '';
  try {
    return await call();
  } catch (err) {
    const why = lastError.replace(/^.*\[FATAL\]\s*\S+:\d+:\s*/s, '').trim();
    throw new Error(why || (err as Error).message || String(err), { cause: err });
  }
}
