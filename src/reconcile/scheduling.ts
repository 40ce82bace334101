// The scheduling loop: takes pending tasks in batches, asks the pure scheduler for a plan, writes it at once. It also
// places tasks as the service controller makes them (Placer), so most tasks are created already assigned: one write
// instead of two. Node loads are kept task by task from the cache, plus the placements made but not yet seen there.

import { isLive, isTerminal, type Node, type Task } from '../core/index.js';
import { NodeLoads, schedule, type Plan } from '../scheduler/index.js';
import type { Op } from '../store/store.js';
import { commitAndWait, type ControllerContext } from './context.js';

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

/** Places tasks as they are made; what it placed must be written, or handed back with release(). */
export interface Placer {
  /** The tasks, those the scheduler could place assigned to their node (the others as they were). */
  place(tasks: Task[]): Task[];
  /** Placements that were not written after all (the commit failed). */
  release(tasks: Task[]): void;
}

const assigned = (t: Task, node: Node | undefined, nodeId: string, iso: string): Task => ({
  ...t,
  nodeId,
  schedulingMessage: '',
  status: { ...t.status, state: 'assigned', timestamp: iso, message: `assigned to ${node?.description.hostname ?? nodeId}` },
});

export class SchedulingLoop implements Placer {
  readonly stats: SchedulingStats = { placed: 0, batches: 0, latenciesMs: [] };
  private readonly pending = new Set<string>();
  private dirty = true;
  private wake: (() => void) | undefined;
  /** What tasks hold on each node: the cache's tasks, plus placements in flight (made here, not in the cache yet). */
  private readonly loads = new NodeLoads();
  private readonly inFlight = new Map<string, Task>();
  private following = false;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly opts: SchedulingLoopOptions = {},
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    const { cache } = this.ctx;
    for (const t of cache.list('task')) {
      if (wantsNode(t)) this.pending.add(t.id);
      this.loads.add(t);
    }
    this.following = true;
    const unsubscribe = cache.subscribe((events) => {
      let kick = false;
      for (const ev of events) {
        if (ev.kind === 'task') {
          const t = ev.object as Task;
          this.follow(t, ev.prev as Task | undefined, ev.type === 'delete');
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
      this.following = false;
    }
  }

  place(tasks: Task[]): Task[] {
    const want = tasks.filter(wantsNode);
    if (!this.following || want.length === 0) return tasks;
    const { placed } = this.placeBatch(want);
    this.stats.placed += placed.size;
    for (let i = 0; i < placed.size; i++) this.opts.onAssigned?.(0);
    return tasks.map((t) => placed.get(t.id) ?? t);
  }

  /**
   * Runs the scheduler over `pending` with the current node loads, and reserves each placement made: the caller writes
   * them (`placed`, by task id) or hands them back with release().
   */
  private placeBatch(pending: Task[]): { placed: Map<string, Task>; unplaced: Plan['unplaced'] } {
    const nodes = this.ctx.cache.list('node');
    const started = performance.now();
    const plan = schedule({ nodes, loads: this.loads.view, pending });
    this.recordLatency(performance.now() - started);
    const iso = new Date(this.ctx.clock.now()).toISOString();
    const taskById = new Map(pending.map((t) => [t.id, t]));
    const nodeById = new Map(nodes.map((n) => [n.id, n]));
    const placed = new Map<string, Task>();
    for (const a of plan.assignments) {
      const t = taskById.get(a.taskId);
      if (!t) continue;
      const p = assigned(t, nodeById.get(a.nodeId), a.nodeId, iso);
      this.reserve(p);
      placed.set(p.id, p);
    }
    return { placed, unplaced: plan.unplaced };
  }

  release(tasks: Task[]): void {
    for (const t of tasks) {
      const held = this.inFlight.get(t.id);
      if (held !== t) continue;
      this.inFlight.delete(t.id);
      this.loads.remove(held);
    }
  }

  private reserve(t: Task): void {
    this.release([this.inFlight.get(t.id)].filter((x): x is Task => x !== undefined));
    this.inFlight.set(t.id, t);
    this.loads.add(t);
  }

  /** A task changed in the cache: its load moves from what was there (or was placed in flight) to what is now. */
  private follow(t: Task, prev: Task | undefined, deleted: boolean): void {
    // An event the cache skipped (older than what it holds, during a catch-up replay) changes nothing.
    if (!deleted && this.ctx.cache.get('task', t.id) !== t) return;
    const held = this.inFlight.get(t.id);
    if (held) {
      this.inFlight.delete(t.id);
      this.loads.remove(held);
    }
    if (prev) this.loads.remove(prev);
    if (!deleted) this.loads.add(t);
  }

  kick(): void {
    this.dirty = true;
    this.wake?.();
  }

  private async pass(signal: AbortSignal): Promise<void> {
    const { cache } = this.ctx;
    const pending: Task[] = [];
    for (const id of this.pending) {
      const t = cache.get('task', id);
      if (t && wantsNode(t)) pending.push(t);
      else this.pending.delete(id);
    }
    if (pending.length === 0) return;
    pending.sort((a, b) => a.meta.createdAt.localeCompare(b.meta.createdAt) || a.slot - b.slot);
    const { placed, unplaced } = this.placeBatch(pending);
    const byId = new Map(pending.map((t) => [t.id, t]));
    const ops: Op[] = [...placed.values()].map((object): Op => ({ op: 'update', object }));
    for (const u of unplaced) {
      const t = byId.get(u.taskId);
      if (!t || t.schedulingMessage === u.reason) continue;
      ops.push({ op: 'update', object: { ...t, schedulingMessage: u.reason, status: { ...t.status, message: u.reason } } });
    }
    if (ops.length === 0) return;
    try {
      await commitAndWait(this.ctx, ops, signal);
    } catch (e) {
      this.release([...placed.values()]);
      throw e;
    }
    this.observeWaits([...placed.keys()].map((id) => byId.get(id)));
    this.stats.placed += placed.size;
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
