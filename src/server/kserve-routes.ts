// KServe's Open Inference Protocol v2 (the REST form Triton and KServe serve) on the inference
// port, for typed tensors: health, server and model metadata, model readiness, and infer —
// served by the tensor handler through the same work queue as every prediction. Errors carry
// the protocol's `error` message beside Easel's code and field.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { EaselError, invalidField, isEaselError } from '../errors/easel-error.js';
import type { TensorSignature } from '../models/model-control.js';
import type { Metrics } from '../metrics/metrics.js';
import { sendError, toEaselError } from './errors.js';
import { countRequests } from './request-metrics.js';
import { assertServed, clientGone, localSpec, modelParameters, predict, type PredictOptions } from './predict.js';
import { pathName } from './schemas.js';

/** The protocol's datatypes → ONNX Runtime's element types (BYTES has no numeric tensor here). */
const DATATYPES: ReadonlyMap<string, string> = new Map([
  ['BOOL', 'bool'], ['UINT8', 'uint8'], ['UINT16', 'uint16'], ['UINT32', 'uint32'], ['UINT64', 'uint64'], ['INT8', 'int8'], ['INT16', 'int16'],
  ['INT32', 'int32'], ['INT64', 'int64'], ['FP16', 'float16'], ['FP32', 'float32'], ['FP64', 'float64'],
]);
const V2_TYPES: ReadonlyMap<string, string> = new Map([...DATATYPES].map(([v2, ort]) => [ort, v2]));
const v2Type = (ort: string): string => V2_TYPES.get(ort) ?? ort.toUpperCase();

const tensor = z.object({
  name: z.string().min(1).max(256),
  shape: z.array(z.number().int().nonnegative()).max(16),
  datatype: z.string().refine((d) => DATATYPES.has(d), { error: `datatype must be one of ${[...DATATYPES.keys()].join(', ')}` }),
  data: z.array(z.unknown()),
  parameters: z.record(z.string(), z.unknown()).optional(),
});

const inferBody = z.object({
  id: z.string().max(256).optional(),
  parameters: z.record(z.string(), z.unknown()).optional(),
  inputs: z.array(tensor).min(1).max(64),
  outputs: z.array(z.object({ name: z.string().min(1).max(256), parameters: z.record(z.string(), z.unknown()).optional() })).max(64).optional(),
});

const modelParams = z.object({ model: pathName, version: pathName.optional() });

interface NamedTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: number[];
}

export async function kserveRoutes(app: FastifyInstance, o: PredictOptions & { serverVersion: string; metrics: Metrics }): Promise<void> {
  countRequests(app, o.metrics);
  app.setErrorHandler((err: FastifyError | EaselError, req, reply) => {
    const e = isEaselError(err) ? err : toEaselError(err);
    if (!e) req.log.error({ err }, 'unexpected error');
    const easel = e ?? new EaselError('EASEL_INTERNAL', 'internal server error');
    return sendError(reply, easel, { error: easel.message });
  });

  app.get('/v2', { schema: { summary: 'Server metadata (Open Inference Protocol v2).' } }, async () => ({ name: 'easel', version: o.serverVersion, extensions: [] }));
  app.get('/v2/health/live', { schema: { summary: 'The server is live (v2).' } }, async () => ({ live: true }));
  app.get('/v2/health/ready', { schema: { summary: 'Every loaded model has its workers (v2); 503 otherwise.' } }, async (_req, reply) => {
    const ready = o.control.health().healthy;
    return reply.code(ready ? 200 : 503).send({ ready });
  });

  const metadata = async (req: FastifyRequest) => {
    const { model, version } = req.params as z.infer<typeof modelParams>;
    await assertServed(o, model, version);
    const spec = localSpec(o.control, model, version);
    const signature = spec ? o.control.signature(model, version) : undefined;
    const io = (list: TensorSignature['inputs'] | undefined) => (list ?? []).map((t) => ({ name: t.name, datatype: v2Type(t.type), shape: t.shape.map((d) => (typeof d === 'number' && d > 0 ? d : -1)) }));
    return { name: model, versions: spec ? [spec.version] : [], platform: platform(o, model), inputs: io(signature?.inputs), outputs: io(signature?.outputs) };
  };
  app.get('/v2/models/:model', { schema: { summary: "A model's metadata: its tensors (v2).", params: modelParams } }, metadata);
  app.get('/v2/models/:model/versions/:version', { schema: { summary: "A model version's metadata (v2).", params: modelParams } }, metadata);

  const ready = async (req: FastifyRequest, reply: FastifyReply) => {
    const { model, version } = req.params as z.infer<typeof modelParams>;
    await assertServed(o, model, version);
    const live = o.control.health().models.some((m) => m.name === model && (version === undefined || m.version === version) && m.liveWorkers > 0);
    return reply.code(live ? 200 : 503).send({ name: model, ready: live });
  };
  app.get('/v2/models/:model/ready', { schema: { summary: 'Whether a worker of the model is live (v2); 503 otherwise.', params: modelParams } }, ready);
  app.get('/v2/models/:model/versions/:version/ready', { schema: { summary: 'Whether a worker of the model version is live (v2).', params: modelParams } }, ready);

  const infer = async (req: FastifyRequest, reply: FastifyReply) => {
    const { model, version } = req.params as z.infer<typeof modelParams>;
    const body = req.body as z.infer<typeof inferBody>;
    await assertServed(o, model, version, req);
    const task = modelParameters(o, model)?.task;
    if (task !== 'tensor') throw new EaselError('EASEL_INVALID_PARAMETER', `model ${model} is a ${task ?? 'custom'} model; the v2 protocol serves tensor models (handler: tensor)`, { field: 'model' });
    const spec = localSpec(o.control, model, version);
    checkTypes(body, spec && o.control.signature(model, version));
    const inputs = body.inputs.map((t) => ({ name: t.name, shape: t.shape, data: t.data }));
    const result = await predict(o, { model, version, input: { inputs }, accept: 'application/json', signal: clientGone(reply) });
    const outputs = (JSON.parse(Buffer.from(result.data).toString('utf8')) as { outputs: NamedTensor[] }).outputs;
    const wanted = body.outputs?.map((w) => w.name);
    const unknown = wanted?.find((name) => !outputs.some((t) => t.name === name));
    if (unknown !== undefined) throw invalidField('outputs', `unknown output "${unknown}"; the model's outputs are ${outputs.map((t) => t.name).join(', ')}`);
    return {
      model_name: model,
      model_version: spec?.version ?? version ?? null,
      ...(body.id !== undefined ? { id: body.id } : {}),
      outputs: outputs.filter((t) => !wanted || wanted.includes(t.name)).map((t) => ({ name: t.name, datatype: v2Type(t.datatype), shape: t.shape, data: t.data })),
    };
  };
  app.post('/v2/models/:model/infer', { schema: { summary: 'Inference on typed tensors (v2), through the work queue.', params: modelParams, body: inferBody } }, infer);
  app.post('/v2/models/:model/versions/:version/infer', { schema: { summary: 'Inference on a model version (v2).', params: modelParams, body: inferBody } }, infer);
}

function platform(o: PredictOptions, model: string): string {
  const task = modelParameters(o, model)?.task;
  return task === 'tensor' ? 'onnxruntime_onnx' : `easel_${task ?? 'custom'}`;
}

/** Each input's datatype must be its tensor's, where a live worker has told the signature. */
function checkTypes(body: z.infer<typeof inferBody>, signature: TensorSignature | undefined): void {
  if (!signature) return;
  for (const [i, t] of body.inputs.entries()) {
    const spec = signature.inputs.find((s) => s.name === t.name);
    if (!spec) throw invalidField(`inputs[${i}].name`, `unknown input "${t.name}"; the model's inputs are ${signature.inputs.map((s) => s.name).join(', ')}`);
    if (DATATYPES.get(t.datatype) !== spec.type) throw invalidField(`inputs[${i}].datatype`, `input "${t.name}" is ${v2Type(spec.type)}, got ${t.datatype}`);
  }
}
