// The scheduling loop: takes pending tasks in batches, asks the pure scheduler for a plan, writes it at once.

import { isTerminal, type Task } from '../core/index.js';
import { schedule } from '../scheduler/index.js';
import type { Op } from '../store/store.js';
import { commitAndWait, type ControllerContext } from './context.js';
import { isLive } from './service-plan.js';

export interface SchedulingStats {
  /** Tasks placed since start. */
  placed: number;
  /** Batches run since start. */
  batches: number;
  /** Duration of each batch's placement (pure scheduling) in ms; the last 1,000. */
  latenciesMs: number[];
}

export interface SchedulingLoopOptions {
  /**
   * Called for each task assigned (once its assignment is written) with how long it waited, in ms, since it became
   * pending: the observer hook for metrics, which this layer does not know.
   */
  onAssigned?: (waitedMs: number) => void;
}

const wantsNode = (t: Task): boolean => t.status.state === 'pending' && isLive(t);

export class SchedulingLoop {
  readonly stats: SchedulingStats = { placed: 0, batches: 0, latenciesMs: [] };
  private readonly pending = new Set<string>();
  private dirty = true;
  private wake: (() => void) | undefined;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly opts: SchedulingLoopOptions = {},
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    const { cache } = this.ctx;
    for (const t of cache.list('task')) if (wantsNode(t)) this.pending.add(t.id);
    const unsubscribe = cache.subscribe((events) => {
      let kick = false;
      for (const ev of events) {
        if (ev.kind === 'task') {
          const t = ev.object as Task;
          if (ev.type === 'put' && wantsNode(t)) {
            this.pending.add(t.id);
            kick = true;
          } else {
            this.pending.delete(t.id);
            // A task that ends or goes away frees resources that may fit a waiting task.
            if (this.pending.size > 0 && (ev.type === 'delete' || isTerminal(t.status.state))) kick = true;
          }
        } else if (ev.kind === 'node' && this.pending.size > 0) {
          kick = true;
        }
      }
      if (kick) this.kick();
    });
    // Unplaceable tasks are retried now and then even without an event (bounded by the period).
    const retry = setInterval(() => this.pending.size > 0 && this.kick(), 2000);
    retry.unref();
    signal.addEventListener('abort', () => this.wake?.(), { once: true });
    try {
      while (!signal.aborted) {
        if (!this.dirty) {
          await new Promise<void>((resolve) => (this.wake = resolve));
          continue;
        }
        this.dirty = false;
        try {
          await this.pass(signal);
        } catch (e) {
          if (signal.aborted) break;
          // A conflict means the cache was behind a concurrent write; the next pass sees the newer state.
          this.ctx.logger.debug('scheduling pass failed, retrying', { error: e });
          this.dirty = true;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    } finally {
      clearInterval(retry);
      unsubscribe();
    }
  }

  kick(): void {
    this.dirty = true;
    this.wake?.();
  }

  private async pass(signal: AbortSignal): Promise<void> {
    const { cache, clock } = this.ctx;
    const pending: Task[] = [];
    for (const id of this.pending) {
      const t = cache.get('task', id);
      if (t && wantsNode(t)) pending.push(t);
      else this.pending.delete(id);
    }
    if (pending.length === 0) return;
    pending.sort((a, b) => a.meta.createdAt.localeCompare(b.meta.createdAt) || a.slot - b.slot);
    const placed = cache.list('task').filter((t) => t.nodeId !== '' && !isTerminal(t.status.state) && t.status.state !== 'pending');
    const nodes = cache.list('node');
    const started = performance.now();
    const plan = schedule({ nodes, placed, pending });
    this.recordLatency(performance.now() - started);

    const iso = new Date(clock.now()).toISOString();
    const byId = new Map(pending.map((t) => [t.id, t]));
    const hostnames = new Map(nodes.map((n) => [n.id, n.description.hostname]));
    const ops: Op[] = [];
    for (const a of plan.assignments) {
      const t = byId.get(a.taskId);
      if (!t) continue;
      ops.push({
        op: 'update',
        object: {
          ...t,
          nodeId: a.nodeId,
          schedulingMessage: '',
          status: { ...t.status, state: 'assigned', timestamp: iso, message: `assigned to ${hostnames.get(a.nodeId) ?? a.nodeId}` },
        },
      });
    }
    for (const u of plan.unplaced) {
      const t = byId.get(u.taskId);
      if (!t || t.schedulingMessage === u.reason) continue;
      ops.push({ op: 'update', object: { ...t, schedulingMessage: u.reason, status: { ...t.status, message: u.reason } } });
    }
    if (ops.length === 0) return;
    await commitAndWait(this.ctx, ops, signal);
    this.observeWaits(plan.assignments.map((a) => byId.get(a.taskId)));
    this.stats.placed += plan.assignments.length;
    this.stats.batches++;
  }

  /** A pending task's status timestamp is when it became pending (only its message changes while it waits). */
  private observeWaits(assigned: (Task | undefined)[]): void {
    const { onAssigned } = this.opts;
    if (!onAssigned) return;
    const now = this.ctx.clock.now();
    for (const t of assigned) {
      const since = t ? Date.parse(t.status.timestamp) : NaN;
      if (!Number.isNaN(since)) onAssigned(now - since);
    }
  }

  private recordLatency(ms: number): void {
    const l = this.stats.latenciesMs;
    l.push(ms);
    if (l.length > 1000) l.splice(0, l.length - 1000);
  }
}
