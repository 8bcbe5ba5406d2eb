// deploy/kubernetes: every layout renders with `kubectl kustomize`, every object it renders is
// valid against the Kubernetes schemas (kubernetes-models) and KEDA's CRD (its ScaledObject
// model), and the pieces agree with Easel: each ScaledObject scales an existing worker
// Deployment on that worker's model's depth list, the grace period covers Easel's drain, and the
// config file is one Easel accepts.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Service } from 'kubernetes-models/v1';
import { parseConfig } from '../../src/config/config.js';
import { ROOT } from '../helpers/easel-process.js';

const LAYOUTS = ['base', 'overlays/gpu', 'overlays/pools'];

interface Validatable {
  validate(): void;
}
/** apiVersion/kind → its model: an object of any other kind fails the test (nothing unchecked). */
const MODELS = new Map<string, new (data: never) => Validatable>([
  ['v1/Namespace', Namespace],
  ['v1/ConfigMap', ConfigMap],
  ['v1/Service', Service],
  ['v1/PersistentVolumeClaim', PersistentVolumeClaim],
  ['apps/v1/Deployment', Deployment],
  ['policy/v1/PodDisruptionBudget', PodDisruptionBudget],
  ['autoscaling/v2/HorizontalPodAutoscaler', HorizontalPodAutoscaler],
  ['keda.sh/v1alpha1/ScaledObject', ScaledObject],
]);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- rendered manifests, read field by field
type Manifest = Record<string, any>;

function render(layout: string): Manifest[] {
  // stderr is kept out of the log: kubectl 1.21+ warns there about the old syntax the layouts use on purpose.
  const out = execFileSync('kubectl', ['kustomize', path.join(ROOT, 'deploy', 'kubernetes', layout)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(out).map((d) => d.toJSON() as Manifest);
}

describe.each(LAYOUTS)('deploy/kubernetes/%s', (layout) => {
  const objects = render(layout);
  const byKind = (kind: string): Manifest[] => objects.filter((o) => o.kind === kind);

  it('renders objects that are valid against the Kubernetes and KEDA schemas', () => {
    expect(objects.length).toBeGreaterThan(10);
    for (const o of objects) {
      const Model = MODELS.get(`${o.apiVersion}/${o.kind}`);
      expect(Model, `${o.apiVersion} ${o.kind} ${o.metadata?.name}: no schema to check it against`).toBeDefined();
      expect(() => new Model!(o as never).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
      expect(o.metadata.namespace ?? (o.kind === 'Namespace' ? 'easel' : undefined), `${o.kind} ${o.metadata.name}`).toBe('easel');
    }
  });

  it("scales each model's workers from zero on that model's depth list, and the pods outlive Easel's drain", () => {
    const config = parseConfig(parseYaml(byKind('ConfigMap')[0]!.data['config.yaml'] as string) as Record<string, unknown>);
    const workers = byKind('Deployment').filter((d) => d.spec.template.spec.containers[0].args[0] === 'worker');
    expect(workers.length).toBeGreaterThanOrEqual(2);
    for (const w of workers) {
      const args = w.spec.template.spec.containers[0].args as string[];
      // Prometheus scrapes the port the worker listens on (a worker's own default is any free port).
      expect(w.spec.template.spec.containers[0].ports.find((p: Manifest) => p.name === 'metrics').containerPort, w.metadata.name).toBe(config.metricsPort);
      expect(w.spec.template.metadata.annotations['prometheus.io/port'], w.metadata.name).toBe(String(config.metricsPort));
      const model = args[args.indexOf('--models') + 1]!.split('=')[0]!;
      expect(Object.keys(config.models), w.metadata.name).toContain(model);
      expect(w.spec.template.spec.terminationGracePeriodSeconds * 1000, w.metadata.name).toBeGreaterThan(config.shutdownGraceMs);
      const scaled = byKind('ScaledObject').filter((s) => s.spec.scaleTargetRef.name === w.metadata.name);
      expect(scaled, w.metadata.name).toHaveLength(1);
      const trigger = scaled[0]!.spec.triggers[0];
      expect(trigger.type).toBe('redis');
      expect(trigger.metadata.listName).toBe(`easel:depth:${model}`);
      // The address KEDA's operator dials: the Redis Service of this namespace, which the config's queue names.
      const redis = byKind('Service').find((s) => s.metadata.name === 'easel-redis')!;
      expect(trigger.metadata.address).toBe(`${redis.metadata.name}.${redis.metadata.namespace}.svc.cluster.local:${redis.spec.ports[0].port}`);
      expect(config.queue).toBe(`redis://${redis.metadata.name}:${redis.spec.ports[0].port}`);
      const pdb = byKind('PodDisruptionBudget').find((p) => Object.entries(p.spec.selector.matchLabels).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
      expect(pdb, `${w.metadata.name}: a PodDisruptionBudget selects it`).toBeDefined();
    }
    expect(byKind('ScaledObject').some((s) => s.spec.minReplicaCount === 0)).toBe(true);
  });

  it('probes the API nodes on their health routes and scales them on CPU', () => {
    const api = byKind('Deployment').find((d) => d.metadata.name === 'easel-api')!;
    const c = api.spec.template.spec.containers[0];
    expect(c.args).toEqual(expect.arrayContaining(['serve', '--no-local-workers']));
    expect([c.livenessProbe.httpGet.path, c.readinessProbe.httpGet.path]).toEqual(['/v2/health/live', '/v2/health/ready']);
    expect(api.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    const hpa = byKind('HorizontalPodAutoscaler')[0]!;
    expect([hpa.spec.scaleTargetRef.name, hpa.spec.metrics[0].resource.name]).toEqual(['easel-api', 'cpu']);
  });
});

describe('deploy/kubernetes overlays', () => {
  it('gpu: the tiny-sd workers get a GPU, GPU nodes and the CUDA image; nothing else changes image', () => {
    const objects = render('overlays/gpu');
    const sd = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'easel-worker-tiny-sd')!.spec.template.spec;
    expect(sd.containers[0].resources.limits['nvidia.com/gpu']).toBe(1);
    expect(sd.containers[0].image).toMatch(/-cuda$/);
    expect(sd.tolerations[0].key).toBe('nvidia.com/gpu');
    const others = objects.filter((o) => o.kind === 'Deployment' && o.metadata.name !== 'easel-worker-tiny-sd');
    for (const o of others) expect(o.spec.template.spec.containers[0].image, o.metadata.name).not.toMatch(/-cuda$/);
  });

  it('pools: each model has a spot and an on-demand pool on their own nodes, with selectors that do not overlap', () => {
    const deployments = render('overlays/pools').filter((o) => o.kind === 'Deployment' && o.metadata.name.startsWith('easel-worker-'));
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(['easel-worker-tiny-lm-on-demand', 'easel-worker-tiny-lm-spot', 'easel-worker-tiny-sd-on-demand', 'easel-worker-tiny-sd-spot']);
    for (const d of deployments) {
      const pool = d.metadata.name.endsWith('-spot') ? 'spot' : 'on-demand';
      expect(d.spec.selector.matchLabels['easel.ai/pool']).toBe(pool);
      expect(d.spec.template.spec.nodeSelector['karpenter.sh/capacity-type']).toBe(pool);
      // The worker says its pool (routing rules, cost metrics) and its price.
      const args = d.spec.template.spec.containers[0].args as string[];
      expect(args[args.indexOf('--pool') + 1]).toBe(pool);
      expect(Number(args[args.indexOf('--price-per-hour') + 1])).toBeGreaterThan(0);
      expect((d.spec.template.spec.tolerations ?? []).length > 0).toBe(pool === 'spot');
    }
  });
});
