// Test builders for Node and Task objects with sensible defaults, shared by every suite that needs a cluster snapshot.

import { parseConstraint } from '../core/index.js';
import type {
  Constraint,
  DesiredState,
  Meta,
  Node,
  NodeAvailability,
  NodeRole,
  NodeStatusState,
  Task,
  TaskState,
} from '../core/index.js';

/** One CPU core in nano-CPUs. */
export const CPU = 1e9;
export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

/** Fixed, so objects built twice compare equal (tests must not depend on the wall clock). */
const EPOCH = '2024-01-01T00:00:00.000Z';
const meta = (): Meta => ({ version: 1, createdAt: EPOCH, updatedAt: EPOCH });

export interface NodeOptions {
  /** Default 4 cores. */
  nanoCpus?: number;
  /** Default 8 GiB. */
  memoryBytes?: number;
  /** node.labels.*; default none. */
  labels?: Record<string, string>;
  /** engine.labels.*; default none. */
  engineLabels?: Record<string, string>;
  /** Default 'active'. */
  availability?: NodeAvailability;
  /** Default 'ready'. */
  state?: NodeStatusState;
  /** Default 'worker'. */
  role?: NodeRole;
  /** Default: the node id. */
  hostname?: string;
}

/** A node that is ready and active with 4 CPUs and 8 GiB unless told otherwise. */
export const makeNode = (id: string, opts: NodeOptions = {}): Node => ({
  kind: 'node',
  id,
  meta: meta(),
  spec: { role: opts.role ?? 'worker', availability: opts.availability ?? 'active', labels: { ...opts.labels } },
  description: {
    hostname: opts.hostname ?? id,
    address: '127.0.0.1:0',
    runtime: 'sim',
    resources: { nanoCpus: opts.nanoCpus ?? 4 * CPU, memoryBytes: opts.memoryBytes ?? 8 * GiB },
    engineLabels: { ...opts.engineLabels },
  },
  status: { state: opts.state ?? 'ready', message: '', lastHeartbeat: EPOCH },
});

export interface TaskOptions {
  /** Default 'svc'. */
  serviceId?: string;
  /** Default: the service id. */
  serviceName?: string;
  /**
   * Default 1. The scheduler groups tasks by (serviceId, serviceVersion): tasks sharing both must be
   * built with the same reservations, constraints and preferences, as real tasks of one version are.
   */
  serviceVersion?: number;
  /** Default 1. */
  slot?: number;
  /** '' (default) while unassigned; set for placed tasks and for pinned (global) pending tasks. */
  nodeId?: string;
  /** Default 'pending'. */
  state?: TaskState;
  /** Default 'running'. */
  desiredState?: DesiredState;
  /** Reserved CPU; default 0. */
  nanoCpus?: number;
  /** Reserved memory; default 0. */
  memoryBytes?: number;
  /** Placement constraints, as expressions ('node.labels.zone==eu') or parsed. */
  constraints?: (string | Constraint)[];
  /** Spread preference attributes in order, e.g. ['node.labels.zone']. */
  preferences?: string[];
}

/** A pending task of service 'svc' with no reservations or constraints unless told otherwise. */
export const makeTask = (id: string, opts: TaskOptions = {}): Task => {
  const serviceId = opts.serviceId ?? 'svc';
  const reservations = { nanoCpus: opts.nanoCpus ?? 0, memoryBytes: opts.memoryBytes ?? 0 };
  return {
    kind: 'task',
    id,
    meta: meta(),
    serviceId,
    serviceName: opts.serviceName ?? serviceId,
    slot: opts.slot ?? 1,
    nodeId: opts.nodeId ?? '',
    spec: {
      container: { image: 'busybox', command: [], env: [], labels: {}, stopGracePeriodMs: 10_000 },
      resources: { reservations, limits: { nanoCpus: 0, memoryBytes: 0 } },
      restartPolicy: { condition: 'any', delayMs: 5000, maxAttempts: 0, windowMs: 0 },
      placement: {
        constraints: (opts.constraints ?? []).map((c) => (typeof c === 'string' ? parseConstraint(c) : c)),
        preferences: (opts.preferences ?? []).map((spread) => ({ spread })),
      },
    },
    serviceVersion: opts.serviceVersion ?? 1,
    desiredState: opts.desiredState ?? 'running',
    status: { state: opts.state ?? 'pending', timestamp: EPOCH, message: '', error: '', containerId: '' },
    restartHistory: [],
    notBefore: 0,
  };
};

/** `count` tasks of one service with ids `<idPrefix><slot>` and slots 1..count (idPrefix default `<serviceId>.`). */
export const makeTasks = (count: number, opts: TaskOptions & { idPrefix?: string } = {}): Task[] => {
  const { idPrefix = `${opts.serviceId ?? 'svc'}.`, ...rest } = opts;
  return Array.from({ length: count }, (_, i) => makeTask(`${idPrefix}${i + 1}`, { ...rest, slot: i + 1 }));
};
