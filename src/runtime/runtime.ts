// The Runtime interface: how an agent runs one task's container, whatever runs it (Docker, plain processes, nothing).

import type { HealthCheck } from '../core/index.js';

/** Everything a runtime needs to make a task's container; derived from a Task by the agent. */
export interface ContainerConfig {
  taskId: string;
  serviceId: string;
  serviceName: string;
  slot: number;
  nodeId: string;
  image: string;
  /** argv; empty = the image's default command. */
  command: string[];
  env: string[];
  labels: Record<string, string>;
  /** Limits; 0 = none. */
  limits: { nanoCpus: number; memoryBytes: number };
  /**
   * The health check; absent: the image's own HEALTHCHECK, if the runtime has images. ['NONE'] turns checks off; an
   * empty `test` keeps the image's test with these timings. Zero timings mean the defaults (30 s, 30 s, 3 retries, 0).
   */
  healthcheck?: HealthCheck;
}

/**
 * What a runtime reports of a container.
 * - created: exists, never started;
 * - running: its main process runs;
 * - exited: its main process ended (`exitCode` set);
 * - missing: the runtime has no such container.
 */
export type ContainerState = 'created' | 'running' | 'exited' | 'missing';

/**
 * What the health check of a container says, as Docker does:
 * - starting: no check has passed yet (and fewer than `retries` counted failures);
 * - healthy: the last check passed;
 * - unhealthy: `retries` checks in a row failed (failures in the start period do not count before a first pass).
 */
export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

/** Characters of a check's output an inspection keeps (the Engine keeps 4 KiB; an error message needs far less). */
export const HEALTH_OUTPUT_MAX = 512;

export interface ContainerInfo {
  id: string;
  /** The task id from the container's labels. */
  taskId: string;
  state: ContainerState;
  exitCode?: number;
  /** Runtime-side failure text (OOM-killed, start error, …); empty when none. */
  error: string;
  /** Labels the runtime keeps on the container (includes the shoal.* ones). */
  labels: Record<string, string>;
  /** Absent: the container has no health check (none configured, or turned off). */
  health?: HealthStatus;
  /** Output of the last check that ran (trimmed, bounded), when one ran; `inspect` only. */
  healthOutput?: string;
}

export interface LogLine {
  stream: 'stdout' | 'stderr';
  /** ISO time the runtime recorded, when it records one. */
  time?: string;
  /** The line without its newline. */
  line: string;
}

export interface LogOptions {
  follow: boolean;
  /** Only the last N lines (undefined = all): across both streams where the runtime keeps one log, per stream where it keeps two. */
  tail?: number;
  /** Only lines at or after this epoch-ms time. */
  since?: number;
  signal: AbortSignal;
}

/** A container ended or changed state outside the agent's own calls, or its health changed (`health` set). */
export interface RuntimeEvent {
  containerId: string;
  taskId: string;
  state: ContainerState;
  health?: HealthStatus;
}

export interface Runtime {
  readonly name: string;
  /** Resources of this host, for the scheduler. */
  capacity(): Promise<{ nanoCpus: number; memoryBytes: number }>;
  /** Creates the container (not started). Throws RuntimeError with `permanent` when it can never succeed (e.g. no such image). */
  create(config: ContainerConfig, signal?: AbortSignal): Promise<string>;
  start(containerId: string, signal?: AbortSignal): Promise<void>;
  /** Stops: SIGTERM, then SIGKILL after `graceMs`. Idempotent; a missing container is not an error. */
  stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void>;
  /** Removes a stopped (or any, forcibly) container. Idempotent. */
  remove(containerId: string, signal?: AbortSignal): Promise<void>;
  inspect(containerId: string, signal?: AbortSignal): Promise<ContainerInfo>;
  /** Every container this runtime holds with a `shoal.task.id` label (optionally only those of one node). */
  list(filter?: { nodeId?: string }, signal?: AbortSignal): Promise<ContainerInfo[]>;
  logs(containerId: string, opts: LogOptions): AsyncIterable<LogLine>;
  /** Container state changes (at least: exits) and health changes until the signal aborts. */
  events(signal: AbortSignal): AsyncIterable<RuntimeEvent>;
  close(): Promise<void>;
}

/** A runtime failure; `permanent` failures reject the task instead of retrying it. */
export class RuntimeError extends Error {
  readonly permanent: boolean;
  constructor(message: string, opts: { permanent?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RuntimeError';
    this.permanent = opts.permanent ?? false;
  }
}

/** Container labels Shoal sets; an agent adopts containers by these after a restart. */
export const LABELS = {
  taskId: 'shoal.task.id',
  serviceId: 'shoal.service.id',
  serviceName: 'shoal.service.name',
  slot: 'shoal.task.slot',
  nodeId: 'shoal.node.id',
} as const;

export const labelsFor = (c: ContainerConfig): Record<string, string> => ({
  ...c.labels,
  [LABELS.taskId]: c.taskId,
  [LABELS.serviceId]: c.serviceId,
  [LABELS.serviceName]: c.serviceName,
  [LABELS.slot]: String(c.slot),
  [LABELS.nodeId]: c.nodeId,
});
