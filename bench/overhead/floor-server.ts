// The floor of bench/overhead: the least a server of Easel's shape can do — an HTTP route
// (fastify) that hands the request to a worker process over Node's IPC, where session.run()
// runs, and answers with the result. No queue, no validation, no metrics. Forked by run.ts,
// which it tells its port; forks itself as the worker.
import Fastify from 'fastify';
import { fork } from 'node:child_process';
import path from 'node:path';
import { makeTensor, OnnxSession, tensorToNumbers } from '../../src/runtime/onnx-runtime.js';
import { readModelSpec } from '../../src/models/model-spec.js';
import { FIXTURES } from '../../test/helpers/easel-process.js';

interface Call { id: number; data: number[] }

if (process.argv[2] === 'worker') {
  const dir = path.join(FIXTURES, 'add-one');
  const session = await OnnxSession.create(path.join(dir, 'model.onnx'), readModelSpec(dir).runtime);
  process.on('message', (m: Call) => {
    void session.run({ x: makeTensor('float32', m.data, [m.data.length]) }).then((out) => process.send!({ id: m.id, data: tensorToNumbers(Object.values(out)[0]!) }));
  });
  process.send!('ready');
} else {
  const worker = fork(new URL(import.meta.url), ['worker'], { execArgv: ['--import', 'tsx'], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise((resolve) => worker.once('message', resolve));
  const pending = new Map<number, (data: number[]) => void>();
  worker.on('message', (m: Call) => {
    pending.get(m.id)?.(m.data);
    pending.delete(m.id);
  });
  let next = 0;
  const app = Fastify();
  app.post('/predictions/add-one', async (req) => {
    const id = next++;
    return new Promise((resolve) => {
      pending.set(id, resolve);
      worker.send({ id, data: (req.body as { data: number[] }).data });
    });
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!(address);
  process.on('disconnect', () => {
    worker.kill();
    process.exit(0);
  });
}
