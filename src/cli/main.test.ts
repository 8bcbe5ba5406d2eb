import { describe, expect, it } from 'vitest';
import { configSchema, defaults } from '../config/config.js';
import { buildProgram } from './main.js';

const kebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

describe('easel serve --help', () => {
  it('documents a flag for every config option', () => {
    const serve = buildProgram().commands.find((c) => c.name() === 'serve')!;
    const help = serve.helpInformation();
    // loadAllModels is implied by --models (absent: every model in the store); apiKeys, secrets, only by EASEL_API_KEYS.
    const keys = Object.keys(configSchema.shape).filter((k) => k !== 'loadAllModels' && k !== 'apiKeys');
    for (const key of keys) {
      // A setting that is on by default has a --no- flag.
      const flag = defaults[key as keyof typeof defaults] === true ? `--no-${kebab(key)}` : `--${kebab(key)}`;
      expect(help, key).toContain(flag);
    }
    expect(help).toContain('--config');
  });
});

describe('easel worker --help', () => {
  it('has the options of a node that runs models and takes jobs', () => {
    const worker = buildProgram().commands.find((c) => c.name() === 'worker')!;
    const help = worker.helpInformation();
    for (const flag of ['--queue', '--models', '--data-dir', '--artifact-dir', '--job-lock-ms', '--shutdown-grace-ms']) expect(help).toContain(flag);
    expect(help).not.toContain('--port');
  });
});
