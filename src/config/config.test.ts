import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { envName, loadConfig, parseConfig, parseModelList } from './config.js';

describe('config', () => {
  it('layers file, then environment, then flags, and freezes the result', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'easel-config-'));
    const file = path.join(dir, 'easel.yaml');
    writeFileSync(file, 'port: 9000\nmetricsPort: 9002\nmanagementPort: 9001\n');
    const config = loadConfig({ file, env: { EASEL_METRICS_PORT: '7002', EASEL_ALLOWED_URLS: '^https://a/,^https://b/' }, flags: { managementPort: 6001 } });
    expect([config.port, config.metricsPort, config.managementPort]).toEqual([9000, 7002, 6001]);
    expect(config.allowedUrls).toEqual(['^https://a/', '^https://b/']);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.allowedUrls)).toBe(true);
  });

  it('reads every option from the environment, those without a default too', () => {
    const config = loadConfig({ env: { EASEL_METRICS_PORT: '0', EASEL_PROFILE_DIR: '/tmp/profiles', EASEL_ARTIFACT_URL: 's3://bucket/jobs' } });
    expect([config.metricsPort, config.profileDir, config.artifactUrl]).toEqual([0, '/tmp/profiles', 's3://bucket/jobs']);
    expect(loadConfig({}).metricsPort).toBeUndefined();
  });

  it('rejects unknown keys and bad values, naming them', () => {
    expect(() => loadConfig({ flags: { prot: 1 } })).toThrow(/prot/);
    expect(() => loadConfig({ env: { EASEL_PORT: 'eighty' } })).toThrow(/port/);
    expect(() => loadConfig({ flags: { port: 70000 } })).toThrow(/port/);
  });

  it('requires a strong management token when management listens beyond loopback', () => {
    expect(() => loadConfig({ flags: { managementHost: '0.0.0.0' } })).toThrow(/managementToken/);
    const strong = 'k9Vq2xLr8TzW4mNp';
    expect(loadConfig({ flags: { managementHost: '0.0.0.0', managementToken: strong } }).managementToken).toBe(strong);
    for (const weak of ['x', ' ', 's3cret', `${strong.slice(0, 15)}`, `${strong} ${strong}`, `${strong}\t`]) {
      expect(() => loadConfig({ flags: { managementHost: '0.0.0.0', managementToken: weak } }), JSON.stringify(weak)).toThrow(/at least 16 characters with no whitespace/);
    }
  });

  it('counts as loopback only what parses as a loopback address', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) expect(loadConfig({ flags: { managementHost: host } }).managementHost).toBe(host);
    for (const host of ['127.evil.example', '127.0.0.1.nip.io', '0.0.0.0', '::', '10.0.0.1', 'localhost.example']) {
      expect(() => loadConfig({ flags: { managementHost: host } }), host).toThrow(/managementToken/);
    }
  });

  it('names environment variables and parses model lists', () => {
    expect(envName('managementPort')).toBe('EASEL_MANAGEMENT_PORT');
    expect(parseModelList(['a=models/x', 'store/tiny-sd.easel', 'plain'])).toEqual({ a: 'models/x', 'tiny-sd': 'store/tiny-sd.easel', plain: 'plain' });
  });
});

describe('pool rules', () => {
  it('refuse a priority class that does not exist', () => {
    expect(parseConfig({ poolRules: { spot: { after: { high: 30 } } } }).poolRules).toEqual({ spot: { after: { high: 30 } } });
    expect(() => parseConfig({ poolRules: { spot: { after: { urgent: 1 } } } })).toThrow(/poolRules/);
  });
});
