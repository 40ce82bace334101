// Scheduler filters: each decides whether a node can take a task and, when it cannot, says why in words.

import { formatConstraint, matchConstraint } from '../core/index.js';
import type { Node, Resources, Task } from '../core/index.js';

/** What the scheduler knows about one node while it places a batch. */
export interface NodeInfo {
  readonly node: Node;
  /**
   * Capacity left: the node's described resources minus the reservations of its placed tasks and of
   * the tasks this batch has assigned to it so far. Can be negative if the store already over-commits.
   */
  readonly available: Resources;
  /** Non-terminal tasks on the node: placed ones plus this batch's assignments. */
  taskCount: number;
  /** `taskCount` broken down by service id. */
  readonly serviceCounts: ServiceCounts;
}

/** Tasks per service on a node: what was placed before the batch (shared, never changed) plus the batch's own. */
export class ServiceCounts {
  /** Made on the first add: most nodes get nothing from a batch, and a scheduler makes one of these per node per batch. */
  private own: Map<string, number> | undefined;

  constructor(private readonly before?: ReadonlyMap<string, number>) {}

  get(serviceId: string): number {
    const before = this.before?.get(serviceId) ?? 0;
    return this.own === undefined ? before : before + (this.own.get(serviceId) ?? 0);
  }

  add(serviceId: string): void {
    const own = (this.own ??= new Map<string, number>());
    own.set(serviceId, (own.get(serviceId) ?? 0) + 1);
  }
}

/**
 * One reason a node may be unsuitable for a task. Filters are evaluated in order and a node is
 * counted against the first filter it fails, so the unplaced reason names each node once.
 */
export interface Filter {
  /** Short stable name, for logs and tests. */
  readonly name: string;
  /**
   * Whether the verdict depends on what the batch has already placed (resources; later host ports).
   * Static filters are evaluated once per group of identical tasks; dynamic ones are re-checked each
   * time a node is about to be used. Invariant the scheduler relies on: placements only consume, so a
   * dynamic filter that rejects a node for a task keeps rejecting it for the rest of the batch.
   */
  readonly dynamic: boolean;
  /** undefined when `node` can take `task`; otherwise a short failure phrase, also used to count nodes. */
  check(task: Task, node: NodeInfo): string | undefined;
  /** Renders "this failure on this many nodes"; default: `<failure> on <n> node(s)`. */
  describe?(failure: string, nodes: number): string;
}

/** "1 node", "3 nodes". */
export const countNodes = (n: number): string => `${n} node${n === 1 ? '' : 's'}`;

/** Only nodes with a live session (`ready`) and `active` availability take new tasks. */
export const readyFilter: Filter = {
  name: 'ready',
  dynamic: false,
  check: (_task, { node }) => {
    if (node.status.state !== 'ready') return 'not ready';
    switch (node.spec.availability) {
      case 'active':
        return undefined;
      case 'pause':
        return 'paused';
      case 'drain':
        return 'drained';
      default:
        return 'not active';
    }
  },
  describe: (failure, nodes) => `${countNodes(nodes)} ${failure}`,
};

/** A task whose node is already chosen (a global service's task) fits only that node. */
export const pinnedFilter: Filter = {
  name: 'pinned',
  dynamic: false,
  check: (task, { node }) =>
    task.nodeId !== '' && node.id !== task.nodeId ? `task is pinned to node ${task.nodeId}` : undefined,
  describe: (failure, nodes) => `${countNodes(nodes)} excluded (${failure})`,
};

/** Every placement constraint of the task must hold on the node; names the first that fails. */
export const constraintFilter: Filter = {
  name: 'constraints',
  dynamic: false,
  check: (task, { node }) => {
    for (const c of task.spec.placement.constraints) {
      if (!matchConstraint(node, c)) return `constraint ${formatConstraint(c)} fails`;
    }
    return undefined;
  },
};

/**
 * The task's reservations must fit in what the node has left. A zero reservation always fits, so
 * tasks that reserve nothing are never blocked by a node that is (already) over-committed.
 */
export const resourceFilter: Filter = {
  name: 'resources',
  dynamic: true,
  check: (task, { available }) => {
    const r = task.spec.resources.reservations;
    const cpu = r.nanoCpus > 0 && r.nanoCpus > available.nanoCpus;
    const mem = r.memoryBytes > 0 && r.memoryBytes > available.memoryBytes;
    if (cpu) return mem ? 'insufficient cpu and memory' : 'insufficient cpu';
    return mem ? 'insufficient memory' : undefined;
  },
};

/** The filters `schedule()` uses unless told otherwise; cheap and fundamental ones first. */
export const DEFAULT_FILTERS: readonly Filter[] = [readyFilter, pinnedFilter, constraintFilter, resourceFilter];

/** Counts, per filter and failure phrase, the nodes that failed; renders them as one sentence. */
export class FailureTally {
  private readonly counts = new Map<Filter, Map<string, number>>();

  add(filter: Filter, failure: string, nodes = 1): void {
    let perFilter = this.counts.get(filter);
    if (!perFilter) this.counts.set(filter, (perFilter = new Map<string, number>()));
    perFilter.set(failure, (perFilter.get(failure) ?? 0) + nodes);
  }

  get empty(): boolean {
    return this.counts.size === 0;
  }

  /**
   * "insufficient memory on 3 nodes; constraint node.labels.zone==eu fails on 2 nodes; 1 node not ready":
   * biggest counts first, then in filter order, then alphabetically, so the text is deterministic.
   */
  render(filters: readonly Filter[]): string {
    const rows: { order: number; failure: string; nodes: number; filter: Filter }[] = [];
    for (const [filter, perFilter] of this.counts) {
      const order = filters.indexOf(filter);
      for (const [failure, nodes] of perFilter) rows.push({ order, failure, nodes, filter });
    }
    rows.sort((a, b) => b.nodes - a.nodes || a.order - b.order || (a.failure < b.failure ? -1 : a.failure > b.failure ? 1 : 0));
    return rows
      .map(({ filter, failure, nodes }) => filter.describe?.(failure, nodes) ?? `${failure} on ${countNodes(nodes)}`)
      .join('; ');
  }
}

/** The first filter `node` fails for `task`, with its failure phrase; undefined when the node fits. */
export const firstFailure = (
  task: Task,
  node: NodeInfo,
  filters: readonly Filter[],
): { filter: Filter; failure: string } | undefined => {
  for (const filter of filters) {
    const failure = filter.check(task, node);
    if (failure !== undefined) return { filter, failure };
  }
  return undefined;
};
