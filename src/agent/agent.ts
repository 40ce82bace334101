// The agent: holds one session with a manager, runs the tasks it is assigned, reports their status, serves logs.
//
// It keeps running its containers while the manager is unreachable and reconnects with backoff; status changes
// made while disconnected are kept (latest per task) and sent when the session is back.

import { hostname } from 'node:os';
import WebSocket from 'ws';
import type { NodeDescription } from '../core/index.js';
import { sleep } from '../lib/abort.js';
import { backoffDelay } from '../lib/backoff.js';
import { rawText } from '../lib/ws-text.js';
import type { Logger } from '../lib/logger.js';
import {
  MANAGER_TLS_NAME,
  SESSION_PATH,
  SESSION_PROTOCOL_VERSION,
  parseMessage,
  type AgentMessage,
  type LogsRequestMessage,
  type ManagerMessage,
  type TaskStatusUpdate,
} from '../protocol/index.js';
import type { Runtime } from '../runtime/runtime.js';
import { TaskRunner } from './task-runner.js';

export interface AgentOptions {
  nodeId: string;
  /** Manager address, host:port. */
  manager: string;
  /** TLS material, PEM: the cluster CA (the only issuer of a manager the agent trusts), and this node's certificate
   * and key, which is how the node proves who it is (mutual TLS). */
  tls: { ca: string; cert: string; key: string };
  /** Address this node was started with, shown in `node ls`. */
  address: string;
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
  private lastError: string | undefined;
  private readonly logStreams = new Map<string, AbortController>();
  private connectedOnce: () => void = () => undefined;
  /** Resolves when the first session is established. */
  readonly connected: Promise<void>;
  private tls: AgentOptions['tls'];

  constructor(private readonly opts: AgentOptions) {
    this.runner = new TaskRunner({ nodeId: opts.nodeId, runtime: opts.runtime, logger: opts.logger, report: (u) => this.queue(u) });
    this.connected = new Promise((resolve) => (this.connectedOnce = resolve));
    this.tls = opts.tls;
  }

  /** Uses a renewed certificate from now on: the session is reopened so the manager sees the new one. */
  updateTls(tls: AgentOptions['tls']): void {
    this.tls = tls;
    this.socket?.close(4000, 'certificate renewed');
  }

  /** Runs until the signal aborts; containers are left running when it does. */
  async run(signal: AbortSignal): Promise<void> {
    const adopted = await this.runner.adopt(signal);
    if (adopted > 0) this.opts.logger.info(`adopted ${adopted} existing containers`);
    void this.watchRuntime(signal);
    const resync = setInterval(() => {
      this.runner.resync(signal).catch((e: unknown) => this.opts.logger.debug('resync failed', { error: e }));
    }, this.opts.resyncMs ?? 5000);
    try {
      for (let attempt = 0; !signal.aborted; ) {
        const established = await this.session(signal);
        if (signal.aborted) break;
        attempt = established ? 0 : attempt + 1;
        await sleep(backoffDelay(attempt, { baseMs: 100, maxMs: 2000 }), signal).catch(() => undefined);
      }
    } finally {
      clearInterval(resync);
      for (const c of this.logStreams.values()) c.abort();
    }
  }

  private async watchRuntime(signal: AbortSignal): Promise<void> {
    try {
      for await (const ev of this.opts.runtime.events(signal)) {
        // Starts are this agent's own doing (and already reported); exits and removals need a look.
        if (ev.state !== 'running' && ev.state !== 'created') this.runner.touch(ev.taskId);
      }
    } catch (e) {
      if (!signal.aborted) this.opts.logger.warn('runtime event stream ended', { error: e });
    }
  }

  private async description(): Promise<NodeDescription> {
    const cap = await this.opts.runtime.capacity();
    return {
      hostname: hostname(),
      address: this.opts.address,
      runtime: this.opts.runtime.name,
      resources: { nanoCpus: cap.nanoCpus, memoryBytes: cap.memoryBytes },
      engineLabels: {},
    };
  }

  /** One session: returns true if it got as far as a welcome (so the next try need not back off). */
  private session(signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      let welcomed = false;
      let heartbeat: NodeJS.Timeout | undefined;
      const { ca, cert, key } = this.tls;
      // `servername` goes through ws to tls.connect (its types omit it): managers' certificates name their role, so
      // any manager address is checked the same way.
      const options: WebSocket.ClientOptions & { servername: string } = { ca, cert, key, servername: MANAGER_TLS_NAME, handshakeTimeout: 5000 };
      const ws = new WebSocket(`wss://${this.opts.manager}${SESSION_PATH}`, options);
      this.socket = ws;
      const onAbort = (): void => ws.close(1001, 'agent stopping');
      signal.addEventListener('abort', onAbort, { once: true });
      ws.on('open', () => {
        void this.description().then((description) =>
          this.send({ type: 'hello', protocol: SESSION_PROTOCOL_VERSION, nodeId: this.opts.nodeId, description }),
        );
      });
      ws.on('message', (data) => {
        let m: ManagerMessage;
        try {
          m = parseMessage<ManagerMessage>(rawText(data), ['welcome', 'assignments', 'logs-request', 'logs-cancel']);
        } catch (e) {
          this.opts.logger.warn('bad message from manager', { error: e });
          return;
        }
        switch (m.type) {
          case 'welcome':
            welcomed = true;
            clearInterval(heartbeat);
            heartbeat = setInterval(() => this.send({ type: 'heartbeat' }), m.heartbeatPeriodMs);
            this.send({ type: 'heartbeat' });
            this.flush();
            this.connectedOnce();
            this.lastError = undefined;
            this.opts.logger.info('session established', { manager: this.opts.manager });
            break;
          case 'assignments':
            this.runner.setAssignments(m.tasks);
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
        // Say why the manager is unreachable or refuses us (e.g. "Unexpected server response: 401" for a removed
        // node), once per distinct reason rather than on every retry.
        if (e.message !== this.lastError) this.opts.logger.warn('session failed', { error: e.message, manager: this.opts.manager });
        this.lastError = e.message;
      });
      ws.on('close', (code, reason) => {
        clearInterval(heartbeat);
        signal.removeEventListener('abort', onAbort);
        if (this.socket === ws) this.socket = undefined;
        for (const c of this.logStreams.values()) c.abort();
        if (!signal.aborted) this.opts.logger.info('session closed', { code, reason: String(reason) });
        resolve(welcomed);
      });
    });
  }

  private send(m: AgentMessage): boolean {
    const ws = this.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(m));
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
