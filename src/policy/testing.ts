// Test builders for service specs and policy documents, shared by the policy suites.

import type { PolicyDocument, ServiceSpec } from '../core/index.js';

export const MiB = 1024 ** 2;

export interface SpecOptions {
  name?: string;
  project?: string;
  image?: string;
  /** Default 1; `global` makes a global service. */
  replicas?: number | 'global';
  labels?: Record<string, string>;
  env?: string[];
  /** Default 0 (no limit). */
  memoryLimit?: number;
}

/** A service spec with the defaults `service create` gives. */
export const serviceSpec = (o: SpecOptions = {}): ServiceSpec => ({
  name: o.name ?? 'latte',
  project: o.project ?? 'default',
  labels: o.labels ?? {},
  mode: o.replicas === 'global' ? { global: {} } : { replicated: { replicas: o.replicas ?? 1 } },
  task: {
    container: { image: o.image ?? 'registry.example/x:1.0', command: [], env: o.env ?? [], labels: {}, stopGracePeriodMs: 10_000 },
    resources: { reservations: { nanoCpus: 0, memoryBytes: 0 }, limits: { nanoCpus: 0, memoryBytes: o.memoryLimit ?? 0 } },
    restartPolicy: { condition: 'any', delayMs: 5000, maxAttempts: 0, windowMs: 0 },
    placement: { constraints: [{ key: 'node.labels.zone', op: '==', value: 'eu' }], preferences: [{ spread: 'node.labels.rack' }] },
  },
});

/** A policy document with one validation; `overrides` replace whole fields. */
export const policyDoc = (expression: string, overrides: Partial<PolicyDocument> = {}): PolicyDocument => ({
  kind: 'Policy',
  name: 'test-policy',
  match: {},
  validations: [{ expression, message: 'test validation failed' }],
  action: 'deny',
  ...overrides,
});
