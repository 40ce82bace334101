// The dispatcher: the manager's end of agent sessions — authenticates nodes, records heartbeats, applies status
// reports, pushes each node its complete set of assigned tasks, and relays log requests.
//
// Invariants: a node only reports on tasks assigned to it; reports only move a task forward (core transition());
// at most one session per node is current, and only the current one's heartbeats and reports count.

import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { TLSSocket } from 'node:tls';
import { ShoalError, jsonOf, transition, type Cluster, type Node, type NodeDescription, type NodeRole, type Task } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { isoNow } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { chunked } from '../lib/chunks.js';
import { rawText } from '../lib/ws-text.js';
import { background } from '../lib/turn-budget.js';
import {
  LEADER_HEADER,
  SESSION_PATH,
  SESSION_PROTOCOL_VERSION,
  parseMessage,
  type AgentMessage,
  type AssignedTask,
  type LogsDataMessage,
  type ManagerMessage,
  type TaskStatusUpdate,
} from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { Op, Store, WatchEvent } from '../store/store.js';
import type { LogSource } from '../api/server.js';
import type { HeartbeatSource } from '../reconcile/index.js';
import { verifyNodeCertificate, type NodeIdentity } from '../pki/index.js';

export interface DispatcherOptions {
  store: Store;
  cache: Cache;
  clock: Clock;
  logger: Logger;
  newId: () => string;
  /** PEM of the cluster CA: a session needs a node certificate it issued. */
  ca: string;
  /** Called when a session opens or closes, so node health can re-evaluate at once. */
  onSessionChange?: () => void;
  /** Addresses of every manager, the leader first: each welcome tells the agent where to go if this one is lost. */
  managers: () => string[];
}

const HELLO_TIMEOUT_MS = 5000;
/**
 * How long assignment changes gather before the nodes they touch are sent what changed: a node gets one message for a
 * burst of scheduling passes and controller writes, not one per write.
 */
const ASSIGNMENT_COALESCE_MS = 50;
/**
 * The window after a flush grows by this much per node it sent to. While a thousand nodes get a task from every
 * reconcile, one message per node per 50 ms took a tenth of the manager's event loop (a send costs ~50 µs: WebSocket
 * frame, TLS record, a syscall); a 250 ms window gathers five reconciles in one message. A small cluster keeps 50 ms.
 */
const COALESCE_MS_PER_NODE = 0.2;
/**
 * How often every connected node's set is checked, even without changes: it is sent a digest of its set
 * (assignments-check) and asks for the whole set if it holds another.
 */
const CHECK_PERIOD_MS = 30_000;
/**
 * The checks go round the sessions in this many slices per period, one slice per tick (checkSlice): all at once, a
 * thousand nodes' whole sets of a hundred tasks (what it sent before digests) held the event loop for about a second.
 */
const CHECK_SLICES = 30;
const CONFLICT_RETRIES = 8;

/** What a flush sends a node: what changed of its set (or the whole set), and whether a digest of it. */
interface Due {
  id: string;
  what: Set<string> | 'all' | undefined;
  check: boolean;
}

interface Session {
  nodeId: string;
  /** The role the node's certificate names. */
  role: NodeRole;
  /** When the certificate the session was opened with expires: the session ends then (the node renews first). */
  notAfter: number;
  ws: WebSocket;
  /** Log requests in flight on this session. */
  logs: Map<string, LogStream>;
  /**
   * The node's set as last sent (task id → version), so a change is sent as an update of what changed. Versions, not
   * the task objects: those would keep every task's replaced version (and its JSON) alive until the next whole set.
   */
  sent: Map<string, number>;
}

/** A status update from a node, and how many times its commit met a conflict. */
interface Report {
  nodeId: string;
  update: TaskStatusUpdate;
  conflicts: number;
}

/** A task after a status update from its node: undefined when the update changes nothing (or moves it backwards). */
const afterUpdate = (t: Task, u: TaskStatusUpdate): Task | undefined => {
  const containerId = u.removed ? '' : u.containerId || t.status.containerId;
  const state = transition(t.status.state, u.state);
  if (state === undefined) {
    // A finished task's container went away: record that (its state stays final).
    return u.removed && t.status.containerId !== '' ? { ...t, status: { ...t.status, containerId: '' } } : undefined;
  }
  if (state === t.status.state && containerId === t.status.containerId && u.message === t.status.message) return undefined;
  return { ...t, status: { state, timestamp: u.timestamp, message: u.message, error: u.error, containerId, ...(u.exitCode === undefined ? {} : { exitCode: u.exitCode }) } };
};

/** A pull-based queue of log lines fed by logs-data messages. */
class LogStream {
  private readonly lines: LogsDataMessage['lines'] = [];
  private ended = false;
  private error: string | undefined;
  private wake: (() => void) | undefined;

  push(lines: LogsDataMessage['lines']): void {
    this.lines.push(...lines);
    this.wake?.();
  }

  end(error?: string): void {
    this.ended = true;
    this.error = error;
    this.wake?.();
  }

  async *drain(signal: AbortSignal): AsyncGenerator<LogsDataMessage['lines'][number]> {
    while (!signal.aborted) {
      const l = this.lines.shift();
      if (l) {
        yield l;
        continue;
      }
      if (this.ended) {
        if (this.error !== undefined) throw new ShoalError('unavailable', this.error);
        return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      this.wake = undefined;
    }
  }
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 503: 'Service Unavailable' };

/** Answers an upgrade request with an HTTP error and closes the connection. */
const refuseUpgrade = (socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void => {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: text/plain\r\n${extra}connection: close\r\n\r\n${message}\n`);
};

/** A manager that does not lead refuses sessions and names the leader (when it knows one), where the agent goes next. */
export const refuseNotLeader = (socket: Duplex, leader: string | undefined): void =>
  refuseUpgrade(socket, 503, leader ? `this manager does not lead; the leader is at ${leader}` : 'no manager leads right now; retry shortly', leader ? { [LEADER_HEADER]: leader } : {});

/** Whether a task event changes what its node must be told (not just a status the node itself reported). */
const affectsAssignment = (ev: WatchEvent): boolean => {
  if (ev.object.kind !== 'task') return false;
  const t = ev.object;
  const p = ev.prev as Task | undefined;
  if (ev.type === 'delete' || !p) return true;
  return p.desiredState !== t.desiredState || p.nodeId !== t.nodeId || (p.status.state === 'pending') !== (t.status.state === 'pending');
};

/**
 * The sessions whose set is checked at this tick: the next ceil(n / slices) of `ids` from `cursor`, wrapping
 * round, and where the next tick starts. Every session is in one of any `slices` ticks in a row.
 */
export const checkSlice = (ids: readonly string[], cursor: number, slices: number): { ids: string[]; cursor: number } => {
  if (ids.length === 0) return { ids: [], cursor: 0 };
  const start = cursor % ids.length;
  const n = Math.ceil(ids.length / slices);
  return { ids: Array.from({ length: n }, (_, i) => ids[(start + i) % ids.length] as string), cursor: (start + n) % ids.length };
};

/** Tasks an agent is told about: every task placed on its node (pending ones are not placed yet). */
const assignedTo = (t: Task): boolean => t.status.state !== 'pending' && t.status.state !== 'new';

const toAssigned = (t: Task): AssignedTask => ({
  id: t.id,
  serviceId: t.serviceId,
  serviceName: t.serviceName,
  slot: t.slot,
  nodeId: t.nodeId,
  spec: t.spec,
  desiredState: t.desiredState,
  serviceVersion: t.serviceVersion,
  state: t.status.state,
  containerId: t.status.containerId,
});

/**
 * Each task as the agent is sent it, as JSON, per task object: the cache replaces an object when the task is written
 * and never changes it, so a full assignment set is mostly spliced from strings made earlier, not serialized again.
 */
const assignedJson = new WeakMap<Task, string>();
const assignedJsonOf = (t: Task): string => {
  let json = assignedJson.get(t);
  if (json === undefined) {
    // The spec (half a task's JSON) spliced in: the tasks of a service version share one frozen spec, serialized once.
    const rest = JSON.stringify({ ...toAssigned(t), spec: undefined });
    assignedJson.set(t, (json = `${rest.slice(0, -1)},"spec":${jsonOf(t.spec)}}`));
  }
  return json;
};

export class Dispatcher implements HeartbeatSource, LogSource {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  private readonly sessions = new Map<string, Session>();
  private readonly heartbeats = new Map<string, number>();
  private readonly left = new Set<string>();
  /** Nodes whose session broke (closed without a close frame) and that have not connected since: when it broke. */
  private readonly dropped = new Map<string, number>();
  /** Nodes to send to at the next flush: the ids of the tasks that changed, or 'all' for the whole set. */
  private readonly dirty = new Map<string, Set<string> | 'all'>();
  /** Nodes to send a digest of their set at the next flush (after any change of it). */
  private readonly checks = new Set<string>();
  private flushScheduled = false;
  /** The coalescing window until the next flush, from the size of the last one. */
  private coalesceMs = ASSIGNMENT_COALESCE_MS;
  /** Status updates waiting for the next status commit; one is being written. */
  private reports: Report[] = [];
  private reporting = false;

  constructor(private readonly opts: DispatcherOptions) {}

  /** Follows the cache and pushes assignment changes until the signal aborts; then closes every session. */
  run(signal: AbortSignal): void {
    let managers = this.opts.managers().join(',');
    const unsubscribe = this.opts.cache.subscribe((events) => {
      // A new heartbeat period or a changed set of managers reaches agents as a fresh welcome (which also resets
      // their heartbeat timer).
      let rewelcome = events.some((ev) => ev.object.kind === 'cluster' && (ev.prev as Cluster | undefined)?.spec.heartbeatPeriodMs !== ev.object.spec.heartbeatPeriodMs);
      if (events.some((ev) => ev.object.kind === 'node')) {
        const now = this.opts.managers().join(',');
        rewelcome ||= now !== managers;
        managers = now;
      }
      if (rewelcome) for (const s of this.sessions.values()) this.welcome(s);
      for (const ev of events) {
        // A promoted or demoted node hears of its new role in a fresh welcome, and takes it up.
        if (!rewelcome && ev.object.kind === 'node' && ev.prev && (ev.prev as Node).spec.role !== ev.object.spec.role) {
          const s = this.sessions.get(ev.object.id);
          if (s) this.welcome(s);
        }
        // A node removed while connected is told to run nothing (so no service runs more than it asked), then loses
        // its session (and cannot open another).
        if (ev.object.kind === 'cluster') {
          for (const s of this.sessions.values()) {
            if (!this.removed(s.nodeId)) continue;
            s.sent.clear();
            this.send(s, { type: 'assignments', tasks: [] });
            s.ws.close(1008, 'node removed from the cluster');
          }
        }
        if (!affectsAssignment(ev)) continue;
        const t = ev.object as Task;
        if (t.nodeId) this.markDirty(t.nodeId, t.id);
        const p = ev.prev as Task | undefined;
        if (p?.nodeId && p.nodeId !== t.nodeId) this.markDirty(p.nodeId, t.id);
      }
    });
    let cursor = 0;
    const checks = setInterval(() => {
      const slice = checkSlice([...this.sessions.keys()], cursor, CHECK_SLICES);
      cursor = slice.cursor;
      for (const id of slice.ids) this.markCheck(id);
    }, CHECK_PERIOD_MS / CHECK_SLICES);
    checks.unref();
    const expiry = setInterval(() => {
      const now = this.opts.clock.now();
      for (const s of this.sessions.values()) if (s.notAfter < now) s.ws.close(1008, 'node certificate expired');
    }, 1000);
    expiry.unref();
    signal.addEventListener(
      'abort',
      () => {
        unsubscribe();
        clearInterval(checks);
        clearInterval(expiry);
        for (const s of this.sessions.values()) s.ws.close(1012, 'manager stopping');
        this.wss.close();
      },
      { once: true },
    );
  }

  private removed(nodeId: string): boolean {
    return this.opts.cache.list('cluster')[0]?.auth.removedNodeIds?.includes(nodeId) ?? false;
  }

  // ------------------------------------------------------------ HeartbeatSource

  lastHeartbeat(nodeId: string): number | undefined {
    return this.heartbeats.get(nodeId);
  }

  leftCleanly(nodeId: string): boolean {
    return this.left.has(nodeId);
  }

  droppedAt(nodeId: string): number | undefined {
    return this.dropped.get(nodeId);
  }

  // ------------------------------------------------------------ sessions

  /** Handles an HTTP upgrade to the session WebSocket; refuses anything but an authenticated node. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, message: string): void => {
      this.opts.logger.warn('session refused', { reason: message, remote: req.socket.remoteAddress });
      refuseUpgrade(socket, status, message);
    };
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== SESSION_PATH) return refuse(400, `no WebSocket endpoint at ${url.pathname}`);
    // Mutual TLS: the node is whoever its certificate, issued by this cluster's CA, says it is.
    const tls = req.socket as TLSSocket;
    const peer = typeof tls.getPeerCertificate === 'function' ? tls.getPeerCertificate() : undefined;
    if (!peer?.raw) return refuse(401, 'a node certificate issued by the cluster CA is required');
    let identity: NodeIdentity;
    try {
      identity = verifyNodeCertificate(peer.raw, { ca: this.opts.ca, now: new Date(this.opts.clock.now()) });
    } catch (e) {
      return refuse(401, e instanceof Error ? e.message : String(e));
    }
    if (this.removed(identity.nodeId)) return refuse(401, `node ${identity.nodeId} was removed from the cluster`);
    const remote = req.socket.remoteAddress ?? '';
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(identity, ws, remote));
  }

  private accept(identity: NodeIdentity, ws: WebSocket, remote: string): void {
    const { nodeId } = identity;
    const log = this.opts.logger.child({ nodeId });
    // The node is back (its certificate says so): whatever broke its last session, it is reconnecting.
    this.dropped.delete(nodeId);
    let session: Session | undefined;
    const helloTimer = setTimeout(() => ws.close(1008, 'no hello'), HELLO_TIMEOUT_MS);
    ws.on('message', (data) => {
      let m: AgentMessage;
      try {
        m = parseMessage<AgentMessage>(rawText(data), ['hello', 'heartbeat', 'status', 'logs-data', 'logs-end', 'assignments-request']);
      } catch (e) {
        log.warn('bad message from agent', { error: e });
        return;
      }
      if (!session) {
        if (m.type !== 'hello') return;
        clearTimeout(helloTimer);
        if (m.protocol !== SESSION_PROTOCOL_VERSION || m.nodeId !== nodeId) {
          ws.close(1008, `protocol ${m.protocol} not supported or node id mismatch`);
          return;
        }
        const s: Session = { nodeId, role: identity.role, notAfter: identity.notAfter.getTime(), ws, logs: new Map(), sent: new Map() };
        session = s;
        // The hello is a sign of life: a node registered for the first time is not found down (no heartbeat yet)
        // while its registration is written.
        this.heartbeats.set(nodeId, this.opts.clock.now());
        // A node that names no address is known by the address its session comes from.
        const description = m.description.address === '' ? { ...m.description, address: remote.replace(/^::ffff:/, '') } : m.description;
        void this.register(s, description, identity.role).catch((e: unknown) => {
          log.error('cannot register node', { error: e });
          ws.close(1011, 'cannot register node');
        });
        return;
      }
      if (this.sessions.get(nodeId) !== session) return;
      const s = session;
      // Every message is a sign of life: an agent heartbeats only in a period it sent nothing else (protocol 3).
      this.heartbeats.set(nodeId, this.opts.clock.now());
      switch (m.type) {
        case 'heartbeat':
          break;
        case 'status':
          this.report(nodeId, m.updates);
          break;
        case 'logs-data':
          s.logs.get(m.requestId)?.push(m.lines);
          break;
        case 'logs-end':
          s.logs.get(m.requestId)?.end(m.error);
          s.logs.delete(m.requestId);
          break;
        case 'assignments-request':
          // The node holds another set than the digest it was sent: it gets the whole set.
          log.info('node asked for its whole assignment set');
          this.markDirty(nodeId);
          break;
        case 'hello':
          break;
      }
    });
    ws.on('error', (e) => log.debug('session error', { error: e }));
    ws.on('close', (code) => {
      clearTimeout(helloTimer);
      if (!session || this.sessions.get(nodeId) !== session) return;
      this.sessions.delete(nodeId);
      for (const l of session.logs.values()) l.end('the node closed its session');
      // 1001 "going away" is what an agent sends when it stops on purpose: the node left, it did not fail.
      if (code === 1001) {
        this.left.add(nodeId);
        this.heartbeats.delete(nodeId);
      }
      // 1006: the connection ended without a close frame. The agent process died (its kernel closed the socket) or
      // the connection broke; an agent that lives reconnects within ~100 ms.
      if (code === 1006) this.dropped.set(nodeId, this.opts.clock.now());
      log.info('session closed', { code });
      this.opts.onSessionChange?.();
    });
  }

  private async register(s: Session, description: NodeDescription, role: NodeRole): Promise<void> {
    await this.upsertNode(s.nodeId, description, role);
    const previous = this.sessions.get(s.nodeId);
    this.sessions.set(s.nodeId, s);
    if (previous) previous.ws.close(1008, 'replaced by a newer session');
    this.left.delete(s.nodeId);
    this.heartbeats.set(s.nodeId, this.opts.clock.now());
    this.welcome(s);
    this.sendAssignments(s);
    this.opts.logger.info('session established', { nodeId: s.nodeId, hostname: description.hostname });
    this.opts.onSessionChange?.();
  }

  /** Records what the node says it is; a node seen for the first time is registered, active, in its certificate's role. */
  private async upsertNode(nodeId: string, d: NodeDescription, role: NodeRole): Promise<void> {
    const { cache, store, clock } = this.opts;
    for (let attempt = 0; ; attempt++) {
      const n = cache.get('node', nodeId);
      let op: Op | undefined;
      if (!n) {
        const iso = isoNow(clock);
        const node: Node = {
          kind: 'node',
          id: nodeId,
          meta: { version: 0, createdAt: iso, updatedAt: iso },
          spec: { role, availability: 'active', labels: {} },
          description: d,
          status: { state: 'unknown', message: 'registered' },
        };
        op = { op: 'create', object: node };
      } else if (JSON.stringify(n.description) !== JSON.stringify(d)) {
        op = { op: 'update', object: { ...n, description: d } };
      }
      if (!op) return;
      try {
        const r = await store.commit([op]);
        await cache.waitFor(r.revision);
        return;
      } catch (e) {
        if (!(e instanceof ShoalError) || attempt >= CONFLICT_RETRIES) throw e;
        await cache.waitFor(await store.revision());
      }
    }
  }

  private welcome(s: Session): void {
    const cluster = this.opts.cache.list('cluster')[0];
    const role = this.opts.cache.get('node', s.nodeId)?.spec.role ?? s.role;
    this.send(s, { type: 'welcome', nodeId: s.nodeId, heartbeatPeriodMs: cluster?.spec.heartbeatPeriodMs ?? 500, managers: this.opts.managers(), role });
  }

  private send(s: Session, m: ManagerMessage): void {
    if (s.ws.readyState === s.ws.OPEN) s.ws.send(JSON.stringify(m));
  }

  /** Notes that a node must hear of a change of one task (without one: be sent its whole set), at the next flush. */
  private markDirty(nodeId: string, taskId?: string): void {
    if (!this.sessions.has(nodeId)) return;
    const cur = this.dirty.get(nodeId);
    if (taskId === undefined || cur === 'all') this.dirty.set(nodeId, 'all');
    else if (cur) cur.add(taskId);
    else this.dirty.set(nodeId, new Set([taskId]));
    this.scheduleFlush();
  }

  /** Notes that a node is due a digest of its set, at the next flush. */
  private markCheck(nodeId: string): void {
    if (!this.sessions.has(nodeId)) return;
    this.checks.add(nodeId);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    // One flush at a time: changes made while one sends wait for the next, a window after it ends (overlapping
    // flushes sent the same nodes more, smaller messages, and the nodes answered each).
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Coalesce: one message per node per burst of writes, however many tasks changed.
    setTimeout(() => {
      const due: Due[] = [...this.dirty].map(([id, what]) => ({ id, what, check: this.checks.delete(id) }));
      for (const id of this.checks) due.push({ id, what: undefined, check: true });
      this.dirty.clear();
      this.checks.clear();
      this.coalesceMs = ASSIGNMENT_COALESCE_MS + due.length * COALESCE_MS_PER_NODE;
      void this.sendSlices(due)
        .catch((e: unknown) => this.opts.logger.warn('cannot send assignments', { error: e, nodes: due.length }))
        .finally(() => {
          this.flushScheduled = false;
          if (this.dirty.size > 0 || this.checks.size > 0) this.scheduleFlush();
        });
    }, this.coalesceMs);
  }

  /**
   * Sends to the nodes due something, in slots of the background budget, letting other callbacks (API requests,
   * reports) run between them: a thousand nodes' messages in one go would hold the event loop for a hundred
   * milliseconds and more.
   */
  private async sendSlices(due: Due[]): Promise<void> {
    let i = 0;
    while (i < due.length) {
      await background.slot();
      do {
        const { id, what, check } = due[i++] as Due;
        const s = this.sessions.get(id);
        if (!s) continue;
        if (what === 'all') this.sendAssignments(s);
        else if (what) this.sendUpdate(s, what);
        // A digest describes the set as sent: with a change not sent yet (the node is dirty again), at the next flush.
        if (!check || what === 'all') continue;
        if (this.dirty.has(id)) this.markCheck(id);
        else this.sendCheck(s);
      } while (i < due.length && !background.spent());
    }
  }

  /** Sends the node a digest of its set (AssignmentsCheckMessage): ~50 bytes a task where the whole set is ~600. */
  private sendCheck(s: Session): void {
    const tasks = this.opts.cache.tasksOfNode(s.nodeId).filter(assignedTo);
    this.send(s, { type: 'assignments-check', tasks: tasks.map((t) => [t.id, t.status.state, t.desiredState]) });
  }

  /** Sends the node its whole set (at the start of a session, and when it asks for it after a check). */
  private sendAssignments(s: Session): void {
    if (s.ws.readyState !== s.ws.OPEN) return;
    const tasks = this.opts.cache.tasksOfNode(s.nodeId).filter(assignedTo);
    s.sent = new Map(tasks.map((t) => [t.id, t.meta.version]));
    // An AssignmentsMessage, spliced: {"type":"assignments","tasks":[…]}.
    s.ws.send(`{"type":"assignments","tasks":[${tasks.map(assignedJsonOf).join(',')}]}`);
  }

  /**
   * Sends the node what changed of `ids` since its set was last sent: the whole set of every node on every change
   * would cost the nodes times the tasks each time the scheduler places a batch.
   */
  private sendUpdate(s: Session, ids: Set<string>): void {
    if (s.ws.readyState !== s.ws.OPEN) return;
    const tasks: string[] = [];
    const removed: string[] = [];
    for (const id of ids) {
      const t = this.opts.cache.get('task', id);
      if (t && t.nodeId === s.nodeId && assignedTo(t)) {
        if (s.sent.get(id) === t.meta.version) continue;
        s.sent.set(id, t.meta.version);
        tasks.push(assignedJsonOf(t));
      } else if (s.sent.delete(id)) {
        removed.push(id);
      }
    }
    if (tasks.length === 0 && removed.length === 0) return;
    // An AssignmentsUpdateMessage, spliced.
    s.ws.send(`{"type":"assignments-update","tasks":[${tasks.join(',')}],"removed":${JSON.stringify(removed)}}`);
  }

  /** Queues a node's status updates for the next status commit (in the order they arrive, across nodes). */
  private report(nodeId: string, updates: TaskStatusUpdate[]): void {
    for (const update of updates) this.reports.push({ nodeId, update, conflicts: 0 });
    if (this.reporting) return;
    this.reporting = true;
    // After this turn's other messages, so the first round takes every report that came in with this one.
    setImmediate(() => void this.applyReports());
  }

  /**
   * Applies the updates of every node that arrived while the last status commit was written, together: a thousand
   * nodes reporting make a few commits (and revisions, each of which every cache listener handles), not a thousand.
   */
  private async applyReports(): Promise<void> {
    try {
      while (this.reports.length > 0) {
        await background.slot();
        const round = this.reports;
        this.reports = [];
        // A round that cannot finish (the store or the cache stopped) drops its reports: an agent that sees the manager
        // behind what it reported says it again.
        await this.applyRound(round).catch((e: unknown) => this.opts.logger.warn('cannot apply status', { error: e, reports: round.length }));
      }
    } finally {
      this.reporting = false;
    }
  }

  /**
   * One round: each task's new status from its cached version and every update of the round in order (only the
   * reporting node's own tasks, only forward moves), written in commits the store accepts. The updates of a commit
   * that met a conflict (a controller wrote one of its tasks meanwhile) go back in the queue, computed again against
   * the newer versions.
   */
  private async applyRound(round: Report[]): Promise<void> {
    const { cache, store, logger } = this.opts;
    const next = new Map<string, { task: Task; reports: Report[] }>();
    for (const r of round) {
      const entry = next.get(r.update.taskId);
      const t = entry?.task ?? cache.get('task', r.update.taskId);
      if (!t || t.nodeId !== r.nodeId) continue;
      const moved = afterUpdate(t, r.update);
      if (moved === undefined) continue;
      if (entry) {
        entry.task = moved;
        entry.reports.push(r);
      } else next.set(moved.id, { task: moved, reports: [r] });
    }
    const entries = [...next.values()];
    let retry: Report[] = [];
    const revisions = await Promise.all(
      chunked(entries, store.maxOpsPerCommit).map(async (chunk) => {
        try {
          return (await store.commit(chunk.map(({ task }) => ({ op: 'update', object: task })), { background: true })).revision;
        } catch (e) {
          const reports = chunk.flatMap((c) => c.reports);
          for (const r of reports) r.conflicts++;
          const again = e instanceof ShoalError && e.code === 'conflict' ? reports.filter((r) => r.conflicts <= CONFLICT_RETRIES) : [];
          if (again.length === 0) logger.warn('cannot apply status', { error: e, tasks: chunk.length });
          retry = retry.concat(again);
          return 0;
        }
      }),
    );
    await cache.waitFor(Math.max(0, ...revisions));
    if (retry.length === 0) return;
    // Catch up with what was written meanwhile, and go again before the reports that came in since.
    await cache.waitFor(await store.revision());
    this.reports = retry.concat(this.reports);
  }

  // ------------------------------------------------------------ LogSource

  async *taskLogs(task: Task, opts: { follow: boolean; tail?: number; since?: number; signal: AbortSignal }): AsyncGenerator<{ stream: 'stdout' | 'stderr'; time?: string; line: string }> {
    const s = this.sessions.get(task.nodeId);
    if (!s) throw new ShoalError('unavailable', `node ${task.nodeId} of task ${task.id} is not connected`);
    const requestId = this.opts.newId();
    const stream = new LogStream();
    s.logs.set(requestId, stream);
    const cancel = (): void => this.send(s, { type: 'logs-cancel', requestId });
    opts.signal.addEventListener('abort', cancel, { once: true });
    this.send(s, {
      type: 'logs-request',
      requestId,
      taskId: task.id,
      follow: opts.follow,
      ...(opts.tail === undefined ? {} : { tail: opts.tail }),
      ...(opts.since === undefined ? {} : { since: opts.since }),
    });
    try {
      yield* stream.drain(opts.signal);
    } finally {
      opts.signal.removeEventListener('abort', cancel);
      s.logs.delete(requestId);
    }
  }
}
