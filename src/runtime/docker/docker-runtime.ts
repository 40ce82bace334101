// The Docker runtime: runs each task as one container of a Docker Engine, reached over its unix socket.

import Docker from 'dockerode';
import type { IncomingMessage } from 'node:http';
import { sleep } from '../../lib/abort.js';
import { backoffDelay } from '../../lib/backoff.js';
import {
  HEALTH_OUTPUT_MAX,
  LABELS,
  labelsFor,
  RuntimeError,
  type ContainerConfig,
  type ContainerInfo,
  type ContainerState,
  type HealthStatus,
  type LogLine,
  type LogOptions,
  type Runtime,
  type RuntimeEvent,
} from '../runtime.js';
import type { HealthCheck } from '../../core/index.js';
import { DockerLogDecoder } from './log-decoder.js';

export interface DockerRuntimeOptions {
  /** Engine socket; several engines may run side by side, each with its own. Default /var/run/docker.sock. */
  socketPath?: string;
}

/** The error shape docker-modem produces for an unexpected HTTP status. */
interface ModemError extends Error {
  statusCode?: number;
  json?: unknown;
}

const statusOf = (e: unknown): number | undefined =>
  e instanceof Error && typeof (e as ModemError).statusCode === 'number' ? (e as ModemError).statusCode : undefined;

/** The Engine's own message ("No such image: x:latest"), without docker-modem's "(HTTP code …)" wrapping. */
const engineMessage = (e: unknown): string => {
  if (e instanceof Error) {
    const json = (e as ModemError).json;
    if (json && typeof json === 'object' && 'message' in json && typeof json.message === 'string') return json.message;
    return e.message.trim();
  }
  return String(e);
};

/** Docker container names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*; anything else in a service name becomes '-'. */
export const containerName = (c: Pick<ContainerConfig, 'serviceName' | 'slot' | 'taskId'>): string =>
  `shoal-${c.serviceName}.${c.slot}.${c.taskId}`.replace(/[^a-zA-Z0-9_.-]/g, '-');

/** Docker's State.Status → ours. paused/restarting still have a live main process; removing/dead do not. */
const mapStatus = (status: string | undefined): ContainerState => {
  switch (status) {
    case 'created':
      return 'created';
    case 'running':
    case 'paused':
    case 'restarting':
      return 'running';
    case 'exited':
    case 'dead':
    case 'removing':
      return 'exited';
    default:
      return 'missing';
  }
};

const missing = (id: string): ContainerInfo => ({ id, taskId: '', state: 'missing', error: '', labels: {} });

const MS = 1_000_000;

/** The Engine's Healthcheck: durations in ns, where 0 (and an empty Test) means "as the image says". */
const engineHealthcheck = (h: HealthCheck): Docker.HealthConfig =>
  h.test[0] === 'NONE'
    ? { Test: ['NONE'] }
    : { Test: h.test, Interval: h.intervalMs * MS, Timeout: h.timeoutMs * MS, Retries: h.retries, StartPeriod: h.startPeriodMs * MS };

const HEALTH_STATUSES: readonly string[] = ['starting', 'healthy', 'unhealthy'] satisfies HealthStatus[];
const asHealth = (s: string | undefined): HealthStatus | undefined => (s !== undefined && HEALTH_STATUSES.includes(s) ? (s as HealthStatus) : undefined);

/**
 * Health from a listing's Status text ("Up 3 seconds (healthy)", "Up 1 second (health: starting)"): the summary has
 * no State.Health, and one inspect per running container on every resync would cost the Engine far more.
 */
const healthOfStatusText = (status: string | undefined): HealthStatus | undefined =>
  asHealth(/\((?:health: )?(starting|healthy|unhealthy)\)$/.exec(status ?? '')?.[1]);

/** "1700000000.123456789": the Engine's seconds.nanoseconds form for `since`. */
const engineTime = (epochNs: bigint): string => {
  const s = epochNs / 1_000_000_000n;
  const ns = epochNs % 1_000_000_000n;
  return `${s}.${ns.toString().padStart(9, '0')}`;
};

interface EngineEvent {
  Type?: string;
  Action?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  timeNano?: number;
}

export class DockerRuntime implements Runtime {
  readonly name = 'docker';
  private readonly docker: Docker;
  /** Aborted by close(): ends every log and event stream this instance opened. */
  private readonly closed = new AbortController();

  constructor(opts: DockerRuntimeOptions = {}) {
    this.docker = new Docker({ socketPath: opts.socketPath ?? '/var/run/docker.sock' });
  }

  async capacity(): Promise<{ nanoCpus: number; memoryBytes: number }> {
    const info = (await this.docker.info()) as { NCPU?: number; MemTotal?: number };
    return { nanoCpus: (info.NCPU ?? 0) * 1e9, memoryBytes: info.MemTotal ?? 0 };
  }

  async create(config: ContainerConfig, signal?: AbortSignal): Promise<string> {
    const name = containerName(config);
    const labels = labelsFor(config);
    try {
      const c = await this.docker.createContainer({
        name,
        Image: config.image,
        ...(config.command.length > 0 ? { Cmd: config.command } : {}),
        Env: config.env,
        Labels: labels,
        ...(config.healthcheck ? { Healthcheck: engineHealthcheck(config.healthcheck) } : {}),
        HostConfig: {
          NanoCpus: config.limits.nanoCpus,
          Memory: config.limits.memoryBytes,
          // Shoal replaces failed tasks with new ones; Docker must never restart a container in place.
          RestartPolicy: { Name: 'no' },
          // tini as PID 1 forwards SIGTERM and reaps: a process that ignores signals as PID 1 (httpd, sleep) would
          // otherwise only die at SIGKILL after the whole grace period (measured: stop in 0.2 s instead of 10 s).
          Init: true,
        },
        ...(signal ? { abortSignal: signal } : {}),
      });
      return c.id;
    } catch (e) {
      const status = statusOf(e);
      if (status === 404) {
        // Shoal never pulls: nodes may have no registry in reach, and a pull would stall the task for minutes.
        throw new RuntimeError(
          `image ${config.image} not found on this node; Shoal does not pull images, so load or build it on the node first (${engineMessage(e)})`,
          { permanent: true, cause: e },
        );
      }
      if (status === 409) return this.adoptByName(name, config, signal, e);
      if (status === 400) {
        throw new RuntimeError(`cannot create container '${name}': the Engine rejected its config: ${engineMessage(e)}`, {
          permanent: true,
          cause: e,
        });
      }
      throw new RuntimeError(`cannot create container '${name}': ${engineMessage(e)}`, { cause: e });
    }
  }

  /** A name conflict after a crash between create and the agent recording the id: the container is ours if its task id matches. */
  private async adoptByName(name: string, config: ContainerConfig, signal: AbortSignal | undefined, conflict: unknown): Promise<string> {
    const existing = await this.inspectRaw(name, signal);
    if (existing && existing.Config?.Labels?.[LABELS.taskId] === config.taskId && existing.Id) return existing.Id;
    throw new RuntimeError(
      `cannot create container '${name}': a container of that name exists and does not belong to task '${config.taskId}'`,
      { permanent: true, cause: conflict },
    );
  }

  async start(containerId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.docker.getContainer(containerId).start(signal ? { abortSignal: signal } : {});
    } catch (e) {
      const status = statusOf(e);
      if (status === 304) return; // already running
      if (status === 404) throw new RuntimeError(`cannot start container '${containerId}': no such container`, { cause: e });
      const msg = engineMessage(e);
      // The runtime (runc) refusing the command is a property of the image and command: retrying cannot help.
      const permanent = /executable file not found|no such file or directory|permission denied/i.test(msg);
      throw new RuntimeError(`cannot start container '${containerId}': ${msg}`, { permanent, cause: e });
    }
  }

  async stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    try {
      await this.docker
        .getContainer(containerId)
        .stop({ t: Math.max(0, Math.ceil(graceMs / 1000)), ...(signal ? { abortSignal: signal } : {}) });
    } catch (e) {
      const status = statusOf(e);
      if (status === 304 || status === 404) return; // already stopped, or gone
      throw new RuntimeError(`cannot stop container '${containerId}': ${engineMessage(e)}`, { cause: e });
    }
  }

  async remove(containerId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({ force: true, v: true, ...(signal ? { abortSignal: signal } : {}) });
    } catch (e) {
      const status = statusOf(e);
      if (status === 404) return;
      if (status === 409 && /already in progress/i.test(engineMessage(e))) return;
      throw new RuntimeError(`cannot remove container '${containerId}': ${engineMessage(e)}`, { cause: e });
    }
  }

  async inspect(containerId: string, signal?: AbortSignal): Promise<ContainerInfo> {
    const raw = await this.inspectRaw(containerId, signal);
    return raw ? this.toInfo(raw) : missing(containerId);
  }

  private async inspectRaw(idOrName: string, signal?: AbortSignal): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await this.docker.getContainer(idOrName).inspect(signal ? { abortSignal: signal } : {});
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw new RuntimeError(`cannot inspect container '${idOrName}': ${engineMessage(e)}`, { cause: e });
    }
  }

  private toInfo(raw: Docker.ContainerInspectInfo): ContainerInfo {
    const labels = raw.Config?.Labels ?? {};
    const state = mapStatus(raw.State?.Status);
    const error = raw.State?.OOMKilled ? 'OOM killed' : (raw.State?.Error ?? '');
    const health = asHealth(raw.State?.Health?.Status);
    const output = raw.State?.Health?.Log?.at(-1)?.Output.trim().slice(0, HEALTH_OUTPUT_MAX);
    return {
      id: raw.Id,
      taskId: labels[LABELS.taskId] ?? '',
      state,
      ...(state === 'exited' ? { exitCode: raw.State?.ExitCode ?? 0 } : {}),
      error,
      labels,
      ...(health ? { health } : {}),
      ...(health && output ? { healthOutput: output } : {}),
    };
  }

  async list(filter: { nodeId?: string } = {}, signal?: AbortSignal): Promise<ContainerInfo[]> {
    const label: string[] = [LABELS.taskId];
    if (filter.nodeId !== undefined) label.push(`${LABELS.nodeId}=${filter.nodeId}`);
    let summaries: Docker.ContainerInfo[];
    try {
      summaries = await this.docker.listContainers({ all: true, filters: { label }, ...(signal ? { abortSignal: signal } : {}) });
    } catch (e) {
      throw new RuntimeError(`cannot list containers: ${engineMessage(e)}`, { cause: e });
    }
    const out: ContainerInfo[] = [];
    for (const s of summaries) {
      const state = mapStatus(s.State);
      if (state === 'exited') {
        // The summary has no exit code or error: inspect the (few, history-bounded) exited ones.
        const info = await this.inspect(s.Id, signal);
        if (info.state !== 'missing') out.push(info);
        continue;
      }
      const labels = s.Labels ?? {};
      const health = healthOfStatusText(s.Status);
      out.push({ id: s.Id, taskId: labels[LABELS.taskId] ?? '', state, error: '', labels, ...(health ? { health } : {}) });
    }
    return out;
  }

  /** Opens a streaming GET on the Engine; the response is destroyed when `signal` aborts. */
  private openStream(path: string, query: Record<string, unknown>, signal: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        {
          path: `${path}?`,
          method: 'GET',
          options: query,
          isStream: true,
          abortSignal: signal,
          statusCodes: { 200: true, 404: 'no such container', 500: 'server error' },
        },
        (err, res) => {
          if (err) reject(err);
          else resolve(res as IncomingMessage);
        },
      );
    });
  }

  logs(containerId: string, opts: LogOptions): AsyncIterable<LogLine> {
    return this.logLines(containerId, opts);
  }

  private async *logLines(containerId: string, opts: LogOptions): AsyncGenerator<LogLine> {
    const signal = AbortSignal.any([opts.signal, this.closed.signal]);
    if (signal.aborted) return;
    const query: Record<string, unknown> = {
      follow: opts.follow,
      stdout: true,
      stderr: true,
      timestamps: true,
      tail: opts.tail === undefined ? 'all' : String(Math.max(0, opts.tail)),
    };
    if (opts.since !== undefined) query.since = engineTime(BigInt(Math.floor(opts.since)) * 1_000_000n);
    let res: IncomingMessage;
    try {
      res = await this.openStream(`/containers/${encodeURIComponent(containerId)}/logs`, query, signal);
    } catch (e) {
      if (signal.aborted) return;
      if (statusOf(e) === 404) throw new RuntimeError(`cannot read logs of container '${containerId}': no such container`, { cause: e });
      throw new RuntimeError(`cannot read logs of container '${containerId}': ${engineMessage(e)}`, { cause: e });
    }
    const onAbort = (): void => {
      res.destroy();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const decoder = new DockerLogDecoder({ timestamps: true });
    // The Engine filters `since` at second granularity on some versions; filter exactly here as well.
    const keep = (l: LogLine): boolean =>
      opts.since === undefined || l.time === undefined || Date.parse(l.time) >= opts.since;
    try {
      for await (const chunk of res) {
        for (const line of decoder.push(chunk as Buffer)) if (keep(line)) yield line;
      }
      for (const line of decoder.end()) if (keep(line)) yield line;
    } catch (e) {
      if (signal.aborted) return; // the stream was destroyed because the caller is done
      throw new RuntimeError(`log stream of container '${containerId}' broke: ${engineMessage(e)}`, { cause: e });
    } finally {
      signal.removeEventListener('abort', onAbort);
      res.destroy();
    }
  }

  events(signal: AbortSignal): AsyncIterable<RuntimeEvent> {
    // Events are asked for from the moment of this call, so none is lost between the call and the
    // connection (the Engine replays its recent events for `since`).
    const sinceNs = BigInt(Date.now()) * 1_000_000n;
    return this.eventStream(signal, sinceNs);
  }

  private async *eventStream(outer: AbortSignal, sinceNs: bigint): AsyncGenerator<RuntimeEvent> {
    const signal = AbortSignal.any([outer, this.closed.signal]);
    let since = sinceNs;
    let attempt = 0;
    while (!signal.aborted) {
      let res: IncomingMessage | undefined;
      const onAbort = (): void => {
        res?.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        res = await this.openStream(
          '/events',
          {
            since: engineTime(since),
            filters: { type: ['container'], label: [LABELS.taskId], event: ['start', 'die', 'oom', 'destroy', 'health_status'] },
          },
          signal,
        );
        let buffered = '';
        for await (const chunk of res) {
          attempt = 0;
          buffered += (chunk as Buffer).toString('utf8');
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const text = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (!text) continue;
            let ev: EngineEvent;
            try {
              ev = JSON.parse(text) as EngineEvent;
            } catch {
              continue;
            }
            // Resume after the last event seen, so a reconnect neither loses nor repeats one.
            if (typeof ev.timeNano === 'number') since = BigInt(ev.timeNano) + 1n;
            const mapped = await this.mapEvent(ev, signal);
            if (mapped) yield mapped;
          }
        }
      } catch {
        // A broken stream (Engine restart, socket error) is retried below; an abort ends the loop.
      } finally {
        signal.removeEventListener('abort', onAbort);
        res?.destroy();
      }
      if (signal.aborted) return;
      try {
        await sleep(backoffDelay(attempt++, { baseMs: 100, maxMs: 5000 }), signal);
      } catch {
        return;
      }
    }
  }

  private async mapEvent(ev: EngineEvent, signal: AbortSignal): Promise<RuntimeEvent | undefined> {
    const containerId = ev.Actor?.ID ?? ev.id;
    const taskId = ev.Actor?.Attributes?.[LABELS.taskId];
    if (ev.Type !== 'container' || !containerId || taskId === undefined) return undefined;
    // The Engine says "health_status: healthy" (one event per change of status), filtered by the prefix alone.
    const health = /^health_status: (.+)$/.exec(ev.Action ?? '')?.[1];
    if (health !== undefined) {
      const status = asHealth(health.trim());
      return status ? { containerId, taskId, state: 'running', health: status } : undefined;
    }
    switch (ev.Action) {
      case 'start':
        return { containerId, taskId, state: 'running' };
      case 'die':
        return { containerId, taskId, state: 'exited' };
      case 'destroy':
        return { containerId, taskId, state: 'missing' };
      case 'oom': {
        // An OOM kill may hit a child rather than the main process: ask what the container is now.
        try {
          const info = await this.inspect(containerId, signal);
          return { containerId, taskId, state: info.state };
        } catch {
          return { containerId, taskId, state: 'running' };
        }
      }
      default:
        return undefined;
    }
  }

  async close(): Promise<void> {
    this.closed.abort();
  }
}
