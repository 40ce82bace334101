// A typed HTTP client of the Shoal API, used by the CLI, the tests and the benchmarks.

import { request, Agent } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { API_PREFIX, MANAGER_TLS_NAME, type ClusterUpdateRequest, type NodeUpdateRequest, type ErrorBody, type InfoResponse, type LogEntry, type NodeListItem, type ServiceListItem, type ServiceSpecInput, type TaskListItem } from '../protocol/index.js';
import type { Cluster, Node, Service } from '../core/index.js';

/** HOST:PORT (or [v6]:PORT) into its parts. */
const splitHostPort = (hp: string): [string, string] => {
  const i = hp.lastIndexOf(':');
  return [hp.slice(0, i).replace(/^\[|\]$/g, ''), hp.slice(i + 1)];
};

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
  /** PEM of the cluster CA: the only issuer of a manager certificate this client trusts. */
  ca: string;
}

/** A request failed on a reused keep-alive socket before any response: it may be sent again. */
class StaleConnection extends Error {
  constructor(readonly unavailable: ApiError) {
    super(unavailable.message);
  }
}

/** A response whose status was 2xx: its body, to read as JSON or line by line. */
type Body = IncomingMessage;

const readAll = async (res: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
};

export class ShoalClient {
  private readonly agent: Agent;

  constructor(private readonly opts: ClientOptions) {
    // keepAlive: a CLI command or a test makes many requests; one TLS handshake serves them all.
    this.agent = new Agent({ ca: opts.ca, keepAlive: true, maxSockets: 16 });
  }

  private async fetch(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Body> {
    try {
      return await this.send(method, path, body, signal);
    } catch (e) {
      // A kept-alive connection the server closed just as we reused it: a read is safe to send again, once.
      if (method === 'GET' && e instanceof StaleConnection) return this.send(method, path, body, signal);
      throw e instanceof StaleConnection ? e.unavailable : e;
    }
  }

  private send(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Body> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const [hostname = '', port = ''] = splitHostPort(this.opts.host);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          method,
          hostname,
          port,
          path: API_PREFIX + path,
          agent: this.agent,
          servername: MANAGER_TLS_NAME,
          headers: { authorization: `Bearer ${this.opts.token}`, ...(text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }) },
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(res);
          void readAll(res).then((t) => {
            let err: ErrorBody['error'] | undefined;
            try {
              err = (JSON.parse(t) as ErrorBody).error;
            } catch {
              err = undefined;
            }
            reject(new ApiError(status, err?.code ?? 'internal', err?.message ?? `HTTP ${status}: ${t.slice(0, 200)}`, err?.violations ?? []));
          }, reject);
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (signal?.aborted) return reject(e);
        const unavailable = new ApiError(0, 'unavailable', `cannot reach the Shoal manager at ${this.opts.host} (${e.code ?? e.message}); is it running? ('shoal init --detach' starts one)`);
        reject(e.code === 'ECONNRESET' && req.reusedSocket ? new StaleConnection(unavailable) : unavailable);
      });
      req.end(text);
    });
  }

  private async json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return JSON.parse(await readAll(await this.fetch(method, path, body, signal))) as T;
  }

  /** Reads an NDJSON response line by line. */
  private async *ndjson<T>(path: string, signal?: AbortSignal): AsyncGenerator<T> {
    const res = await this.fetch('GET', path, undefined, signal);
    let buf = '';
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        buf += chunk.toString('utf8');
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
    } finally {
      res.destroy();
    }
  }

  /** Closes idle connections (a long-lived client, e.g. a test, calls it when done). */
  close(): void {
    this.agent.destroy();
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

  /** Sends a raw body (tests use it to send what the typed method would not let them); resolves to the parsed body. */
  raw(method: string, path: string, body?: unknown): Promise<unknown> {
    return this.json(method, path, body);
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

  removeNode(ref: string, force: boolean): Promise<{ id: string }> {
    return this.json('DELETE', `/nodes/${encodeURIComponent(ref)}${force ? '?force=1' : ''}`);
  }

  joinTokens(): Promise<{ worker: string; manager: string }> {
    return this.json('GET', '/join-tokens');
  }

  rotateJoinToken(role: 'worker' | 'manager'): Promise<{ worker: string; manager: string }> {
    return this.json('POST', '/join-tokens/rotate', { role });
  }

  inspectNode(ref: string): Promise<Node> {
    return this.json('GET', `/nodes/${encodeURIComponent(ref)}`);
  }
}
