// Domain objects: what users ask for (spec) and what the system observed (status), each versioned.

import type { ApiToken, AuditEvent, Grant, Policy, Team, Template, User } from './access.js';
import type { TaskState } from './task-state.js';

/** Bookkeeping common to every stored object. */
export interface Meta {
  /** Bumped by the store on every write; writes compare-and-set on it. 0 means "not stored yet". */
  version: number;
  /** ISO-8601 creation time. */
  createdAt: string;
  /** ISO-8601 time of the last write. */
  updatedAt: string;
}

/** The kinds of object the store holds. Later issues add Secret, Config, Volume. */
export type Kind = 'cluster' | 'node' | 'service' | 'task' | 'user' | 'team' | 'token' | 'grant' | 'policy' | 'template' | 'audit';

export interface Resources {
  /** CPU in nano-CPUs (1e9 = one core). */
  nanoCpus: number;
  /** Memory in bytes. */
  memoryBytes: number;
}

// ---------------------------------------------------------------- Cluster

export interface ClusterSpec {
  name: string;
  /** How often agents heartbeat, in ms. */
  heartbeatPeriodMs: number;
  /** Lifetime of node certificates issued from now on, in ms (default 90 days); nodes renew at 50–80% of it. */
  nodeCertExpiryMs?: number;
  /** Dead tasks kept per slot. */
  taskHistoryLimit: number;
}

/** Credentials of the cluster, stored only as SHA-256 digests (hex) of the secrets. Nodes prove who they are with
 * certificates issued by the cluster CA, not with a shared secret. */
export interface ClusterAuth {
  /** Digests of admin API tokens (the credential `shoal init` and a manager's join write to its CLI context). */
  adminTokenDigests: string[];
  /** Which manager node made each admin token (digest → node id): demoting or removing it revokes its token. */
  adminTokenOwners?: Record<string, string>;
  /** The secrets of the current join tokens, per role (`shoal join-token` shows them; rotating replaces them). */
  joinSecrets: { worker: string; manager: string };
  /** Nodes removed from the cluster: their certificates are refused from then on. */
  removedNodeIds: string[];
}

export interface Cluster {
  kind: 'cluster';
  id: string;
  meta: Meta;
  spec: ClusterSpec;
  auth: ClusterAuth;
}

// ---------------------------------------------------------------- Node

export type NodeRole = 'manager' | 'worker';

/**
 * - active: takes new tasks;
 * - pause: keeps its tasks, takes no new ones;
 * - drain: its tasks are moved elsewhere, takes no new ones.
 */
export type NodeAvailability = 'active' | 'pause' | 'drain';

/**
 * - unknown: registered, no session seen yet since the manager started;
 * - ready: has a live session and heartbeats on time;
 * - down: missed its heartbeats past the grace period;
 * - disconnected: closed its session cleanly (e.g. `shoal stop`).
 */
export type NodeStatusState = 'unknown' | 'ready' | 'down' | 'disconnected';

export interface NodeSpec {
  role: NodeRole;
  availability: NodeAvailability;
  labels: Record<string, string>;
}

export interface NodeDescription {
  hostname: string;
  /** Address the node was started with (listen or advertise address). */
  address: string;
  /** Runtime name: docker, exec or sim. */
  runtime: string;
  resources: Resources;
  /** Engine/OS labels reported by the node (engine.labels.*). */
  engineLabels: Record<string, string>;
}

export interface NodeStatus {
  state: NodeStatusState;
  message: string;
  /** ISO time of the last heartbeat the manager saw. */
  lastHeartbeat?: string;
}

export interface Node {
  kind: 'node';
  id: string;
  meta: Meta;
  spec: NodeSpec;
  description: NodeDescription;
  status: NodeStatus;
}

// ---------------------------------------------------------------- Service

export type RestartCondition = 'none' | 'on-failure' | 'any';

export interface RestartPolicy {
  condition: RestartCondition;
  /** Delay before a replacement task starts, in ms. */
  delayMs: number;
  /** Maximum restarts within `windowMs` (0 = unlimited). */
  maxAttempts: number;
  /** Window over which attempts are counted, in ms (0 = for ever). */
  windowMs: number;
}

/** A placement constraint: `node.labels.zone == eu`. */
export interface Constraint {
  /** The attribute, e.g. `node.hostname`, `node.role`, `node.id`, `node.labels.zone`, `engine.labels.os`. */
  key: string;
  op: '==' | '!=';
  value: string;
}

/**
 * A container health check, as Docker's HEALTHCHECK: `test` is ['CMD', prog, ...args], ['CMD-SHELL', 'command'],
 * ['NONE'] (turns off the image's own check) or [] (the image's own test, with these timings). A task with a check
 * counts as running only once healthy.
 */
export interface HealthCheck {
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive failures that make the container unhealthy. */
  retries: number;
  /** Failures during this time after start do not count. */
  startPeriodMs: number;
}

export interface ContainerSpec {
  image: string;
  /** Overrides the image's entrypoint+cmd when non-empty (argv form). */
  command: string[];
  /** KEY=VALUE strings. */
  env: string[];
  /** Labels put on the container. */
  labels: Record<string, string>;
  /** Time between SIGTERM and SIGKILL when the task is stopped, in ms. */
  stopGracePeriodMs: number;
  /** The health check; absent: the image's own HEALTHCHECK, if any. */
  healthcheck?: HealthCheck;
}

/** How a service's tasks are replaced when its spec changes (update) or returns to the previous one (rollback). */
export interface UpdateConfig {
  /** Tasks replaced at once (0: all at once). */
  parallelism: number;
  /** Pause between batches, in ms. */
  delayMs: number;
  /** How long a new task is watched after it runs before it counts as updated, in ms. */
  monitorMs: number;
  /** What a failed update does once more than maxFailureRatio of the tasks failed. */
  failureAction: 'pause' | 'continue' | 'rollback';
  /** Share of updated tasks (0..1) that may fail before the failure action applies. */
  maxFailureRatio: number;
  /** stop-first: stop the old task, then start the new one; start-first: the other way round (briefly more). */
  order: 'stop-first' | 'start-first';
}

export const DEFAULT_UPDATE_CONFIG: UpdateConfig = { parallelism: 1, delayMs: 0, monitorMs: 5000, failureAction: 'pause', maxFailureRatio: 0, order: 'stop-first' };

export interface ServiceSpec {
  name: string;
  /** The project the service belongs to (grants and policies are per project); absent in services stored before projects: `default`. */
  project?: string;
  /** Labels on the service object itself. */
  labels: Record<string, string>;
  mode: { replicated: { replicas: number } } | { global: Record<string, never> };
  task: {
    container: ContainerSpec;
    /** Bumped by `service update --force`: a changed task template, so every task is replaced though nothing else changed. */
    forceUpdate?: number;
    resources: { reservations: Resources; limits: Resources };
    restartPolicy: RestartPolicy;
    placement: {
      constraints: Constraint[];
      /** Spread preferences, applied in order: spread tasks evenly over the values of each node attribute. */
      preferences: { spread: string }[];
    };
  };
  /** Absent: DEFAULT_UPDATE_CONFIG. */
  updateConfig?: UpdateConfig;
  /** Absent: DEFAULT_UPDATE_CONFIG (a rollback's failure action 'rollback' means pause). */
  rollbackConfig?: UpdateConfig;
}

/**
 * Where the last spec change stands. updating → completed, or paused (a failure beyond the ratio, failure action
 * pause), or rollback_started (failure action rollback, or `service rollback`) → rollback_completed | rollback_paused.
 */
export interface UpdateStatus {
  state: 'updating' | 'paused' | 'completed' | 'rollback_started' | 'rollback_paused' | 'rollback_completed';
  /** ISO times. */
  startedAt: string;
  completedAt?: string;
  message: string;
}

export interface Service {
  kind: 'service';
  id: string;
  meta: Meta;
  spec: ServiceSpec;
  /** The spec before the last update: what `service rollback` returns to. */
  previousSpec?: ServiceSpec;
  updateStatus?: UpdateStatus;
}

// ---------------------------------------------------------------- Task

/**
 * What the manager wants of a task.
 * - ready: prepare it (create the container) but do not start it yet — used for restart delays;
 * - running: run it;
 * - shutdown: stop it, keep its container for logs and history;
 * - remove: stop it and remove its container; the task object is deleted once that is done.
 */
export type DesiredState = 'ready' | 'running' | 'shutdown' | 'remove';

export interface TaskStatus {
  state: TaskState;
  /** ISO time of the last state change. */
  timestamp: string;
  /** Human-readable detail for the current state. */
  message: string;
  /** Why the task failed or was rejected; empty otherwise. */
  error: string;
  containerId: string;
  exitCode?: number;
}

export interface Task {
  kind: 'task';
  id: string;
  meta: Meta;
  serviceId: string;
  serviceName: string;
  /** The service's project when the task was made: who may see the task once its service is removed. */
  project?: string;
  /** Replicated services: 1..N. Global services: 0 (the node identifies the task). */
  slot: number;
  /** Empty until the scheduler assigns the task. */
  nodeId: string;
  /** Copy of the service's task template at the time the task was made: a task never changes spec. */
  spec: ServiceSpec['task'];
  /** Version of the service spec this task was made from. */
  serviceVersion: number;
  desiredState: DesiredState;
  status: TaskStatus;
  /**
   * Times (epoch ms) of the restarts that led to this task, carried from task to task in a slot
   * so restart limits survive the reaping of old tasks.
   */
  restartHistory: number[];
  /** Epoch ms before which a delayed replacement must not start (desiredState 'ready' until then). */
  notBefore: number;
  /** Why the scheduler could not place the task, while pending. */
  schedulingMessage?: string;
}

/** A live task is one the manager still wants prepared or running. */
export const isLive = (t: Task): boolean => t.desiredState === 'ready' || t.desiredState === 'running';

export type StoredObject = Cluster | Node | Service | Task | User | Team | ApiToken | Grant | Policy | Template | AuditEvent;
export type ObjectOfKind<K extends Kind> = Extract<StoredObject, { kind: K }>;
