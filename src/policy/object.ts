// The service as policy expressions see it (`object`, `oldObject`): a flat view of a ServiceSpec, with CEL's types.

import { DEFAULT_UPDATE_CONFIG, projectOf, type Resources, type ServiceSpec, type UpdateConfig } from '../core/index.js';

/**
 * CEL integers are BigInt: the library refuses a JS number where the declared type is int ("Field 'replicas' is not
 * of type 'int', got 'double'"), so every integer of the spec is converted here, once per request.
 */
export interface CelResources {
  nanoCpus: bigint;
  memoryBytes: bigint;
}

export interface CelUpdateConfig {
  parallelism: bigint;
  delayMs: bigint;
  monitorMs: bigint;
  failureAction: string;
  /** A double (0..1). */
  maxFailureRatio: number;
  order: string;
}

/** `object` in a policy expression. Field names are part of the policy interface: extend, never rename. */
export interface PolicyObject {
  name: string;
  project: string;
  /** The service's labels (what `match.labels` compares). */
  labels: Record<string, string>;
  mode: 'replicated' | 'global';
  /** Absent for a global service (one task per eligible node): `has(object.replicas)` tells. */
  replicas?: bigint;
  image: string;
  /** The container's command (argv); empty: the image's own. */
  args: string[];
  /** KEY=VALUE strings. */
  env: string[];
  /** Labels put on the containers. */
  containerLabels: Record<string, string>;
  stopGracePeriodMs: bigint;
  /** Absent: the image's own health check, if any. */
  healthcheck?: { test: string[]; intervalMs: bigint; timeoutMs: bigint; retries: bigint; startPeriodMs: bigint };
  /** 0 means "not set" for every resource. */
  resources: { limits: CelResources; reservations: CelResources };
  restartPolicy: { condition: string; delayMs: bigint; maxAttempts: bigint; windowMs: bigint };
  /** Placement constraints as the spec has them: {key: 'node.labels.zone', op: '==', value: 'eu'}. */
  constraints: { key: string; op: string; value: string }[];
  /** Spread preferences: the node attribute of each, in order. */
  preferences: string[];
  /** The effective configs (the defaults when the spec leaves them out). */
  updateConfig: CelUpdateConfig;
  rollbackConfig: CelUpdateConfig;
}

const RESOURCES_TYPE = { nanoCpus: 'int', memoryBytes: 'int' };
const UPDATE_CONFIG_TYPE = { parallelism: 'int', delayMs: 'int', monitorMs: 'int', failureAction: 'string', maxFailureRatio: 'double', order: 'string' };

/** The CEL schema of PolicyObject: expressions are type-checked against it, so `object.replica` fails at apply time. */
export const POLICY_OBJECT_SCHEMA = {
  name: 'string',
  project: 'string',
  labels: 'map<string, string>',
  mode: 'string',
  replicas: 'int',
  image: 'string',
  args: 'list<string>',
  env: 'list<string>',
  containerLabels: 'map<string, string>',
  stopGracePeriodMs: 'int',
  healthcheck: { test: 'list<string>', intervalMs: 'int', timeoutMs: 'int', retries: 'int', startPeriodMs: 'int' },
  resources: { limits: RESOURCES_TYPE, reservations: RESOURCES_TYPE },
  restartPolicy: { condition: 'string', delayMs: 'int', maxAttempts: 'int', windowMs: 'int' },
  constraints: 'list<map<string, string>>',
  preferences: 'list<string>',
  updateConfig: UPDATE_CONFIG_TYPE,
  rollbackConfig: UPDATE_CONFIG_TYPE,
};

const resources = (r: Resources): CelResources => ({ nanoCpus: BigInt(r.nanoCpus), memoryBytes: BigInt(r.memoryBytes) });

const updateConfig = (u: UpdateConfig | undefined): CelUpdateConfig => {
  const c = u ?? DEFAULT_UPDATE_CONFIG;
  return { ...c, parallelism: BigInt(c.parallelism), delayMs: BigInt(c.delayMs), monitorMs: BigInt(c.monitorMs) };
};

/** The `object` of a policy expression for a service spec. */
export const policyObject = (spec: ServiceSpec): PolicyObject => {
  const { container, resources: res, restartPolicy: rp, placement } = spec.task;
  const hc = container.healthcheck;
  return {
    name: spec.name,
    project: projectOf(spec),
    labels: spec.labels,
    mode: 'replicated' in spec.mode ? 'replicated' : 'global',
    ...('replicated' in spec.mode ? { replicas: BigInt(spec.mode.replicated.replicas) } : {}),
    image: container.image,
    args: container.command,
    env: container.env,
    containerLabels: container.labels,
    stopGracePeriodMs: BigInt(container.stopGracePeriodMs),
    ...(hc === undefined
      ? {}
      : { healthcheck: { test: hc.test, intervalMs: BigInt(hc.intervalMs), timeoutMs: BigInt(hc.timeoutMs), retries: BigInt(hc.retries), startPeriodMs: BigInt(hc.startPeriodMs) } }),
    resources: { limits: resources(res.limits), reservations: resources(res.reservations) },
    restartPolicy: { condition: rp.condition, delayMs: BigInt(rp.delayMs), maxAttempts: BigInt(rp.maxAttempts), windowMs: BigInt(rp.windowMs) },
    constraints: placement.constraints.map((c) => ({ key: c.key, op: c.op, value: c.value })),
    preferences: placement.preferences.map((p) => p.spread),
    updateConfig: updateConfig(spec.updateConfig),
    rollbackConfig: updateConfig(spec.rollbackConfig),
  };
};

/**
 * `params` for CEL: JSON with every integral number as an int (BigInt), so `object.replicas <= params.max` compares
 * int with int. (YAML cannot tell 5 from 5.0 once parsed; CEL compares int and double correctly anyway.)
 */
export const celParams = (v: unknown): unknown => {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(celParams);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, celParams(x)]));
  return v;
};
