// A single ONNX graph driven by named JSON tensors: `{"data": [...]}` for a one-input graph, or
// `{"inputs": [{"name", "shape", "datatype", "data"}]}` / `{"inputs": {name: [...]}}`.
import path from 'node:path';
import { EaselError, invalidField } from '../../errors/easel-error.js';
import { makeTensor, OnnxSession, SUPPORTED_TENSOR_TYPES, tensorToNumbers, type IoInfo, type SessionOptions, type Tensor } from '../../runtime/onnx-runtime.js';

export interface NamedTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: number[];
}

export class TensorPipeline {
  private constructor(private readonly session: OnnxSession) {}

  static async load(dir: string, file: string, options: SessionOptions): Promise<TensorPipeline> {
    return new TensorPipeline(await OnnxSession.create(path.join(dir, file), options));
  }

  get inputs(): IoInfo[] {
    return this.session.inputs;
  }

  get outputs(): IoInfo[] {
    return this.session.outputs;
  }

  parseInputs(input: Readonly<Record<string, unknown>>): Record<string, NamedTensor> {
    const specs = this.session.inputs;
    const out: Record<string, NamedTensor> = {};
    if (input.inputs !== undefined) {
      const list = Array.isArray(input.inputs)
        ? (input.inputs as unknown[])
        : typeof input.inputs === 'object' && input.inputs !== null
          ? Object.entries(input.inputs).map(([name, data]) => ({ name, data }))
          : undefined;
      if (!list) throw invalidField('inputs', 'inputs must be a list of {name, shape, datatype, data} or a map of name → nested array');
      for (const [i, item] of list.entries()) {
        if (typeof item !== 'object' || item === null) throw invalidField(`inputs[${i}]`, `inputs[${i}] must be an object`);
        const { name, data, shape } = item as Record<string, unknown>;
        const spec = specs.find((s) => s.name === name);
        if (!spec) throw invalidField(`inputs[${i}].name`, `unknown input "${String(name)}"; the model's inputs are ${specs.map((s) => s.name).join(', ')}`);
        out[spec.name] = toNamed(spec, data, shape, `inputs[${i}]`);
      }
    } else if (input.data !== undefined) {
      if (specs.length !== 1) throw invalidField('data', `this model has ${specs.length} inputs (${specs.map((s) => s.name).join(', ')}); send them in "inputs"`);
      const spec = specs[0]!;
      out[spec.name] = toNamed(spec, input.data, undefined, 'data');
    } else {
      throw invalidField('data', 'send "data" (a number array) or "inputs" (named tensors)');
    }
    for (const s of specs) if (!out[s.name]) throw invalidField(`inputs.${s.name}`, `missing input "${s.name}"`);
    return out;
  }

  async run(inputs: Record<string, NamedTensor>): Promise<NamedTensor[]> {
    const feeds: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(inputs)) feeds[name] = makeTensor(t.datatype, t.data, t.shape);
    let result: Record<string, Tensor>;
    try {
      result = await this.session.run(feeds);
    } catch (err) {
      throw new EaselError('EASEL_INVALID_PARAMETER', `the model rejected the inputs: ${(err as Error).message.split('\n')[0]}`, { cause: err });
    }
    return this.session.outputs.map((o) => {
      const t = result[o.name]!;
      return { name: o.name, datatype: String(t.type), shape: [...t.dims], data: tensorToNumbers(t) };
    });
  }

  async warmup(): Promise<void> {
    const feeds: Record<string, NamedTensor> = {};
    for (const s of this.session.inputs) {
      const shape = s.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
      feeds[s.name] = { name: s.name, datatype: s.type, shape, data: new Array<number>(shape.reduce((a, b) => a * b, 1)).fill(0) };
    }
    await this.run(feeds).catch(() => undefined);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

function toNamed(spec: IoInfo, data: unknown, shape: unknown, field: string): NamedTensor {
  const flat: number[] = [];
  const inferred = flatten(data, flat, field);
  let dims = inferred;
  if (shape !== undefined) {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) throw invalidField(`${field}.shape`, `${field}.shape must be a list of non-negative integers`);
    dims = shape as number[];
    if (dims.reduce((a, b) => a * b, 1) !== flat.length) throw invalidField(`${field}.shape`, `${field}.shape ${JSON.stringify(dims)} holds ${dims.reduce((a, b) => a * b, 1)} values but ${flat.length} were sent`);
  }
  if (spec.shape.length !== dims.length) throw invalidField(field, `input "${spec.name}" has rank ${spec.shape.length} (shape ${JSON.stringify(spec.shape)}), got rank ${dims.length}`);
  spec.shape.forEach((d, i) => {
    if (typeof d === 'number' && d > 0 && dims[i] !== d) throw invalidField(field, `input "${spec.name}" needs dimension ${i} = ${d}, got ${dims[i]}`);
  });
  if (!SUPPORTED_TENSOR_TYPES.includes(spec.type)) throw new EaselError('EASEL_MODEL_INVALID', `input "${spec.name}" has the unsupported type ${spec.type}`);
  return { name: spec.name, datatype: spec.type, shape: dims, data: flat };
}

/** Flattens a nested numeric array, returning its shape; rejects ragged or non-numeric data. */
function flatten(value: unknown, out: number[], field: string): number[] {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalidField(field, `${field} must hold finite numbers`);
    out.push(value);
    return [];
  }
  if (typeof value === 'boolean') {
    out.push(value ? 1 : 0);
    return [];
  }
  if (!Array.isArray(value)) throw invalidField(field, `${field} must be a number or a nested array of numbers, got ${value === null ? 'null' : typeof value}`);
  let inner: number[] | undefined;
  for (const v of value) {
    const s = flatten(v, out, field);
    if (inner && (inner.length !== s.length || inner.some((d, i) => d !== s[i]))) throw invalidField(field, `${field} is ragged: every row must have the same shape`);
    inner = s;
  }
  return [value.length, ...(inner ?? [])];
}
