// The only importer of onnxruntime-node. Creates sessions with the execution provider and
// options a model asks for, and converts between plain arrays and tensors.
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { EaselError } from '../errors/easel-error.js';
import { ORT_PROFILE_ENV } from './profile-env.js';

export type Tensor = ort.Tensor;
export type TensorType = ort.Tensor.Type;
export type RunOptions = ort.InferenceSession.RunOptions;

export interface SessionOptions {
  executionProvider: 'cpu' | 'cuda';
  graphOptimizationLevel: 'disabled' | 'basic' | 'extended' | 'all';
  intraOpThreads: number;
  interOpThreads: number;
  /**
   * Whether ONNX Runtime's idle intra-op threads spin waiting for work (its default) or sleep:
   * spinning wins on a machine to itself, sleeping where the HTTP process shares the cores.
   */
  spinning?: boolean | undefined;
  /** ONNX Runtime's CPU memory arena (its default: on). */
  memArena?: boolean | undefined;
  /** ONNX Runtime's memory pattern planning (its default: on; it helps when shapes repeat). */
  memPattern?: boolean | undefined;
  /** Run independent graph branches in parallel (inter-op threads) or one node at a time (the default). */
  executionMode?: 'sequential' | 'parallel' | undefined;
  /** `fp16` → prefer `model.fp16.onnx` beside `model.onnx` when it exists. */
  variant?: string | undefined;
}

export interface IoInfo {
  name: string;
  /** `float32`, `int64`, ... */
  type: string;
  /** Dimensions; a string or -1 marks a dynamic axis. */
  shape: ReadonlyArray<number | string>;
}

let processRunSeconds = 0;

/** Seconds this process has spent inside session.run() since the last call (every session). */
export function takeRunSeconds(): number {
  const s = processRunSeconds;
  processRunSeconds = 0;
  return s;
}

export class OnnxSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly file: string,
    private readonly profiling: boolean,
  ) {}

  static async create(file: string, options: SessionOptions): Promise<OnnxSession> {
    const chosen = variantFile(file, options.variant);
    // Profiles are named after the graph's folder and file (unet-model, onnx-model) and the process.
    const profileDir = process.env[ORT_PROFILE_ENV];
    const profile = profileDir ? { enableProfiling: true, profileFilePrefix: path.join(profileDir, `ort-${process.pid}-${path.basename(path.dirname(chosen))}-${path.basename(chosen, '.onnx')}`) } : {};
    if (!existsSync(chosen)) throw new EaselError('EASEL_MODEL_INVALID', `ONNX file ${path.basename(chosen)} not found in the model directory`);
    try {
      const session = await ort.InferenceSession.create(chosen, {
        executionProviders: options.executionProvider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
        graphOptimizationLevel: options.graphOptimizationLevel,
        ...(options.intraOpThreads > 0 ? { intraOpNumThreads: options.intraOpThreads } : {}),
        ...(options.interOpThreads > 0 ? { interOpNumThreads: options.interOpThreads } : {}),
        ...(options.memArena === false ? { enableCpuMemArena: false } : {}),
        ...(options.memPattern === false ? { enableMemPattern: false } : {}),
        ...(options.executionMode ? { executionMode: options.executionMode } : {}),
        ...(options.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } : {}),
        ...profile,
      });
      return new OnnxSession(session, chosen, profileDir !== undefined);
    } catch (err) {
      const message = (err as Error).message;
      if (options.executionProvider === 'cuda' && /Cuda|providers_shared|CUDA/.test(message)) {
        throw new EaselError('EASEL_MODEL_INVALID', 'the model asks for the cuda execution provider, but ONNX Runtime\'s CUDA binaries are not installed; on a machine with CUDA 12 run `npm install --onnxruntime-node-install=cuda12`, or set runtime.executionProvider: cpu', { cause: err });
      }
      throw new EaselError('EASEL_MODEL_INVALID', `ONNX Runtime could not load ${path.basename(chosen)}: ${message.split('\n')[0]}`, { cause: err });
    }
  }

  get inputs(): IoInfo[] {
    return this.session.inputNames.map((name, i) => ioInfo(name, this.session.inputMetadata[i]));
  }

  get outputs(): IoInfo[] {
    return this.session.outputNames.map((name, i) => ioInfo(name, this.session.outputMetadata[i]));
  }

  /** Seconds spent inside run() so far (for the share of time outside ONNX Runtime). */
  runSeconds = 0;

  /**
   * Blocks the calling thread: only worker processes call this. Every output comes back in a
   * fresh ArrayBuffer (onnxruntime-node copies outputs, also preallocated ones: none are passed).
   * `options`: ONNX Runtime's run options (a probe that may fail sets logSeverityLevel 4, so that
   * ONNX Runtime does not log its failure).
   */
  async run(feeds: Record<string, ort.Tensor>, options: ort.InferenceSession.RunOptions = {}): Promise<Record<string, ort.Tensor>> {
    const t0 = performance.now();
    try {
      return await this.session.run(feeds, options);
    } finally {
      const seconds = (performance.now() - t0) / 1000;
      this.runSeconds += seconds;
      processRunSeconds += seconds;
    }
  }

  async release(): Promise<void> {
    // Writes the profile (Chrome trace JSON) when profiling.
    if (this.profiling) this.session.endProfiling();
    await this.session.release();
  }
}

function ioInfo(name: string, meta: ort.InferenceSession.ValueMetadata | undefined): IoInfo {
  if (meta && meta.isTensor) {
    return { name, type: String(meta.type), shape: meta.shape.map((d) => (typeof d === 'number' ? d : String(d))) };
  }
  return { name, type: 'unknown', shape: [] };
}

/** `model.onnx` + `fp16` → `model.fp16.onnx` (or `model_fp16.onnx`) when present. */
export function findVariant(file: string, variant: string): string | undefined {
  const dir = path.dirname(file);
  const base = path.basename(file, '.onnx');
  return [`${base}.${variant}.onnx`, `${base}_${variant}.onnx`].map((c) => path.join(dir, c)).find((c) => existsSync(c));
}

/** The variant's file, or a clear error when it is missing. */
export function variantFile(file: string, variant: string | undefined): string {
  if (!variant) return file;
  const found = findVariant(file, variant);
  if (found) return found;
  const base = path.basename(file, '.onnx');
  throw new EaselError('EASEL_MODEL_INVALID', `variant "${variant}" of ${path.basename(file)} not found (looked for ${base}.${variant}.onnx and ${base}_${variant}.onnx)`);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half-precision bits of a number, rounded to nearest even (Node 20 has no Float16Array). */
export function toHalf(value: number): number {
  f32[0] = value;
  const x = u32[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    return sign | (half + (rest > halfway || (rest === halfway && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

export function fromHalf(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

const TYPED: Record<string, (data: ArrayLike<number>) => ort.Tensor['data']> = {
  float32: (d) => Float32Array.from(d),
  float16: (d) => Uint16Array.from(d, toHalf),
  float64: (d) => Float64Array.from(d),
  int32: (d) => Int32Array.from(d),
  int64: (d) => BigInt64Array.from(d, (x) => BigInt(Math.trunc(x))),
  uint8: (d) => Uint8Array.from(d),
  int8: (d) => Int8Array.from(d),
  bool: (d) => Uint8Array.from(d, (x) => (x ? 1 : 0)),
};

export const SUPPORTED_TENSOR_TYPES = Object.keys(TYPED);

export function makeTensor(type: string, data: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  const make = TYPED[type];
  if (!make) throw new Error(`tensor type ${type} is not supported; supported: ${SUPPORTED_TENSOR_TYPES.join(', ')}`);
  return new ort.Tensor(type as ort.Tensor.Type, make(data) as never, dims);
}

export function fromTypedArray(type: 'float32', data: Float32Array, dims: readonly number[]): ort.Tensor;
export function fromTypedArray(type: 'int64', data: BigInt64Array, dims: readonly number[]): ort.Tensor;
export function fromTypedArray(type: 'int32', data: Int32Array, dims: readonly number[]): ort.Tensor;
export function fromTypedArray(type: string, data: ort.Tensor['data'], dims: readonly number[]): ort.Tensor {
  return new ort.Tensor(type as ort.Tensor.Type, data as never, dims);
}

/** Float data for a float32, float16 or float64 input, converting from float32 as needed. */
export function floatTensor(type: string, data: Float32Array, dims: readonly number[]): ort.Tensor {
  if (type === 'float32') return new ort.Tensor('float32', data, dims);
  return makeTensor(type, data, dims);
}

/** A float tensor's data as float32 (float16 and float64 converted). */
export function tensorToFloat32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') return Float32Array.from(t.data as Uint16Array, fromHalf);
  return Float32Array.from(tensorToNumbers(t));
}

/** A tensor's data as plain numbers (int64 converted with Number). */
export function tensorToNumbers(t: ort.Tensor): number[] {
  const d = t.data;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Array.from(d, Number);
  if (Array.isArray(d)) return d.map(Number);
  return Array.from(d as ArrayLike<number>);
}
