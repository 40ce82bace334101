// The service controller: reconciles one service key at a time by applying planService's plan to the store.

import { isTerminal, type Node, type Task } from '../core/index.js';
import type { Op, WatchEvent } from '../store/store.js';
import { background } from '../lib/turn-budget.js';
import { commitChunks, type Committed, type ControllerContext } from './context.js';
import { planService } from './service-plan.js';
import type { Placer } from './scheduling.js';
import { WorkQueue, type ReconcileResult } from './workqueue.js';

/** How many new tasks the scheduler places in one stretch of the event loop. */
const PLACE_PIECE = 250;

export interface ServiceControllerOptions {
  /** How often every service is reconciled even without events (catches anything missed). */
  resyncMs?: number;
  /** Places new tasks as they are made (created assigned: one write each instead of a create and an assignment). */
  placer?: Placer;
}

export class ServiceController {
  readonly queue: WorkQueue;
  /**
   * Task writes of plans that settle (no `again`) whose events are still to come, by task id: the version the write
   * makes, or 0 for a delete. Their events do not plan the service again: it would find nothing to do (a failover
   * planned each service twice, the second time for nothing).
   */
  private readonly ownWrites = new Map<string, number>();

  constructor(
    private readonly ctx: ControllerContext,
    private readonly opts: ServiceControllerOptions = {},
  ) {
    this.queue = new WorkQueue('service', (key, signal) => this.reconcile(key, signal), { logger: ctx.logger, concurrency: 4 });
  }

  async run(signal: AbortSignal): Promise<void> {
    const unsubscribe = this.ctx.cache.subscribe((events) => this.onEvents(events));
    this.resyncAll();
    const resync = setInterval(() => this.resyncAll(), this.opts.resyncMs ?? 10_000);
    resync.unref();
    try {
      await this.queue.run(signal);
    } finally {
      clearInterval(resync);
      unsubscribe();
    }
  }

  /** Every service, and every service id that still has tasks (removed services wind down too). */
  private resyncAll(): void {
    for (const s of this.ctx.cache.list('service')) this.queue.add(s.id);
    for (const id of this.ctx.cache.serviceIdsWithTasks()) this.queue.add(id);
  }

  private onEvents(events: WatchEvent[]): void {
    for (const ev of events) {
      if (ev.kind === 'service') this.queue.add(ev.id);
      else if (ev.kind === 'task' && ev.object.kind === 'task') {
        if (this.isOwnWrite(ev)) continue;
        if (ev.type === 'delete' || this.taskChangeMatters(ev.object, ev.prev as Task | undefined)) this.queue.add(ev.object.serviceId);
      }
      else if (ev.kind === 'node' && ev.object.kind === 'node') {
        if (this.nodeHealthChanged(ev.object, ev.prev)) for (const t of this.ctx.cache.tasksOfNode(ev.id)) this.queue.add(t.serviceId);
        // Global services follow nodes as they join, leave, or change labels and availability.
        for (const s of this.ctx.cache.list('service')) if ('global' in s.spec.mode) this.queue.add(s.id);
      }
    }
  }

  /** Whether the event is the echo of a write of a plan that settles (and forgets the write). */
  private isOwnWrite(ev: WatchEvent): boolean {
    const version = this.ownWrites.get(ev.id);
    if (version === undefined || version !== (ev.type === 'delete' ? 0 : ev.object.meta.version)) return false;
    this.ownWrites.delete(ev.id);
    return true;
  }

  /**
   * Whether a task's change can change its service's plan. Most writes are agents' reports of a task moving on towards
   * running, which the plan does not look at — except while the service updates, when a task that runs starts its
   * monitor period (and, start-first, ends its predecessor). Reconciling on every report would plan every task of a
   * service again for each of them. (The periodic resync catches anything this misses.)
   */
  private taskChangeMatters(t: Task, p: Task | undefined): boolean {
    if (!p) return true;
    if (p.desiredState !== t.desiredState || p.nodeId !== t.nodeId || p.notBefore !== t.notBefore) return true;
    if (isTerminal(p.status.state) !== isTerminal(t.status.state)) return true;
    // A finished task's container went away: a removed service's task may now be deleted.
    if (p.status.containerId !== '' && t.status.containerId === '') return true;
    if (p.status.state === t.status.state) return false;
    const s = this.ctx.cache.get('service', t.serviceId);
    return s === undefined || s.updateStatus?.state === 'updating' || s.updateStatus?.state === 'rollback_started';
  }

  private nodeHealthChanged(node: Node, prev: unknown): boolean {
    const p = prev as Node | undefined;
    return !p || p.status.state !== node.status.state || p.spec.availability !== node.spec.availability;
  }

  /**
   * Places new tasks PLACE_PIECE at a time, each piece after the first in a slot of its own of the background budget:
   * planning, placing and writing a new service's thousand tasks in one go held the event loop for 20-120 ms
   * (bench/scale), and every API request waited behind it. Each piece sees the placements of the pieces before it.
   */
  private async place(tasks: Task[], signal: AbortSignal): Promise<Task[]> {
    const { placer } = this.opts;
    if (!placer || tasks.length === 0) return tasks;
    const placed: Task[] = [];
    try {
      for (let i = 0; i < tasks.length; i += PLACE_PIECE) {
        if (i > 0) await background.slot();
        signal.throwIfAborted();
        placed.push(...placer.place(tasks.slice(i, i + PLACE_PIECE)));
      }
    } catch (e) {
      placer.release(placed);
      throw e;
    }
    return placed;
  }

  async reconcile(serviceId: string, signal: AbortSignal): Promise<ReconcileResult> {
    const { cache, clock } = this.ctx;
    const nodes = new Map(cache.list('node').map((n) => [n.id, n]));
    const cluster = cache.list('cluster')[0];
    const plan = planService({
      serviceId,
      service: cache.get('service', serviceId),
      tasks: cache.tasksOfService(serviceId),
      nodes,
      now: clock.now(),
      historyLimit: cluster?.spec.taskHistoryLimit ?? 5,
      newId: this.ctx.newId,
    });
    const created = await this.place(plan.create, signal);
    const ops: Op[] = [
      // The service first: an update status written with compare-and-set fails the whole first commit if the
      // service changed meanwhile, and the plan is made again from the new spec.
      ...(plan.service ? [{ op: 'update', object: plan.service } satisfies Op] : []),
      ...created.map((object): Op => ({ op: 'create', object })),
      ...plan.update.map((object): Op => ({ op: 'update', object })),
      ...plan.delete.map((t): Op => ({ op: 'delete', kind: 'task', id: t.id, version: t.meta.version })),
    ];
    const requeue = plan.requeueAfterMs === undefined ? {} : { requeueAfterMs: plan.requeueAfterMs };
    if (ops.length === 0) return requeue;
    // The worker moves on to the next service as soon as the commit is queued; the service itself is not planned again
    // until the cache has it. Waiting for the cache (0.5-1 s behind) made four workers ~25 reconciles/s; waiting for
    // the commit (100-150 ms while failing over) made them ~30: a failover reconciles every service.
    const own = plan.again ? [] : taskWritesOf(ops);
    for (const [id, version] of own) this.ownWrites.set(id, version);
    const commit = commitChunks(this.ctx, ops);
    const settled = (async (): Promise<void> => {
      let committed: Committed;
      try {
        committed = await commit;
      } catch (e) {
        this.opts.placer?.release(created);
        throw e;
      }
      await this.ctx.cache.waitFor(committed.revision, signal);
      if (!committed.failed) return;
      this.opts.placer?.release(created);
      throw committed.failed.reason;
    })().finally(() => {
      // Writes that failed (or whose events were not seen) are not waited for any more.
      for (const [id, version] of own) if (this.ownWrites.get(id) === version) this.ownWrites.delete(id);
    });
    return { ...requeue, settled };
  }
}

/** The task writes among `ops`, by task id: the version each makes in the store, or 0 for a delete. */
const taskWritesOf = (ops: readonly Op[]): [string, number][] =>
  ops.flatMap((op): [string, number][] => {
    if (op.op === 'delete') return op.kind === 'task' ? [[op.id, 0]] : [];
    if (op.object.kind !== 'task') return [];
    return [[op.object.id, op.op === 'create' ? 1 : op.object.meta.version + 1]];
  });
