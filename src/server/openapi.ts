// The OpenAPI description served at OPTIONS / (as TorchServe does).
export function openApiDocument(): Record<string, unknown> {
  const error = { $ref: '#/components/schemas/Error' };
  const errors = (...codes: number[]): Record<string, unknown> =>
    Object.fromEntries(codes.map((c) => [String(c), { description: 'error', content: { 'application/json': { schema: error } } }]));
  return {
    openapi: '3.0.3',
    info: { title: 'Easel inference API', version: '0.1.0', description: 'TorchServe-compatible inference API of Easel.' },
    paths: {
      '/ping': { get: { operationId: 'ping', summary: 'Health: 200 when every model has its minWorkers live, else 500.', responses: { '200': { description: 'Healthy' }, '500': { description: 'Unhealthy' } } } },
      '/predictions/{model_name}': {
        post: {
          operationId: 'predictions', summary: "Run the model's default version on the request.",
          parameters: [{ name: 'model_name', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: {
            content: {
              'application/json': { schema: { type: 'object', description: '{"data": ...} or named fields such as {"prompt": ...}' } },
              'text/plain': { schema: { type: 'string' } },
              'multipart/form-data': { schema: { type: 'object', properties: { data: { type: 'string', format: 'binary' } } } },
              'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
            },
          },
          responses: { '200': { description: "The handler's output, with its content type" }, ...errors(400, 404, 413, 503, 504) },
        },
      },
      '/predictions/{model_name}/{model_version}': {
        post: {
          operationId: 'version_predictions', summary: 'Run a given version of the model.',
          parameters: [{ name: 'model_name', in: 'path', required: true, schema: { type: 'string' } }, { name: 'model_version', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: "The handler's output" }, ...errors(400, 404, 413, 503, 504) },
        },
      },
    },
    components: {
      schemas: {
        Error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', example: 'EASEL_MODEL_NOT_FOUND' }, message: { type: 'string' }, field: { type: 'string' } } },
      },
    },
  };
}
