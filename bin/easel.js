#!/usr/bin/env node
// The `easel` command: runs the compiled CLI (built by `npm run build`, which `npm install` runs).
import { main } from '../dist/cli/main.js';

main(process.argv).catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
