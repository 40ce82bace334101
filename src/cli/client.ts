// A typed HTTP client of the Shoal API, used by the CLI, the tests and the benchmarks.

import { API_PREFIX, type ClusterUpdateRequest, type NodeUpdateRequest, type ErrorBody, type InfoResponse, type LogEntry, type NodeListItem, type ServiceListItem, type ServiceSpecInput, type TaskListItem } from '../protocol/index.js';
import type { Cluster, Node, Service } from '../core/index.js';

/** An error response of the API, with its stable code and field violations. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly violations: { field: string; reason: string }[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface ClientOptions {
  /** HOST:PORT of a manager. */
  host: string;
  token: string;
}

export class ShoalClient {
  private readonly base: string;

  constructor(private readonly opts: ClientOptions) {
    this.base = `http://${opts.host}${API_PREFIX}`;
  }

  private async fetch(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: { authorization: `Bearer ${this.opts.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw new ApiError(0, 'unavailable', `cannot reach the Shoal manager at ${this.opts.host} (${cause}); is it running? ('shoal init --detach' starts one)`);
    }
    if (!res.ok) {
      const text = await res.text();
      let err: ErrorBody['error'] | undefined;
      try {
        err = (JSON.parse(text) as ErrorBody).error;
      } catch {
        err = undefined;
      }
      throw new ApiError(res.status, err?.code ?? 'internal', err?.message ?? `HTTP ${res.status}: ${text.slice(0, 200)}`, err?.violations ?? []);
    }
    return res;
  }

  private async json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return (await (await this.fetch(method, path, body, signal)).json()) as T;
  }

  /** Reads an NDJSON response line by line. */
  private async *ndjson<T>(path: string, signal?: AbortSignal): AsyncGenerator<T> {
    const res = await this.fetch('GET', path, undefined, signal);
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk as Uint8Array, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim() === '') continue;
        const v = JSON.parse(line) as T | ErrorBody;
        if (v && typeof v === 'object' && 'error' in v && !Array.isArray(v)) throw new ApiError(500, v.error.code, v.error.message, v.error.violations);
        yield v as T;
      }
    }
  }

  info(signal?: AbortSignal): Promise<InfoResponse> {
    return this.json('GET', '/info', undefined, signal);
  }

  listServices(): Promise<ServiceListItem[]> {
    return this.json('GET', '/services');
  }

  createService(spec: ServiceSpecInput): Promise<Service> {
    return this.json('POST', '/services', spec);
  }

  /** Sends a raw body (tests use it to send what the typed method would not let them). */
  raw(method: string, path: string, body?: unknown): Promise<Response> {
    return this.fetch(method, path, body);
  }

  inspectService(ref: string): Promise<Service> {
    return this.json('GET', `/services/${encodeURIComponent(ref)}`);
  }

  removeService(ref: string): Promise<{ id: string; name: string }> {
    return this.json('DELETE', `/services/${encodeURIComponent(ref)}`);
  }

  scaleService(ref: string, replicas: number): Promise<Service> {
    return this.json('POST', `/services/${encodeURIComponent(ref)}/scale`, { replicas });
  }

  serviceTasks(ref: string): Promise<TaskListItem[]> {
    return this.json('GET', `/services/${encodeURIComponent(ref)}/tasks`);
  }

  /** The service's task list now and after every change, until the signal aborts or the removed service is gone. */
  watchServiceTasks(ref: string, signal?: AbortSignal): AsyncGenerator<TaskListItem[]> {
    return this.ndjson(`/services/${encodeURIComponent(ref)}/tasks?watch=1`, signal);
  }

  serviceLogs(ref: string, opts: { follow?: boolean; tail?: number; signal?: AbortSignal } = {}): AsyncGenerator<LogEntry> {
    const q = new URLSearchParams();
    if (opts.follow) q.set('follow', '1');
    if (opts.tail !== undefined) q.set('tail', String(opts.tail));
    return this.ndjson(`/services/${encodeURIComponent(ref)}/logs?${q.toString()}`, opts.signal);
  }

  listNodes(): Promise<NodeListItem[]> {
    return this.json('GET', '/nodes');
  }

  updateNode(ref: string, update: NodeUpdateRequest): Promise<Node> {
    return this.json('POST', `/nodes/${encodeURIComponent(ref)}/update`, update);
  }

  inspectCluster(): Promise<{ id: string; spec: Cluster['spec'] }> {
    return this.json('GET', '/cluster');
  }

  updateCluster(update: ClusterUpdateRequest): Promise<{ id: string; spec: Cluster['spec'] }> {
    return this.json('POST', '/cluster/update', update);
  }

  inspectNode(ref: string): Promise<Node> {
    return this.json('GET', `/nodes/${encodeURIComponent(ref)}`);
  }
}
