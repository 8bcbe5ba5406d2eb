import { describe, expect, it } from 'vitest';
import { defaults } from '../config/config.js';
import { buildProgram } from './main.js';

const kebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

describe('easel serve --help', () => {
  it('documents a flag for every config option', () => {
    const serve = buildProgram().commands.find((c) => c.name() === 'serve')!;
    const help = serve.helpInformation();
    // loadAllModels is implied by --models (absent: every model in the store).
    const keys = [...Object.keys(defaults), 'managementToken'].filter((k) => k !== 'loadAllModels');
    for (const key of keys) expect(help, key).toContain(`--${kebab(key)}`);
    expect(help).toContain('--config');
  });
});
