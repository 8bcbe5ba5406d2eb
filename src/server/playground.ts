// The playground page (web/, built by `npm run build` into dist/web): served by the inference
// listener at / and under /ui/, from files only — the page itself uses the public API. The
// build writes gzip and brotli copies beside each file; a browser that accepts them gets those.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { EaselError } from '../errors/easel-error.js';

/** dist/web beside the compiled server (dist/server), or the build's output when running from src. */
function webRoot(): string | undefined {
  return [new URL('../web/', import.meta.url), new URL('../../dist/web/', import.meta.url)].map((u) => fileURLToPath(u)).find((dir) => existsSync(`${dir}index.html`));
}

export async function playgroundRoutes(app: FastifyInstance): Promise<void> {
  const root = webRoot();
  if (!root) {
    const unbuilt = (): never => {
      throw new EaselError('EASEL_NOT_FOUND', 'the playground is not built here: run `npm run build`');
    };
    app.get('/', { schema: { hide: true } }, unbuilt);
    app.get('/ui/', { schema: { hide: true } }, unbuilt);
    return;
  }
  await app.register(fastifyStatic, {
    root,
    prefix: '/ui/',
    preCompressed: true,
    // Hashed file names: a new build is a new name.
    immutable: true,
    maxAge: '365d',
    setHeaders: (res, file) => {
      if (file.endsWith('.html')) res.header('cache-control', 'no-cache');
    },
  });
  app.get('/', { schema: { summary: 'The playground page.' } }, (_req, reply) => reply.header('cache-control', 'no-cache').sendFile('index.html'));
}
