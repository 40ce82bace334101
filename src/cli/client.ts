// A typed HTTP client of the Shoal API, used by the CLI, the tests and the benchmarks.
//
// It knows every manager (any of them serves the API) and fails over between them without ever sending a write
// twice: a request goes to the next manager only when it surely was not processed (no connection, a failed TLS
// handshake, a kept-alive socket reset before any answer), or when it is a read. A 503 naming the leader (a request
// only the leader serves) is sent once more, there. Each answer's list of managers replaces the client's.

import { request, Agent } from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { API_PREFIX, EVENTS_HISTORY_HEADER, LEADER_HEADER, MANAGERS_HEADER, MANAGER_TLS_NAME, WARNINGS_HEADER, type ClusterEvent, type ClusterStatusResponse, type ClusterUpdateRequest, type NodeUpdateRequest, type ErrorBody, type InfoResponse, type LogEntry, type NodeListItem, type ServiceListItem, type ServiceSpecInput, type TaskListItem } from '../protocol/index.js';
import type { AuditEntry, GrantCreateRequest, GrantView, LoginResponse, PasswordRequest, PolicyApplyResult, PolicyTestResult, ProjectView, TeamCreateRequest, TeamMembersRequest, TeamView, TokenCreateRequest, TokenCreateResponse, TokenView, UserCreateRequest, UserView, WhoAmIResponse } from '../protocol/index.js';
import { ShoalError, type Cluster, type Node, type Policy, type Service } from '../core/index.js';
import { parseManagerList, sameList } from '../protocol/index.js';

/** How long a connection (TCP and TLS) may take before the next manager is tried, unless the options say. */
const CONNECT_TIMEOUT_MS = 5000;
/** How long a connected request (not a stream: those may stay silent) may wait for its answer. */
const RESPONSE_TIMEOUT_MS = 30_000;

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
  /** HOST:PORT of the managers, the one to try first first. */
  hosts: string[];
  token: string;
  /** PEM of the cluster CA: the only issuer of a manager certificate this client trusts. */
  ca: string;
  /** How long a connection (TCP and TLS) may take before the next manager is tried; default 5 s. */
  connectTimeoutMs?: number;
  /** Called with the client's new host list (the manager that answered first) when an answer's list changed it. */
  onManagers?: (hosts: string[]) => void;
  /** Called with the messages of `warn` policies a write matched (the write succeeded all the same). */
  onWarnings?: (messages: string[]) => void;
}

/** One request as sent to one manager. */
interface Call {
  method: string;
  path: string;
  body?: unknown;
  signal?: AbortSignal;
  /** An NDJSON stream: no answer timeout (a quiet log stream sends nothing until there is a line). */
  stream?: boolean;
}

/** A manager gave no answer: `reason` says why; `sent` when the request may have been processed all the same. */
class NoAnswer extends Error {
  constructor(
    readonly reason: string,
    readonly sent: boolean,
    /** A kept-alive socket the server had closed: nothing was processed, and a new connection may well work. */
    readonly stale: boolean,
  ) {
    super(reason);
  }
}

/** A 503 from a manager that does not lead, naming the one that does. */
class NotLeader extends Error {
  constructor(
    readonly leader: string,
    readonly error: ApiError,
  ) {
    super(error.message);
  }
}

/** A response whose status was 2xx: its body, to read as JSON or line by line. */
type Body = IncomingMessage;

const readAll = async (res: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
};

/** The messages of the warnings header: a URI-encoded JSON array of strings. */
const parseWarnings = (header: string | string[] | undefined): string[] => {
  if (typeof header !== 'string') return [];
  try {
    const v: unknown = JSON.parse(decodeURIComponent(header));
    if (Array.isArray(v) && v.every((m) => typeof m === 'string')) return v;
  } catch {
    // Reported below: a policy's warning must not vanish because its header was garbled.
  }
  return [`the manager sent warnings this client cannot read (${WARNINGS_HEADER}: ${header.slice(0, 200)})`];
};

/** `path?k=v&…` with the defined values, or `path` when there are none. */
const withQuery = (path: string, params: Record<string, string | number | undefined>): string => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const text = q.toString();
  return text === '' ? path : `${path}?${text}`;
};

/** The API error a non-2xx response carries. */
const apiError = async (res: IncomingMessage): Promise<ApiError> => {
  const status = res.statusCode ?? 0;
  const t = await readAll(res);
  let err: ErrorBody['error'] | undefined;
  try {
    err = (JSON.parse(t) as ErrorBody).error;
  } catch {
    err = undefined;
  }
  return new ApiError(status, err?.code ?? 'internal', err?.message ?? `HTTP ${status}: ${t.slice(0, 200)}`, err?.violations ?? []);
};

export class ShoalClient {
  private readonly agent: Agent;
  private list: string[];

  constructor(private readonly opts: ClientOptions) {
    this.list = parseManagerList(opts.hosts);
    if (this.list.length === 0) throw new ShoalError('invalid_argument', 'a Shoal client needs the address (HOST:PORT) of at least one manager');
    // keepAlive: a CLI command or a test makes many requests; one TLS handshake serves them all.
    this.agent = new Agent({ ca: opts.ca, keepAlive: true, maxSockets: 16 });
  }

  /** The managers this client knows, the one it tries first first. */
  get hosts(): readonly string[] {
    return this.list;
  }

  /** Sends the call to the managers in turn until one answers, as far as that is safe (see the file comment). */
  private async fetch(call: Call): Promise<Body> {
    const failures: string[] = [];
    const order = [...this.list];
    let redirected = false;
    for (let i = 0; i < order.length; i++) {
      const host = order[i] ?? '';
      try {
        return await this.sendFresh(host, call);
      } catch (e) {
        if (e instanceof NotLeader) {
          if (redirected) throw e.error;
          redirected = true;
          order.splice(i + 1, 0, e.leader);
          continue;
        }
        if (!(e instanceof NoAnswer)) throw e;
        if (e.sent && call.method !== 'GET') {
          throw new ApiError(0, 'unavailable', `the Shoal manager at ${host} gave no answer to ${call.method} ${call.path} (${e.reason}): it may or may not have been done; check before trying again`);
        }
        failures.push(`${host}: ${e.reason}`);
      }
    }
    throw new ApiError(0, 'unavailable', `cannot reach any Shoal manager (${failures.join(', ')}); is one running? ('shoal init --detach' starts one)`);
  }

  /** Sends once, and (reads only) once more if a kept-alive connection turned out closed by the server. */
  private async sendFresh(host: string, call: Call): Promise<Body> {
    try {
      return await this.send(host, call);
    } catch (e) {
      if (e instanceof NoAnswer && e.stale) return this.send(host, call);
      throw e;
    }
  }

  private send(host: string, call: Call): Promise<Body> {
    const { method, signal } = call;
    const text = call.body === undefined ? undefined : JSON.stringify(call.body);
    const [hostname = '', port = ''] = splitHostPort(host);
    return new Promise((resolve, reject) => {
      // Until the TLS handshake is done (or a kept-alive socket is used) nothing of the request reached the manager.
      let connected = false;
      let timer: NodeJS.Timeout | undefined;
      const expire = (ms: number, what: string): void => {
        clearTimeout(timer);
        timer = setTimeout(() => req.destroy(new Error(`${what} after ${ms} ms`)), ms);
      };
      const req = request(
        {
          method,
          hostname,
          port,
          path: API_PREFIX + call.path,
          agent: this.agent,
          servername: MANAGER_TLS_NAME,
          headers: { authorization: `Bearer ${this.opts.token}`, ...(text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }) },
          signal,
        },
        (res) => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          const [leader] = status === 503 ? parseManagerList(res.headers[LEADER_HEADER]) : [];
          // A manager that sends us on is not the one to start with next time; the leader's answer lists the managers.
          if (leader === undefined) this.answered(host, res.headers);
          if (status >= 200 && status < 300) {
            const warnings = parseWarnings(res.headers[WARNINGS_HEADER]);
            if (warnings.length > 0) this.opts.onWarnings?.(warnings);
            return resolve(res);
          }
          void apiError(res).then((err) => reject(leader === undefined ? err : new NotLeader(leader, err)), reject);
        },
      );
      const onConnected = (): void => {
        connected = true;
        if (call.stream) clearTimeout(timer);
        else expire(RESPONSE_TIMEOUT_MS, 'no answer');
      };
      // Timed from when the request has a socket: waiting for one of the pool's (all busy with streams) is no failure.
      req.on('socket', (socket) => {
        if (req.reusedSocket) return onConnected();
        expire(this.opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS, 'no connection');
        socket.once('secureConnect', onConnected);
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (signal?.aborted) return reject(e);
        // A kept-alive connection reset as we reuse it is usually one the server closed while idle: the request never
        // reached it, so a read is sent again. A write is not: the same reset comes from a manager killed after it
        // committed the write and before it answered, and sending it again would report that write as a conflict.
        const stale = e.code === 'ECONNRESET' && req.reusedSocket && method === 'GET';
        reject(new NoAnswer(e.code ?? e.message, connected && !stale, stale));
      });
      req.end(text);
    });
  }

  /** `host` answered: it comes first from now on, and the managers it names (if it does) replace the others. */
  private answered(host: string, headers: IncomingHttpHeaders): void {
    const named = parseManagerList(headers[MANAGERS_HEADER]);
    const next = parseManagerList([host, ...(named.length > 0 ? named : this.list)]);
    const changed = !sameList(next, this.list);
    this.list = next;
    if (!changed || named.length === 0) return;
    try {
      this.opts.onManagers?.([...next]);
    } catch {
      // Recording the list (the CLI's context file) only spares a later command a detour; the answer stands.
    }
  }

  private async json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return JSON.parse(await readAll(await this.fetch({ method, path, body, signal }))) as T;
  }

  /** Reads an NDJSON response line by line; `onHeaders` sees the response's headers before the first line. */
  private async *ndjson<T>(path: string, signal?: AbortSignal, onHeaders?: (headers: IncomingHttpHeaders) => void): AsyncGenerator<T> {
    const res = await this.fetch({ method: 'GET', path, signal, stream: true });
    onHeaders?.(res.headers);
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

  /** Replaces the spec (a changed task template starts a rolling update); with `version`, a compare-and-set. */
  updateService(ref: string, spec: ServiceSpecInput, version?: number): Promise<Service> {
    return this.json('POST', `/services/${encodeURIComponent(ref)}/update`, version === undefined ? { spec } : { spec, version });
  }

  rollbackService(ref: string): Promise<Service> {
    return this.json('POST', `/services/${encodeURIComponent(ref)}/rollback`, {});
  }

  /** With `version`, a compare-and-set: refused (409 conflict) unless the service is still at that version. */
  scaleService(ref: string, replicas: number, version?: number): Promise<Service> {
    return this.json('POST', `/services/${encodeURIComponent(ref)}/scale`, version === undefined ? { replicas } : { replicas, version });
  }

  serviceTasks(ref: string): Promise<TaskListItem[]> {
    return this.json('GET', `/services/${encodeURIComponent(ref)}/tasks`);
  }

  /** The service's task list now and after every change, until the signal aborts or the removed service is gone. */
  watchServiceTasks(ref: string, signal?: AbortSignal): AsyncGenerator<TaskListItem[]> {
    return this.ndjson(`/services/${encodeURIComponent(ref)}/tasks?watch=1`, signal);
  }

  /**
   * Log lines of a service's tasks, or of one task when `ref` names a task. `since`: RFC 3339, Unix seconds, or a
   * duration before now (10m).
   */
  serviceLogs(ref: string, opts: { follow?: boolean; tail?: number; since?: string; signal?: AbortSignal } = {}): AsyncGenerator<LogEntry> {
    const q = new URLSearchParams();
    if (opts.follow) q.set('follow', '1');
    if (opts.tail !== undefined) q.set('tail', String(opts.tail));
    if (opts.since !== undefined) q.set('since', opts.since);
    return this.ndjson(`/services/${encodeURIComponent(ref)}/logs?${q.toString()}`, opts.signal);
  }

  /**
   * Cluster events: the manager's history from `since` (RFC 3339, Unix seconds, or a duration before now), then with
   * `follow` new events until `until` or the signal aborts. `onHistoryStart` gets the time from which the manager's
   * history is complete (it keeps events since it started). `filters`: `type=service|task|node`, any of them.
   */
  events(opts: { since?: string; until?: string; filters?: string[]; follow?: boolean; signal?: AbortSignal; onHistoryStart?: (iso: string) => void } = {}): AsyncGenerator<ClusterEvent> {
    const q = new URLSearchParams();
    if (opts.since !== undefined) q.set('since', opts.since);
    if (opts.until !== undefined) q.set('until', opts.until);
    for (const f of opts.filters ?? []) q.append('filter', f);
    if (opts.follow) q.set('follow', '1');
    return this.ndjson(`/events?${q.toString()}`, opts.signal, (h) => {
      const start = h[EVENTS_HISTORY_HEADER];
      if (typeof start === 'string') opts.onHistoryStart?.(start);
    });
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

  clusterStatus(): Promise<ClusterStatusResponse> {
    return this.json('GET', '/cluster/status');
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

  // ------------------------------------------------------------ access: sign-in, users, teams, tokens, grants

  /** A session token for a user's password (the only call that needs no credential). */
  login(user: string, password: string): Promise<LoginResponse> {
    return this.json('POST', '/login', { user, password });
  }

  whoami(): Promise<WhoAmIResponse> {
    return this.json('GET', '/whoami');
  }

  listUsers(): Promise<UserView[]> {
    return this.json('GET', '/users');
  }

  createUser(req: UserCreateRequest): Promise<UserView> {
    return this.json('POST', '/users', req);
  }

  /** Also revokes the user's tokens, removes their grants and takes them out of their teams. */
  removeUser(name: string): Promise<{ name: string }> {
    return this.json('DELETE', `/users/${encodeURIComponent(name)}`);
  }

  /** Your own password needs `currentPassword` (when you have one); an admin sets anyone's without. */
  setPassword(name: string, req: PasswordRequest): Promise<{ name: string }> {
    return this.json('POST', `/users/${encodeURIComponent(name)}/password`, req);
  }

  listTeams(): Promise<TeamView[]> {
    return this.json('GET', '/teams');
  }

  createTeam(req: TeamCreateRequest): Promise<TeamView> {
    return this.json('POST', '/teams', req);
  }

  inspectTeam(name: string): Promise<TeamView> {
    return this.json('GET', `/teams/${encodeURIComponent(name)}`);
  }

  removeTeam(name: string): Promise<{ name: string }> {
    return this.json('DELETE', `/teams/${encodeURIComponent(name)}`);
  }

  changeTeamMembers(name: string, req: TeamMembersRequest): Promise<TeamView> {
    return this.json('POST', `/teams/${encodeURIComponent(name)}/members`, req);
  }

  /** Your own tokens; with `user`, that user's (admin); an admin without `user` sees every token. */
  listTokens(user?: string): Promise<TokenView[]> {
    return this.json('GET', withQuery('/tokens', { user }));
  }

  /** The response holds the token's secret text: the only time it is shown. */
  createToken(req: TokenCreateRequest): Promise<TokenCreateResponse> {
    return this.json('POST', '/tokens', req);
  }

  revokeToken(id: string): Promise<{ id: string }> {
    return this.json('DELETE', `/tokens/${encodeURIComponent(id)}`);
  }

  listGrants(filter: { user?: string; team?: string; project?: string } = {}): Promise<GrantView[]> {
    return this.json('GET', withQuery('/grants', filter));
  }

  addGrant(req: GrantCreateRequest): Promise<GrantView> {
    return this.json('POST', '/grants', req);
  }

  removeGrant(id: string): Promise<{ id: string }> {
    return this.json('DELETE', `/grants/${encodeURIComponent(id)}`);
  }

  /** The projects (named by services and grants) in which the caller may read services. */
  listProjects(): Promise<ProjectView[]> {
    return this.json('GET', '/projects');
  }

  // ------------------------------------------------------------ policies and the audit log

  /** Creates or updates each policy of a YAML file (one or more documents); nothing changes if one is invalid. */
  applyPolicies(source: string): Promise<PolicyApplyResult[]> {
    return this.json('POST', '/policies', { source });
  }

  /** A dry run: each policy of the file against every existing service, enforcing and storing nothing. */
  testPolicies(source: string): Promise<PolicyTestResult[]> {
    return this.json('POST', '/policies/test', { source });
  }

  listPolicies(): Promise<Policy[]> {
    return this.json('GET', '/policies');
  }

  inspectPolicy(name: string): Promise<Policy> {
    return this.json('GET', `/policies/${encodeURIComponent(name)}`);
  }

  removePolicy(name: string): Promise<{ name: string }> {
    return this.json('DELETE', `/policies/${encodeURIComponent(name)}`);
  }

  /** Audit log entries, oldest first; `since`/`until` as RFC 3339, Unix seconds or a duration before now; `limit`: the newest N. */
  audit(filter: { user?: string; since?: string; until?: string; limit?: number } = {}): Promise<AuditEntry[]> {
    return this.json('GET', withQuery('/audit', filter));
  }
}
