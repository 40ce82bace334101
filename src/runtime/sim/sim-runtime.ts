// The sim runtime: a hollow node's runtime. Tasks go through the agent's real state machine and are reported like any
// others, but nothing starts: a "container" is a small in-memory record (a few hundred bytes, so one process can hold
// 100,000), its start takes a configurable latency and fails at a configurable rate, and it may exit by itself after
// a while. It is how Shoal is measured at a scale no single machine can host for real (bench/scale, `shoal sim nodes`).
//
// Choices, compared with Docker and exec:
// - Containers live in a SimHost (the simulated machine) that outlives a runtime instance, as real containers outlive
//   an agent: a second instance on the same host lists, stops and removes what the first started. A host lives only as
//   long as its process.
// - There are no processes: a command is never run, a container has no output (logs are empty) and no health check
//   (a configured one is ignored: the container counts as having none). A stop ends a running container at once with
//   the code a process that honours SIGTERM has (143); nothing ignores a signal, so the grace period is never waited.
// - "Images" are whatever the task names; those listed in `missingImages` are not on this node and are rejected
//   permanently, as the docker runtime rejects an image it does not have.

import { sleep } from '../../lib/abort.js';
import {
  LABELS,
  labelsFor,
  RuntimeError,
  type ContainerConfig,
  type ContainerInfo,
  type ContainerState,
  type LogLine,
  type LogOptions,
  type Runtime,
  type RuntimeEvent,
} from '../runtime.js';

/** A duration in ms: fixed, or drawn uniformly from [min, max] each time. */
export type SimDuration = number | readonly [number, number];

export interface SimRuntimeOptions {
  /** How long a start takes (default 0). */
  startLatencyMs?: SimDuration;
  /** Share of starts that fail, 0..1 (default 0): the start throws and the container ends unstarted. */
  failureRate?: number;
  /** A started container exits by itself this long after its start (default: never), with `exitCode`. */
  exitAfterMs?: SimDuration;
  /** Code of such an exit (default 0: the task completes). */
  exitCode?: number;
  /** Images this node does not have: create rejects them as permanent failures. */
  missingImages?: readonly string[];
  /** What the node offers the scheduler (default 4 CPUs, 8 GiB). */
  capacity?: { nanoCpus: number; memoryBytes: number };
  /** Source of randomness for latencies and failures, in [0, 1) (default Math.random): tests make it deterministic. */
  random?: () => number;
}

/** Code of a container stopped with SIGTERM that honoured it (128 + 15), as the other runtimes report it. */
const STOPPED_CODE = 143;
/** Code recorded for a start that failed: the container never ran. */
const START_FAILED_CODE = 128;
const DEFAULT_CAPACITY = { nanoCpus: 4e9, memoryBytes: 8 * 1024 ** 3 };

interface SimContainer {
  id: string;
  taskId: string;
  labels: Record<string, string>;
  state: Exclude<ContainerState, 'missing'>;
  exitCode?: number;
  error: string;
  /** Pending self-exit (exitAfterMs), cleared by a stop or a removal. */
  exitTimer?: NodeJS.Timeout;
}

/** The simulated machine: its containers, and who listens for their changes (every runtime instance on it). */
export class SimHost {
  readonly containers = new Map<string, SimContainer>();
  readonly listeners = new Set<(e: RuntimeEvent) => void>();

  emit(c: { id: string; taskId: string }, state: ContainerState): void {
    const e: RuntimeEvent = { containerId: c.id, taskId: c.taskId, state };
    for (const l of [...this.listeners]) l(e);
  }
}

const validateOptions = (o: SimRuntimeOptions): void => {
  const rate = o.failureRate ?? 0;
  if (!(rate >= 0 && rate <= 1)) throw new RuntimeError(`invalid sim failure rate ${rate}: it must be between 0 and 1`, { permanent: true });
  for (const [name, d] of [['start latency', o.startLatencyMs], ['exit-after', o.exitAfterMs]] as const) {
    if (d === undefined) continue;
    const [min, max] = typeof d === 'number' ? [d, d] : d;
    if (!(min >= 0 && max >= min)) throw new RuntimeError(`invalid sim ${name} ${JSON.stringify(d)}: use a non-negative number of ms or a range [min, max]`, { permanent: true });
  }
};

const missing = (id: string): ContainerInfo => ({ id, taskId: '', state: 'missing', error: '', labels: {} });

export class SimRuntime implements Runtime {
  readonly name = 'sim';
  private readonly random: () => number;
  private readonly closed = new AbortController();

  constructor(
    private readonly opts: SimRuntimeOptions = {},
    /** The machine this instance drives; a second instance on the same host is an agent restart. */
    readonly host: SimHost = new SimHost(),
  ) {
    validateOptions(opts);
    this.random = opts.random ?? Math.random;
  }

  private draw(d: SimDuration | undefined): number {
    if (d === undefined) return 0;
    if (typeof d === 'number') return d;
    const [min, max] = d;
    return min + this.random() * (max - min);
  }

  async capacity(): Promise<{ nanoCpus: number; memoryBytes: number }> {
    return { ...(this.opts.capacity ?? DEFAULT_CAPACITY) };
  }

  async create(config: ContainerConfig): Promise<string> {
    if (this.opts.missingImages?.includes(config.image)) {
      throw new RuntimeError(`image ${config.image} not found on this simulated node`, { permanent: true });
    }
    // One container per task, whatever the number of creates (an agent retrying after a crash).
    const id = `sim-${config.taskId}`;
    if (this.host.containers.has(id)) return id;
    const c: SimContainer = { id, taskId: config.taskId, labels: labelsFor(config), state: 'created', error: '' };
    this.host.containers.set(id, c);
    this.host.emit(c, 'created');
    return id;
  }

  async start(id: string, signal?: AbortSignal): Promise<void> {
    const c = this.host.containers.get(id);
    if (!c) throw new RuntimeError(`cannot start container '${id}': no such container`);
    if (c.state === 'running') return;
    if (c.state === 'exited') throw new RuntimeError(`cannot start container '${id}': it has already run`, { permanent: true });
    const latency = this.draw(this.opts.startLatencyMs);
    if (latency > 0) await sleep(latency, signal);
    // Stopped or removed while starting: the start has nothing left to do.
    if (this.host.containers.get(id) !== c || c.state !== 'created') return;
    if (this.random() < (this.opts.failureRate ?? 0)) {
      this.end(c, START_FAILED_CODE, 'simulated start failure');
      throw new RuntimeError(`simulated start failure (this sim node fails ${(this.opts.failureRate ?? 0) * 100}% of starts)`);
    }
    c.state = 'running';
    this.host.emit(c, 'running');
    if (this.opts.exitAfterMs !== undefined) {
      c.exitTimer = setTimeout(() => this.end(c, this.opts.exitCode ?? 0, ''), this.draw(this.opts.exitAfterMs));
    }
  }

  /** The container's main "process" ends with `code`. */
  private end(c: SimContainer, code: number, error: string): void {
    clearTimeout(c.exitTimer);
    delete c.exitTimer;
    c.state = 'exited';
    c.exitCode = code;
    c.error = error;
    this.host.emit(c, 'exited');
  }

  /** Nothing ignores a signal here: the grace period is never waited. */
  async stop(id: string, _graceMs?: number): Promise<void> {
    const c = this.host.containers.get(id);
    // A container that never started stays created, as with the other runtimes.
    if (c?.state === 'running') this.end(c, STOPPED_CODE, '');
  }

  async remove(id: string): Promise<void> {
    const c = this.host.containers.get(id);
    if (!c) return;
    clearTimeout(c.exitTimer);
    this.host.containers.delete(id);
    this.host.emit(c, 'missing');
  }

  async inspect(id: string): Promise<ContainerInfo> {
    const c = this.host.containers.get(id);
    return c ? this.info(c) : missing(id);
  }

  private info(c: SimContainer): ContainerInfo {
    return { id: c.id, taskId: c.taskId, state: c.state, error: c.error, labels: c.labels, ...(c.exitCode === undefined ? {} : { exitCode: c.exitCode }) };
  }

  async list(filter: { nodeId?: string } = {}): Promise<ContainerInfo[]> {
    const out: ContainerInfo[] = [];
    for (const c of this.host.containers.values()) {
      if (filter.nodeId === undefined || c.labels[LABELS.nodeId] === filter.nodeId) out.push(this.info(c));
    }
    return out;
  }

  /** A simulated container writes nothing: no lines; a follow ends when the container stops running. */
  async *logs(id: string, opts: LogOptions): AsyncGenerator<LogLine> {
    if (!this.host.containers.has(id)) throw new RuntimeError(`cannot read logs of container '${id}': no such container`);
    if (!opts.follow) return;
    const signal = AbortSignal.any([opts.signal, this.closed.signal]);
    for await (const e of this.events(signal)) if (e.containerId === id && e.state !== 'running' && e.state !== 'created') return;
  }

  events(outer: AbortSignal): AsyncIterable<RuntimeEvent> {
    // Listening starts now, not at the first next(), so a change right after this call is not missed.
    const signal = AbortSignal.any([outer, this.closed.signal]);
    const feed = { queue: [] as RuntimeEvent[], wake: undefined as (() => void) | undefined };
    const listener = (e: RuntimeEvent): void => {
      feed.queue.push(e);
      feed.wake?.();
    };
    const stop = (): void => {
      this.host.listeners.delete(listener);
      feed.wake?.();
    };
    if (!signal.aborted) this.host.listeners.add(listener);
    signal.addEventListener('abort', stop, { once: true });
    return this.drain(feed, signal, stop);
  }

  private async *drain(feed: { queue: RuntimeEvent[]; wake: (() => void) | undefined }, signal: AbortSignal, stop: () => void): AsyncGenerator<RuntimeEvent> {
    try {
      while (!signal.aborted) {
        const e = feed.queue.shift();
        if (e) {
          yield e;
          continue;
        }
        await new Promise<void>((resolve) => (feed.wake = resolve));
        feed.wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', stop);
      stop();
    }
  }

  async close(): Promise<void> {
    this.closed.abort();
  }
}
