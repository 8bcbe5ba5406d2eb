// deploy/prometheus and deploy/grafana against real programs: promtool checks and unit-tests the
// alert rules; Debian's Prometheus scrapes a running Easel under load, loads the rules, and
// answers every dashboard panel's query and every alert's expression. Each is accepted, and each
// panel returns series (the GPU panels only where nvidia-smi reports a GPU). The values seen are
// printed: they are what the dashboard would show.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startEasel, waitFor, waitModelLive, type EaselProcess } from '../helpers/easel-process.js';

const DEPLOY = path.join(ROOT, 'deploy');
const RULES = path.join(DEPLOY, 'prometheus', 'alerts.yaml');
const dashboard = JSON.parse(readFileSync(path.join(DEPLOY, 'grafana', 'easel.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
const alerts = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups.flatMap((g) => g.rules);

function hasGpu(): boolean {
  try {
    return execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8' }).includes('GPU');
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('alert rules (promtool)', () => {
  it('are valid and pass their unit tests', () => {
    expect(execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' })).toContain(`SUCCESS: ${alerts.length} rules found`);
    expect(execFileSync('promtool', ['test', 'rules', path.join(DEPLOY, 'prometheus', 'alerts.test.yaml')], { encoding: 'utf8' })).toContain('SUCCESS');
  });
});

describe('Prometheus scraping Easel', () => {
  let easel: EaselProcess;
  let prometheus: ChildProcess;
  let promUrl: string;
  const dir = mkdtempSync(path.join(tmpdir(), 'easel-prometheus-'));

  beforeAll(async () => {
    easel = await startEasel(['--models', `tiny-sd=${path.join(ROOT, 'models', 'tiny-sd')},tiny-lm=${path.join(ROOT, 'models', 'tiny-lm')}`]);
    await waitModelLive(easel, 'tiny-sd');
    await waitModelLive(easel, 'tiny-lm');
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    writeFileSync(path.join(dir, 'prometheus.yml'), JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [{ job_name: 'easel', static_configs: [{ targets: [new URL(easel.metrics).host] }] }],
    }));
    prometheus = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
    await waitFor(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok === true, 30_000, 'Prometheus to be ready');
    // Scraped before the load, so that its counters' increases fall inside the windows.
    await waitFor(async () => (await query('up{job="easel"} == 1')).length > 0, 30_000, 'a first scrape of Easel');
    // Load: images, a job, chats, and a refused request.
    const json = { 'content-type': 'application/json' };
    for (let round = 0; round < 3; round++) {
      await Promise.all([
        fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: json, body: JSON.stringify({ prompt: 'a red circle', seed: round, num_inference_steps: 10 }) }).then((r) => r.arrayBuffer()),
        fetch(`${easel.inference}/v1/chat/completions`, { method: 'POST', headers: json, body: JSON.stringify({ model: 'tiny-lm', messages: [{ role: 'user', content: 'What color is the sky?' }], max_tokens: 20 }) }).then((r) => r.json()),
        fetch(`${easel.inference}/v1/jobs`, { method: 'POST', headers: json, body: JSON.stringify({ model: 'tiny-sd', input: { prompt: 'a green square', num_inference_steps: 10 } }) }).then((r) => r.json()),
        fetch(`${easel.inference}/predictions/tiny-sd`, { method: 'POST', headers: json, body: JSON.stringify({ prompt: 'x', width: 65 }) }).then((r) => r.json()),
      ]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
    // Rates need two scrapes of the load.
    await waitFor(async () => (await query('sum(increase(easel_requests_total[1m])) > 0')).length > 0 && (await query('sum(increase(easel_jobs_total[5m])) > 0')).length > 0, 30_000, 'the load in Prometheus');
  }, 120_000);
  afterAll(async () => {
    prometheus?.kill();
    await easel?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
    const body = (await res.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    expect(body.status, `${expr}: ${body.error ?? ''}`).toBe('success');
    return body.data.result;
  }

  it('answers every dashboard panel with series (GPU panels where a GPU is present)', async () => {
    const gpu = hasGpu();
    const seen: string[] = [];
    for (const panel of dashboard.panels) {
      for (const { expr } of panel.targets) {
        const result = await query(expr);
        const needsGpu = expr.includes('easel_gpu_');
        if (!needsGpu || gpu) expect(result.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
        seen.push(`${panel.title} | ${expr} | ${result.map((r) => `${Object.values(r.metric).filter((v) => v !== 'easel' && !v.includes(':')).join(' ') || '-'}=${Number(r.value[1]).toPrecision(3)}`).join(', ') || '(no series: no GPU here)'}`);
      }
    }
    console.log(`dashboard panels as Prometheus answered them:\n${seen.join('\n')}`);
  });

  it('accepts every alert expression, and has loaded the rules healthy', async () => {
    for (const rule of alerts) await query(rule.expr);
    const rules = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string }[] }[] } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual(alerts.map((a) => a.alert).sort());
    for (const r of loaded) expect(r.health, r.name).toBe('ok');
  });
});
