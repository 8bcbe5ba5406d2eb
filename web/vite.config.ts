// The playground's build: Preact through Vite, into dist/web, served by the inference server
// under /ui/ (and its page at /). `npm run build` runs it; nothing is fetched at run time.
import preact from '@preact/preset-vite';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { defineConfig, type Plugin } from 'vite';

const OUT = path.resolve(import.meta.dirname, '../dist/web');

/** gzip and brotli copies beside each file: the server sends them as they are (no compression per request). */
function precompress(): Plugin {
  return {
    name: 'easel-precompress',
    apply: 'build',
    closeBundle() {
      for (const entry of readdirSync(OUT, { recursive: true, withFileTypes: true })) {
        if (!entry.isFile() || !/\.(html|js|css|svg)$/.test(entry.name)) continue;
        const file = path.join(entry.parentPath, entry.name);
        const data = readFileSync(file);
        writeFileSync(`${file}.gz`, gzipSync(data, { level: 9 }));
        writeFileSync(`${file}.br`, brotliCompressSync(data));
      }
    },
  };
}

export default defineConfig({
  root: import.meta.dirname,
  base: '/ui/',
  plugins: [preact(), precompress()],
  build: { outDir: OUT, emptyOutDir: true, target: 'es2022', reportCompressedSize: false },
});
