import { request } from 'undici';
import { FIXTURES, startEasel, waitHealthy } from '/work/main/test/helpers/easel-process.js';
const e = await startEasel(['--model-store', process.env.MS ?? FIXTURES, '--models', 'add-one'], process.env.PROF ? { NODE_OPTIONS: '--cpu-prof --cpu-prof-dir=/tmp/prof' } : {});
await waitHealthy(e);
const body = JSON.stringify({ data: [1, 2, 3, 4] });
const N = 2000;
for (let i = 0; i < 300; i++) { const r = await request(`${e.inference}/predictions/add-one`, { method: 'POST', body, headers: { 'content-type': 'application/json' } }); await r.body.arrayBuffer(); }
const m0 = await (await request(`${e.metrics}/metrics`)).body.text();
const t0 = performance.now();
for (let i = 0; i < N; i++) { const r = await request(`${e.inference}/predictions/add-one`, { method: 'POST', body, headers: { 'content-type': 'application/json' } }); await r.body.arrayBuffer(); }
const wall = performance.now() - t0;
const m1 = await (await request(`${e.metrics}/metrics`)).body.text();
console.log(m1.split("\n").filter((l) => l.startsWith("easel_stage") || l.startsWith("easel_session")).slice(0, 30).join("\n"));
const get = (m: string) => new Map([...m.matchAll(/^((?:easel_stage_seconds_sum|easel_session_run_seconds_total)\S*) (\S+)/gm)].map((x) => [x[1], Number(x[2])]));
const a = get(m0), b = get(m1);
console.log('per request µs total', (wall / N * 1000).toFixed(0));
for (const [k, v] of b) console.log(k, (((v - (a.get(k) ?? 0)) / N) * 1e6).toFixed(1));
await e.stop();
