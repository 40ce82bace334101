// The node-health controller: turns the dispatcher's heartbeat record into node status (ready / down).

import type { Node, NodeStatusState } from '../core/index.js';
import { commitAndWait, type ControllerContext } from './context.js';

/** What the dispatcher knows of sessions: the last heartbeat it saw from a node (epoch ms), if any. */
export interface HeartbeatSource {
  lastHeartbeat(nodeId: string): number | undefined;
  /** Whether the node's session closed cleanly (the node said it is going away). */
  leftCleanly(nodeId: string): boolean;
}

export interface NodeHealthOptions {
  /** Missed heartbeat periods before a node is down. */
  missedBeats?: number;
}

export const DEFAULT_MISSED_BEATS = 3;

export class NodeHealth {
  private readonly startedAt: number;
  private wake: (() => void) | undefined;
  /** When the last check ran: a check that runs much later than planned ran after the event loop was held up. */
  private lastCheckAt: number;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly source: HeartbeatSource,
    private readonly opts: NodeHealthOptions = {},
  ) {
    this.startedAt = ctx.clock.now();
    this.lastCheckAt = this.startedAt;
  }

  /** Re-evaluate now (e.g. a session just opened). */
  poke(): void {
    this.wake?.();
  }

  private periodMs(): number {
    return this.ctx.cache.list('cluster')[0]?.spec.heartbeatPeriodMs ?? 500;
  }

  async run(signal: AbortSignal): Promise<void> {
    signal.addEventListener('abort', () => this.wake?.(), { once: true });
    while (!signal.aborted) {
      try {
        await this.check(signal);
      } catch (e) {
        if (signal.aborted) break;
        this.ctx.logger.debug('node health check failed, retrying', { error: e });
      }
      const tick = Math.max(50, Math.floor(this.periodMs() / 4));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, tick);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** The state a node should have now, or undefined to leave it as it is. */
  private observed(node: Node, now: number, graceMs: number): NodeStatusState | undefined {
    const hb = this.source.lastHeartbeat(node.id);
    if (hb !== undefined && now - hb <= graceMs) return 'ready';
    if (this.source.leftCleanly(node.id)) return 'disconnected';
    // A manager that just started has not heard from anyone yet: give every node one grace period to reconnect.
    if (hb === undefined && now - this.startedAt <= graceMs) return undefined;
    return 'down';
  }

  private async check(signal: AbortSignal): Promise<void> {
    // After the event loop was held up (a long synchronous stretch), heartbeats that arrived meanwhile still wait to be
    // read: timers run before I/O in a turn of the loop. Let the I/O phase read them first, or every node would look
    // silent, be found down, and have its tasks moved for no reason.
    if (this.ctx.clock.now() - this.lastCheckAt > this.periodMs()) await new Promise((resolve) => setImmediate(resolve));
    const now = this.ctx.clock.now();
    this.lastCheckAt = now;
    const graceMs = this.periodMs() * (this.opts.missedBeats ?? DEFAULT_MISSED_BEATS);
    const ops = [];
    for (const node of this.ctx.cache.list('node')) {
      const state = this.observed(node, now, graceMs);
      if (state === undefined || state === node.status.state) continue;
      const hb = this.source.lastHeartbeat(node.id);
      const message = state === 'ready' ? 'heartbeat received' : state === 'down' ? `no heartbeat for ${graceMs}ms` : 'node left';
      this.ctx.logger.info(`node ${node.description.hostname} is ${state}`, { nodeId: node.id });
      ops.push({
        op: 'update' as const,
        object: { ...node, status: { state, message, ...(hb === undefined ? {} : { lastHeartbeat: new Date(hb).toISOString() }) } },
      });
    }
    // Not background work: a node found down starts a failover, and the next check waits for this one. Status changes
    // are few (one op per node that changed), so going ahead of the controllers' writes costs them little.
    if (ops.length > 0) await commitAndWait(this.ctx, ops, signal, { background: false });
  }
}
