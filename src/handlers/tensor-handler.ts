// The `tensor` handler: any single ONNX graph, JSON tensors in and out (the KServe v2 shape).
import { EaselError, errors } from '../errors/easel-error.js';
import { TensorPipeline, type NamedTensor } from '../pipelines/tensor/tensor-pipeline.js';
import type { IoInfo } from '../runtime/onnx-runtime.js';
import { jsonResult, type Handler, type HandlerContext, type HandlerResult, type InferenceRequest, type RequestContext, type TensorSignature } from './handler.js';

type Inputs = Record<string, NamedTensor>;

export class TensorHandler implements Handler<Inputs[], NamedTensor[]> {
  #pipeline: TensorPipeline | undefined;

  async initialize(ctx: HandlerContext): Promise<void> {
    if (!ctx.spec.model) throw new EaselError('EASEL_MODEL_INVALID', `model ${ctx.spec.name}: the tensor handler needs \`model:\` naming its .onnx file`, { field: 'model' });
    this.#pipeline = await TensorPipeline.load(ctx.modelDir, ctx.spec.model, ctx.spec.runtime);
    if (ctx.spec.runtime.warmup) await this.#pipeline.warmup();
  }

  preprocess(requests: readonly InferenceRequest[]): Inputs[] {
    return requests.map((r) => this.#pipeline!.parseInputs(r.input));
  }

  async inference(batch: Inputs[], ctx: RequestContext): Promise<NamedTensor[][]> {
    const out: NamedTensor[][] = [];
    for (const [i, inputs] of batch.entries()) {
      if (ctx.requests[i]?.signal.aborted) throw errors.cancelled();
      out.push(await this.#pipeline!.run(inputs));
    }
    return out;
  }

  postprocess(outputs: NamedTensor[][]): HandlerResult[] {
    return outputs.map((o) => jsonResult({ outputs: o }));
  }

  signature(): TensorSignature {
    const io = (list: IoInfo[]) => list.map((t) => ({ name: t.name, type: t.type, shape: [...t.shape] }));
    return { inputs: io(this.#pipeline!.inputs), outputs: io(this.#pipeline!.outputs) };
  }

  async dispose(): Promise<void> {
    await this.#pipeline?.release();
  }
}
