// The HTTP API's wire shapes: request schemas (validated with zod) and the stable listing formats.

import { z } from 'zod';
import {
  DEFAULT_PROJECT,
  DEFAULT_UPDATE_CONFIG,
  NAME_PATTERN,
  ShoalError,
  parseConstraint,
  type DesiredState,
  type NodeAvailability,
  type NodeRole,
  type NodeStatusState,
  type ServiceSpec,
  type TaskState,
} from '../core/index.js';

export const API_PREFIX = '/v1';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const LABEL_KEY_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-/]{0,127}$/;

// Bounds on every list and map of a spec: policies' cost estimates rely on them (see src/policy/limits.ts).
const labels = z
  .record(z.string().regex(LABEL_KEY_RE, 'label keys are letters, digits, and . _ - / (at most 128)'), z.string().max(4096))
  .refine((l) => Object.keys(l).length <= 64, { message: 'at most 64 labels' });
const nonNegInt = z.number().int().min(0);
const resources = z.object({ nanoCpus: nonNegInt.default(0), memoryBytes: nonNegInt.default(0) });

/** A constraint as text (`node.labels.zone==eu`) or already parsed ({key, op, value}); errors keep the parser's reason. */
const constraint = z
  .union([z.string(), z.object({ key: z.string(), op: z.string(), value: z.string() })])
  .catch((ctx) => ctx.value as never)
  .transform((v: unknown, ctx) => {
    const c = v as { key?: unknown; op?: unknown; value?: unknown } | string;
    const text = typeof c === 'string' ? c : typeof c === 'object' && c !== null ? `${String(c.key)}${String(c.op)}${String(c.value)}` : undefined;
    if (text === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a constraint is a string like node.labels.zone==eu' });
      return z.NEVER;
    }
    try {
      return parseConstraint(text);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  });

const healthcheck = z
  .object({
    test: z
      .array(z.string())
      // [] keeps the image's own test (with these timings), as Docker's --health-interval without --health-cmd does.
      .refine((t) => t.length === 0 || (t[0] === 'NONE' && t.length === 1) || (t[0] === 'CMD' && t.length >= 2) || (t[0] === 'CMD-SHELL' && t.length === 2), {
        message: "a test is ['CMD', prog, args...], ['CMD-SHELL', command], ['NONE'], or [] for the image's own",
      }),
    intervalMs: nonNegInt.max(24 * 3_600_000).default(30_000),
    timeoutMs: nonNegInt.max(3_600_000).default(30_000),
    retries: nonNegInt.max(1000).default(3),
    startPeriodMs: nonNegInt.max(24 * 3_600_000).default(0),
  })
  .strict();

const updateConfig = z
  .object({
    parallelism: nonNegInt.max(100_000).default(DEFAULT_UPDATE_CONFIG.parallelism),
    delayMs: nonNegInt.max(24 * 3_600_000).default(DEFAULT_UPDATE_CONFIG.delayMs),
    monitorMs: nonNegInt.max(24 * 3_600_000).default(DEFAULT_UPDATE_CONFIG.monitorMs),
    failureAction: z.enum(['pause', 'continue', 'rollback']).default(DEFAULT_UPDATE_CONFIG.failureAction),
    maxFailureRatio: z.number().min(0).max(1).default(DEFAULT_UPDATE_CONFIG.maxFailureRatio),
    order: z.enum(['stop-first', 'start-first']).default(DEFAULT_UPDATE_CONFIG.order),
  })
  .strict();

/** The service spec a client sends; every field but name and image has a default. */
export const serviceSpecSchema = z
  .object({
    name: z.string().regex(NAME_RE, 'names start with a letter or digit and use letters, digits, _ . - (at most 63)'),
    project: z.string().regex(NAME_PATTERN, 'project names are lower-case letters, digits and - (at most 63)').default(DEFAULT_PROJECT),
    labels: labels.default({}),
    // One object with optional keys (not a union), so an error names the exact field (mode.replicated.replicas).
    mode: z
      .object({ replicated: z.object({ replicas: nonNegInt.max(100_000) }).strict().optional(), global: z.object({}).strict().optional() })
      .strict()
      .refine((m) => (m.replicated === undefined) !== (m.global === undefined), { message: 'set exactly one of replicated or global' })
      .transform((m): ServiceSpec['mode'] => (m.replicated ? { replicated: m.replicated } : { global: {} }))
      .default({ replicated: { replicas: 1 } }),
    task: z
      .object({
        container: z
          .object({
            image: z.string().min(1, 'an image is required').max(512),
            command: z.array(z.string().max(65_536)).max(1000).default([]),
            env: z.array(z.string().max(65_536).regex(/^[^=\s]+=/, 'env entries are KEY=VALUE')).max(1000).default([]),
            labels: labels.default({}),
            stopGracePeriodMs: nonNegInt.max(3_600_000).default(10_000),
            healthcheck: healthcheck.optional(),
          })
          .strict(),
        forceUpdate: nonNegInt.optional(),
        resources: z
          .object({ reservations: resources.default({ nanoCpus: 0, memoryBytes: 0 }), limits: resources.default({ nanoCpus: 0, memoryBytes: 0 }) })
          .strict()
          .default({ reservations: { nanoCpus: 0, memoryBytes: 0 }, limits: { nanoCpus: 0, memoryBytes: 0 } }),
        restartPolicy: z
          .object({
            condition: z.enum(['none', 'on-failure', 'any']).default('any'),
            delayMs: nonNegInt.default(5000),
            maxAttempts: nonNegInt.default(0),
            windowMs: nonNegInt.default(0),
          })
          .strict()
          .default({ condition: 'any', delayMs: 5000, maxAttempts: 0, windowMs: 0 }),
        placement: z
          .object({
            constraints: z.array(constraint).max(100).default([]),
            preferences: z.array(z.object({ spread: z.string().regex(/^(node\.labels\.|engine\.labels\.)./, 'spread takes node.labels.KEY or engine.labels.KEY') }).strict()).max(10).default([]),
          })
          .strict()
          .default({ constraints: [], preferences: [] }),
      })
      .strict(),
    updateConfig: updateConfig.optional(),
    rollbackConfig: updateConfig.optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    const { limits, reservations } = s.task.resources;
    if (limits.memoryBytes > 0 && limits.memoryBytes < 6 * 1024 * 1024) {
      ctx.addIssue({ code: 'custom', path: ['task', 'resources', 'limits', 'memoryBytes'], message: 'a memory limit must be at least 6MiB' });
    }
    if (limits.memoryBytes > 0 && reservations.memoryBytes > limits.memoryBytes) {
      ctx.addIssue({ code: 'custom', path: ['task', 'resources', 'reservations', 'memoryBytes'], message: 'the memory reservation exceeds the memory limit' });
    }
    if (limits.nanoCpus > 0 && reservations.nanoCpus > limits.nanoCpus) {
      ctx.addIssue({ code: 'custom', path: ['task', 'resources', 'reservations', 'nanoCpus'], message: 'the CPU reservation exceeds the CPU limit' });
    }
  });

export type ServiceSpecInput = z.input<typeof serviceSpecSchema>;

/**
 * `POST /v1/services/:ref/update`: the whole new spec (what `service inspect` shows, changed), like Docker's service
 * update. With `version`, a compare-and-set: refused (409) unless the service is still at that version.
 */
export const serviceUpdateSchema = z.object({ spec: serviceSpecSchema, version: z.number().int().min(1).optional() }).strict();
export type ServiceUpdateRequest = z.input<typeof serviceUpdateSchema>;

// Compile-time check that the schema produces exactly a ServiceSpec.
const _specMatches = (s: z.output<typeof serviceSpecSchema>): ServiceSpec => s;
void _specMatches;

/** `shoal node update`: availability and label changes (applied in that order: add, then remove). */
export const nodeUpdateSchema = z
  .object({
    availability: z.enum(['active', 'pause', 'drain']).optional(),
    /** Promote (manager) or demote (worker): the node takes up its new role on its own. */
    role: z.enum(['manager', 'worker']).optional(),
    labelAdd: labels.default({}),
    labelRm: z.array(z.string().min(1)).default([]),
  })
  .strict();
export type NodeUpdateRequest = z.input<typeof nodeUpdateSchema>;

/** What a node that may become a manager sends: its own admin token's digest and the address it will serve on. */
const managerCandidate = z
  .object({
    adminTokenDigest: z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 digest, 64 lowercase hex digits'),
    address: z.string().min(3).max(300),
  })
  .strict();

/** `POST /v1/join`: a node asks for its certificate with a join token (no other credential). */
export const joinRequestSchema = z
  .object({
    token: z.string().min(1).max(256),
    csr: z.string().min(1).max(16_384),
    /** A node joining with a manager token: the digest of the admin token it made for its own CLI (the token itself
     * never leaves the node), and the address it will serve the API and sessions on. */
    manager: managerCandidate.optional(),
  })
  .strict();
export type JoinRequest = z.input<typeof joinRequestSchema>;

export interface JoinResponse {
  nodeId: string;
  clusterId: string;
  role: 'manager' | 'worker';
  /** PEM: the node's certificate, and the cluster CA. */
  cert: string;
  ca: string;
  /** Addresses of the cluster's managers, the leader first. */
  managers: string[];
  /** A joining manager gets what managers share: the CA key (it signs certificates too) and the store's URL. */
  caKey?: string;
  store?: string;
}

/**
 * `POST /v1/renew`: a node with a valid certificate (presented on the TLS connection) asks for a new one, in the role
 * the cluster now gives it: a promoted worker sends `manager` (as when joining with a manager token).
 */
export const renewRequestSchema = z.object({ csr: z.string().min(1).max(16_384), manager: managerCandidate.optional() }).strict();
export type RenewRequest = z.input<typeof renewRequestSchema>;

/** The answer to a renewal: the certificate, in the node's current role; a manager also gets what managers share. */
export interface RenewResponse {
  cert: string;
  role: 'manager' | 'worker';
  managers: string[];
  caKey?: string;
  store?: string;
}

export const joinRotateSchema = z.object({ role: z.enum(['worker', 'manager']) }).strict();

/** `shoal cluster update`: cluster-wide settings. */
export const clusterUpdateSchema = z
  .object({
    heartbeatPeriodMs: z.number().int().min(50).max(60_000).optional(),
    nodeCertExpiryMs: z.number().int().min(5_000).max(5 * 365 * 24 * 3600 * 1000).optional(),
    taskHistoryLimit: z.number().int().min(0).max(100).optional(),
  })
  .strict();
export type ClusterUpdateRequest = z.input<typeof clusterUpdateSchema>;

export const scaleRequestSchema = z
  .object({
    replicas: nonNegInt.max(100_000),
    /** Compare-and-set: apply only if the service is still at this version (meta.version), else 409 conflict. */
    version: z.number().int().min(1).optional(),
  })
  .strict();
export type ScaleRequest = z.input<typeof scaleRequestSchema>;

// ---------------------------------------------------------------- listing formats (stable field names)

/** `shoal service ls --format json` rows. */
export interface ServiceListItem {
  id: string;
  name: string;
  project: string;
  mode: 'replicated' | 'global';
  image: string;
  replicas: { desired: number; running: number };
}

/** `shoal service ps NAME --format json` rows. */
export interface TaskListItem {
  id: string;
  serviceName: string;
  slot: number;
  nodeId: string;
  desiredState: DesiredState;
  state: TaskState;
  containerId: string;
  error: string;
  createdAt: string;
  /** ISO time the task entered its current state, as the node that runs it saw it (the manager's, before a node has it). */
  stateSince: string;
  /** Extra detail (not in the stable minimum): why a task waits, or what it is doing. */
  message: string;
  /** Hostname of the node, for display. */
  node: string;
  image: string;
  /** Whether the task runs the service's current spec (absent once the service is removed). */
  upToDate?: boolean;
}

/** `shoal node ls --format json` rows. */
export interface NodeListItem {
  id: string;
  hostname: string;
  role: NodeRole;
  availability: NodeAvailability;
  status: NodeStatusState;
  address: string;
  /** Managers only: leader, reachable (its agent has a live session), or unreachable. */
  managerStatus?: 'leader' | 'reachable' | 'unreachable';
}

/** One line of `service logs`, as NDJSON on the wire. */
export interface LogEntry {
  taskId: string;
  serviceName: string;
  slot: number;
  nodeId: string;
  node: string;
  stream: 'stdout' | 'stderr';
  time?: string;
  line: string;
}

/** What a cluster event is about. */
export type ClusterEventType = 'service' | 'task' | 'node';

/**
 * What happened:
 * - create, update, remove: the object was added, its spec (or a service's update state) changed, it was deleted;
 * - state: a task's current state changed (attributes `state`, `state.old`);
 * - desired: a task's desired state changed (attributes `desiredState`, `desiredState.old`);
 * - up, down: a node's status became ready, or left ready (attributes `state`, `state.old`).
 */
export type ClusterEventAction = 'create' | 'update' | 'remove' | 'state' | 'desired' | 'up' | 'down';

/** One line of `GET /v1/events` (NDJSON) and of `shoal events --format json`. */
export interface ClusterEvent {
  /** Store revision of the change: events are in its order (one write may make several events). */
  revision: number;
  /** ISO time of the change: the write's time, or for a removal the time this manager saw it. */
  time: string;
  type: ClusterEventType;
  action: ClusterEventAction;
  /** Id of the service, task or node. */
  id: string;
  /** Service name; task `service.slot` (a global service's: `service.nodeid`); node hostname. */
  name: string;
  /** Details, e.g. a task's service, slot, node, state and error; `X.old` beside `X` for what changed. */
  attributes: Record<string, string>;
}

/** Response header of `GET /v1/events`: ISO time from which the manager's event history is complete. */
export const EVENTS_HISTORY_HEADER = 'shoal-events-history-start';

/** `GET /v1/cluster/status`: who leads, the managers, and the health of the store's members. */
export interface ClusterStatusResponse {
  leader: { nodeId: string; address: string } | null;
  managers: { nodeId: string; hostname: string; address: string; status: NodeStatusState; leader: boolean }[];
  store: { backend: 'sqlite' | 'etcd'; members: { name: string; endpoint: string; healthy: boolean; leader: boolean; error?: string }[] };
}

export interface InfoResponse {
  clusterId: string;
  clusterName: string;
  nodeId: string;
  version: string;
  store: string;
}

/** The error body of every non-2xx response. */
export interface ErrorBody {
  error: { code: string; message: string; violations: { field: string; reason: string }[] };
}

/** Parses HOST:PORT; throws invalid_argument naming the flag. */
export const parseHostPort = (text: string, field = 'listen-addr'): { host: string; port: number } => {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[2]);
  if (!m?.[1] || !Number.isInteger(port) || port > 65535) {
    throw new ShoalError('invalid_argument', `invalid ${field} '${text}': expected HOST:PORT, e.g. 127.0.0.1:7420`, { violations: [{ field, reason: 'expected HOST:PORT' }] });
  }
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
};
