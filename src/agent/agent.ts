// The agent: holds one session with a manager, runs the tasks it is assigned, reports their status, serves logs.
//
// It keeps running its containers while no manager is reachable and reconnects, failing over between the managers
// it knows (managers.ts decides which and when); status changes made while disconnected are kept (latest per task)
// and sent when the session is back.

import { hostname } from 'node:os';
import WebSocket from 'ws';
import type { NodeDescription, NodeRole } from '../core/index.js';
import { sleep } from '../lib/abort.js';
import { rawText } from '../lib/ws-text.js';
import type { Logger } from '../lib/logger.js';
import {
  LEADER_HEADER,
  MANAGER_TLS_NAME,
  SESSION_PATH,
  SESSION_PROTOCOL_VERSION,
  parseManagerList,
  parseMessage,
  type AgentMessage,
  type LogsRequestMessage,
  type ManagerMessage,
  type TaskStatusUpdate,
} from '../protocol/index.js';
import type { Runtime } from '../runtime/runtime.js';
import { ManagerRounds, type SessionOutcome } from './managers.js';
import { TaskRunner } from './task-runner.js';

export interface AgentOptions {
  nodeId: string;
  /** Manager addresses, HOST:PORT, the one to try first first. */
  managers: string[];
  /** Called with the new list (the manager in use first) when a welcome brings a different one, to persist it. */
  onManagers?: (managers: string[]) => void;
  /** The role this node runs in now. */
  role: NodeRole;
  /** Called when a welcome gives the node another role (promoted, demoted): the owner restarts the node in it. */
  onRole?: (role: NodeRole) => void;
  /** TLS material, PEM: the cluster CA (the only issuer of a manager the agent trusts), and this node's certificate
   * and key, which is how the node proves who it is (mutual TLS). */
  tls: { ca: string; cert: string; key: string };
  /** Address this node was started with, shown in `node ls`. */
  address: string;
  /** The hostname the node reports (default: this machine's); hollow nodes sharing one machine each name their own. */
  hostname?: string;
  runtime: Runtime;
  logger: Logger;
  /** How often to re-examine every task even without events. */
  resyncMs?: number;
}

export class Agent {
  readonly runner: TaskRunner;
  private socket: WebSocket | undefined;
  private readonly outbox = new Map<string, TaskStatusUpdate>();
  private flushScheduled = false;
  private readonly rounds: ManagerRounds;
  /** Told once of a new role: the owner restarts the node, this agent with it. */
  private roleChanged = false;
  /** Failure reasons logged since the last session, so each is logged once however often it repeats. */
  private readonly reported = new Set<string>();
  private readonly logStreams = new Map<string, AbortController>();
  private connectedOnce: () => void = () => undefined;
  /** Resolves when the first session is established. */
  readonly connected: Promise<void>;
  private tls: AgentOptions['tls'];
  /** Aborted by kill(): the agent stops as if it crashed. */
  private readonly killed = new AbortController();
  /** Messages sent to managers, by type (for tests and diagnostics). */
  readonly sent: Record<AgentMessage['type'], number> = { hello: 0, heartbeat: 0, status: 0, 'logs-data': 0, 'logs-end': 0, 'assignments-request': 0 };
  /** Messages received from managers, by type (for tests and diagnostics). */
  readonly received: Record<ManagerMessage['type'], number> = { welcome: 0, assignments: 0, 'assignments-update': 0, 'assignments-check': 0, 'logs-request': 0, 'logs-cancel': 0 };
  /** The heartbeat due one period after the session's last message (every send re-arms it). */
  private beatTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: AgentOptions) {
    this.runner = new TaskRunner({ nodeId: opts.nodeId, runtime: opts.runtime, logger: opts.logger, report: (u) => this.queue(u) });
    this.connected = new Promise((resolve) => (this.connectedOnce = resolve));
    this.tls = opts.tls;
    this.rounds = new ManagerRounds(opts.managers);
  }

  /** Uses a renewed certificate from now on: the session is reopened so the manager sees the new one. */
  updateTls(tls: AgentOptions['tls']): void {
    this.tls = tls;
    this.socket?.close(4000, 'certificate renewed');
  }

  /**
   * Stops at once without a goodbye, as a node that crashed would: the session's connection just ends (no close frame),
   * so the manager finds the node down one heartbeat period later unless it reconnects (a stop through run's signal
   * says goodbye, and the node is disconnected instead). Simulated nodes use it to fail.
   */
  kill(): void {
    this.killed.abort();
  }

  /** Runs until the signal aborts (or kill()); containers are left running when it does. */
  async run(outer: AbortSignal): Promise<void> {
    const signal = AbortSignal.any([outer, this.killed.signal]);
    const adopted = await this.runner.adopt(signal);
    if (adopted > 0) this.opts.logger.info(`adopted ${adopted} existing containers`);
    void this.watchRuntime(signal);
    const resync = setInterval(() => {
      this.runner.resync(signal).catch((e: unknown) => this.opts.logger.debug('resync failed', { error: e }));
    }, this.opts.resyncMs ?? 5000);
    try {
      while (!signal.aborted) {
        const address = this.rounds.next();
        const outcome = await this.session(address, signal);
        if (signal.aborted) break;
        const delay = this.rounds.record(address, outcome);
        if (delay > 0) await sleep(delay, signal).catch(() => undefined);
      }
    } finally {
      clearInterval(resync);
      for (const c of this.logStreams.values()) c.abort();
    }
  }

  private async watchRuntime(signal: AbortSignal): Promise<void> {
    try {
      for await (const ev of this.opts.runtime.events(signal)) {
        // Starts are this agent's own doing (and already reported); exits, removals and health changes need a look.
        if ((ev.state !== 'running' && ev.state !== 'created') || ev.health !== undefined) this.runner.touch(ev.taskId);
      }
    } catch (e) {
      if (!signal.aborted) this.opts.logger.warn('runtime event stream ended', { error: e });
    }
  }

  private async description(): Promise<NodeDescription> {
    const cap = await this.opts.runtime.capacity();
    return {
      hostname: this.opts.hostname ?? hostname(),
      address: this.opts.address,
      runtime: this.opts.runtime.name,
      resources: { nanoCpus: cap.nanoCpus, memoryBytes: cap.memoryBytes },
      engineLabels: {},
    };
  }

  /** One attempt at a session with the manager at `address`, through to its end: says how far it got. */
  private session(address: string, signal: AbortSignal): Promise<SessionOutcome> {
    return new Promise((resolve) => {
      let outcome: SessionOutcome = { kind: 'unreachable' };
      const { ca, cert, key } = this.tls;
      // `servername` goes through ws to tls.connect (its types omit it): managers' certificates name their role, so
      // any manager address is checked the same way.
      const options: WebSocket.ClientOptions & { servername: string } = { ca, cert, key, servername: MANAGER_TLS_NAME, handshakeTimeout: 5000 };
      const ws = new WebSocket(`wss://${address}${SESSION_PATH}`, options);
      this.socket = ws;
      const onAbort = (): void => (this.killed.signal.aborted ? ws.terminate() : ws.close(1001, 'agent stopping'));
      signal.addEventListener('abort', onAbort, { once: true });
      ws.on('unexpected-response', (_req, res) => {
        // Answered, but no session: a manager that does not lead (503, naming the leader when it knows one), or a
        // refusal (401/403: this node was removed). Handling the event leaves ending the handshake to us.
        outcome = this.refusal(address, res.statusCode ?? 0, res.headers[LEADER_HEADER]);
        ws.terminate();
      });
      ws.on('open', () => {
        void this.description().then((description) =>
          this.send({ type: 'hello', protocol: SESSION_PROTOCOL_VERSION, nodeId: this.opts.nodeId, description }),
        );
      });
      ws.on('message', (data) => {
        let m: ManagerMessage;
        try {
          m = parseMessage<ManagerMessage>(rawText(data), ['welcome', 'assignments', 'assignments-update', 'assignments-check', 'logs-request', 'logs-cancel']);
        } catch (e) {
          this.opts.logger.warn('bad message from manager', { error: e, manager: address });
          return;
        }
        this.received[m.type]++;
        switch (m.type) {
          case 'welcome':
            // A later welcome in the same session brings a new heartbeat period (or manager list).
            if (outcome.kind !== 'welcomed') this.opts.logger.info('session established', { manager: address });
            outcome = { kind: 'welcomed' };
            clearTimeout(this.beatTimer);
            this.beatTimer = setTimeout(() => this.send({ type: 'heartbeat' }), m.heartbeatPeriodMs);
            this.send({ type: 'heartbeat' });
            this.flush();
            this.connectedOnce();
            this.reported.clear();
            this.adoptManagers(m.managers, address);
            if (m.role !== this.opts.role && !this.roleChanged) {
              this.roleChanged = true;
              this.opts.logger.info(`this node is now a ${m.role}`);
              this.opts.onRole?.(m.role);
            }
            break;
          case 'assignments':
            this.runner.setAssignments(m.tasks);
            break;
          case 'assignments-update':
            this.runner.updateAssignments(m.tasks, m.removed);
            break;
          case 'assignments-check':
            if (!this.runner.check(m.tasks)) this.send({ type: 'assignments-request' });
            break;
          case 'logs-request':
            this.serveLogs(m);
            break;
          case 'logs-cancel':
            this.logStreams.get(m.requestId)?.abort();
            break;
        }
      });
      ws.on('error', (e) => {
        // Say why the manager is unreachable, once per distinct reason rather than on every retry; an answered
        // handshake was reported by `refusal`.
        if (signal.aborted) return;
        if (outcome.kind === 'unreachable') this.reportOnce('warn', 'session failed', { error: e.message, manager: address });
        else if (outcome.kind === 'welcomed') this.opts.logger.debug('session error', { error: e.message, manager: address });
      });
      ws.on('close', (code, reason) => {
        signal.removeEventListener('abort', onAbort);
        if (this.socket === ws) {
          this.socket = undefined;
          clearTimeout(this.beatTimer);
          this.beatTimer = undefined;
        }
        for (const c of this.logStreams.values()) c.abort();
        if (!signal.aborted && outcome.kind === 'welcomed') this.opts.logger.info('session closed', { code, reason: String(reason), manager: address });
        resolve(outcome);
      });
    });
  }

  /** What a non-101 answer to the session upgrade means, logged once per distinct answer. */
  private refusal(address: string, status: number, leaderHeader: string | string[] | undefined): SessionOutcome {
    if (status !== 503) {
      // As ws words it when nobody handles the response, e.g. "Unexpected server response: 401" for a removed node.
      this.reportOnce('warn', 'session failed', { error: `Unexpected server response: ${status}`, manager: address });
      return { kind: 'refused' };
    }
    const [leader] = parseManagerList(leaderHeader);
    if (leader === undefined) {
      this.reportOnce('info', 'manager does not lead and knows no leader yet', { manager: address });
      return { kind: 'not-leader' };
    }
    this.opts.logger.debug('manager does not lead: going to the leader', { manager: address, leader });
    return { kind: 'not-leader', leader };
  }

  /** Takes the manager list of a welcome; tells the owner when it changed. */
  private adoptManagers(managers: unknown, current: string): void {
    if (!this.rounds.adopt(managers, current)) return;
    const list = [...this.rounds.managers];
    this.opts.logger.debug('managers', { managers: list });
    try {
      this.opts.onManagers?.(list);
    } catch (e) {
      // Persisting the list only helps the next start; the session goes on without it.
      this.opts.logger.warn('could not record the manager list', { error: e });
    }
  }

  private reportOnce(level: 'info' | 'warn', msg: string, fields: { manager: string; error?: string }): void {
    const key = `${msg} ${fields.manager} ${fields.error ?? ''}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.opts.logger[level](msg, fields);
  }

  private send(m: AgentMessage): boolean {
    const ws = this.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(m));
    this.sent[m.type]++;
    // The manager takes any message as a sign of life, so the heartbeat is due one period after the last message, not
    // every period: at 1,000 hollow nodes converging, heartbeats every period were more than half of what the manager
    // read and a tenth of the hollow nodes' CPU. Skipping the heartbeat of a tick that followed some other message (the
    // rule before) let nearly two periods pass between messages.
    this.beatTimer?.refresh();
    return true;
  }

  private queue(u: TaskStatusUpdate): void {
    // Only the latest state of a task matters: the manager applies forward moves and drops the rest.
    this.outbox.set(u.taskId, u);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (this.outbox.size === 0) return;
    const updates = [...this.outbox.values()];
    if (this.send({ type: 'status', updates })) this.outbox.clear();
  }

  private serveLogs(m: LogsRequestMessage): void {
    const ctl = new AbortController();
    this.logStreams.set(m.requestId, ctl);
    const cid = this.runner.containerOf(m.taskId);
    void (async () => {
      let error: string | undefined;
      try {
        if (cid === undefined) throw new Error(`task ${m.taskId} has no container on this node`);
        let batch: { stream: 'stdout' | 'stderr'; time?: string; line: string }[] = [];
        let timer: NodeJS.Timeout | undefined;
        const flush = (): void => {
          clearTimeout(timer);
          timer = undefined;
          if (batch.length > 0) this.send({ type: 'logs-data', requestId: m.requestId, lines: batch });
          batch = [];
        };
        const opts = { follow: m.follow, signal: ctl.signal, ...(m.tail === undefined ? {} : { tail: m.tail }), ...(m.since === undefined ? {} : { since: m.since }) };
        for await (const l of this.opts.runtime.logs(cid, opts)) {
          batch.push(l.time === undefined ? { stream: l.stream, line: l.line } : { stream: l.stream, time: l.time, line: l.line });
          if (batch.length >= 200) flush();
          else timer ??= setTimeout(flush, 20);
        }
        flush();
      } catch (e) {
        if (!ctl.signal.aborted) error = e instanceof Error ? e.message : String(e);
      } finally {
        this.logStreams.delete(m.requestId);
        this.send(error === undefined ? { type: 'logs-end', requestId: m.requestId } : { type: 'logs-end', requestId: m.requestId, error });
      }
    })();
  }
}
