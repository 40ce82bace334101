// The node-health controller: turns the dispatcher's heartbeat record into node status (ready / down).

import type { Node, NodeStatusState } from '../core/index.js';
import { commitAndWait, type ControllerContext } from './context.js';

/** What the dispatcher knows of sessions: the last heartbeat it saw from a node (epoch ms), if any. */
export interface HeartbeatSource {
  lastHeartbeat(nodeId: string): number | undefined;
  /** Whether the node's session closed cleanly (the node said it is going away). */
  leftCleanly(nodeId: string): boolean;
  /** When the node's session broke (no close frame), if it has not connected again since. */
  droppedAt(nodeId: string): number | undefined;
}

export interface NodeHealthOptions {
  /** Missed heartbeat periods before a node is down. */
  missedBeats?: number;
}

/**
 * Five: with three (1.5 s at the default period), bench/scale found 1-133 live nodes down in 9 of 14 runs, each a node
 * whose messages came up to ~1.7 s apart while the process of the 1,000 hollow nodes (sharing two cores with the
 * manager) was held up for up to ~1.7 s, and each cost a hundred tasks moved for nothing; with five, none in 19 runs. A node
 * whose session breaks is still found down after one period.
 */
export const DEFAULT_MISSED_BEATS = 5;

export class NodeHealth {
  private readonly startedAt: number;
  private wake: (() => void) | undefined;
  /** When the last check ran: a check that runs much later than planned ran after the event loop was held up. */
  private lastCheckAt: number;
  /** When the first node whose session broke is due to be found down (if it has not reconnected by then). */
  private dueAt = Infinity;

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
      // The next tick, or sooner the moment a broken session's period ends (a tick later would add up to a quarter
      // period to every failover).
      const tick = Math.max(50, Math.floor(this.periodMs() / 4));
      const wait = Math.max(1, Math.min(tick, this.dueAt - this.ctx.clock.now()));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /**
   * The state a node should have now (and why), or undefined to leave it as it is. A node is down once it missed
   * `missedBeats` heartbeats, or sooner when its session broke and it has not reconnected within one period: the
   * socket already said what missed heartbeats would only say later.
   */
  private observed(node: Node, now: number, periodMs: number): { state: NodeStatusState; message: string } | undefined {
    const graceMs = periodMs * (this.opts.missedBeats ?? DEFAULT_MISSED_BEATS);
    const hb = this.source.lastHeartbeat(node.id);
    const dropped = this.source.droppedAt(node.id);
    if (dropped !== undefined && now - dropped > periodMs) return { state: 'down', message: `session lost ${now - dropped}ms ago and not reopened` };
    if (hb !== undefined && now - hb <= graceMs) return { state: 'ready', message: 'heartbeat received' };
    if (this.source.leftCleanly(node.id)) return { state: 'disconnected', message: 'node left' };
    // A manager that just started has not heard from anyone yet: give every node one grace period to reconnect.
    if (hb === undefined && now - this.startedAt <= graceMs) return undefined;
    return { state: 'down', message: `no heartbeat for ${graceMs}ms` };
  }

  private async check(signal: AbortSignal): Promise<void> {
    // After the event loop was held up (a long synchronous stretch), heartbeats that arrived meanwhile still wait to be
    // read: timers run before I/O in a turn of the loop. Let the I/O phase read them first, or every node would look
    // silent, be found down, and have its tasks moved for no reason.
    if (this.ctx.clock.now() - this.lastCheckAt > this.periodMs()) await new Promise((resolve) => setImmediate(resolve));
    const now = this.ctx.clock.now();
    this.lastCheckAt = now;
    const periodMs = this.periodMs();
    const ops = [];
    this.dueAt = Infinity;
    for (const node of this.ctx.cache.list('node')) {
      const dropped = this.source.droppedAt(node.id);
      if (dropped !== undefined && now - dropped <= periodMs) this.dueAt = Math.min(this.dueAt, dropped + periodMs + 1);
      const seen = this.observed(node, now, periodMs);
      if (seen === undefined || seen.state === node.status.state) continue;
      const { state, message } = seen;
      const hb = this.source.lastHeartbeat(node.id);
      this.ctx.logger.info(`node ${node.description.hostname} is ${state}: ${message}`, { nodeId: node.id });
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
