// The batch scheduler: places a batch of pending tasks on nodes (filters, then spread ranking) and returns a plan.

import type { Node, Task } from '../core/index.js';
import { DEFAULT_FILTERS, FailureTally, ServiceCounts, firstFailure } from './filters.js';
import type { NodeLoad } from './loads.js';
import type { Filter, NodeInfo } from './filters.js';
import { Ranker, SpreadCounts } from './ranking.js';

export interface ScheduleInput {
  nodes: Node[];
  /** Tasks that hold resources on their node: nodeId set and status.state not terminal. */
  placed?: Task[];
  /** What placed tasks hold, by node (see NodeLoads): the same as listing them in `placed`, without the walk. */
  loads?: ReadonlyMap<string, Readonly<NodeLoad>>;
  /**
   * Tasks to place, in priority order (status.state 'pending'), each id once. A task whose nodeId is
   * already set (global services) may only go to that node: the scheduler checks it fits there.
   * Precondition: tasks with the same serviceId and serviceVersion carry the same spec (a task's spec
   * is a copy of its service's template at that version); the scheduler places them as one group.
   */
  pending: Task[];
}

export interface Plan {
  /** In the order of `pending`. */
  assignments: { taskId: string; nodeId: string }[];
  /**
   * Tasks that stay pending, in the order of `pending`, each with a reason that explains per filter, e.g.
   * "no suitable node (insufficient memory on 3 nodes; constraint node.labels.zone==eu fails on 2 nodes; 1 node not ready)"
   */
  unplaced: { taskId: string; reason: string }[];
}

export interface ScheduleOptions {
  /** Filters to apply, default DEFAULT_FILTERS. Static filters are evaluated before dynamic ones. */
  filters?: readonly Filter[];
}

/**
 * Tasks placed together: same service, version and pinned node, hence the same verdicts from every
 * filter. Its candidate set and ranking heaps are built once and used by all its tasks.
 */
interface Group {
  /** The first task of the group: its spec stands for all. */
  task: Task;
  /** Nodes that passed every static filter (the only ones dynamic filters could still reject). */
  passed: NodeInfo[];
  /** Nodes rejected by a static filter, counted per failure. */
  tally: FailureTally;
  ranker: Ranker | undefined;
  fits: (info: NodeInfo) => boolean;
  /** Set once no node is left for the group: every later task of the group gets this reason. */
  reason?: string;
}

/** Scheduling-relevant parts of two task specs are equal (a cheap guard on the grouping precondition). */
const sameSchedulingSpec = (a: Task, b: Task): boolean => {
  if (a.spec === b.spec) return true;
  const ra = a.spec.resources.reservations;
  const rb = b.spec.resources.reservations;
  if (ra.nanoCpus !== rb.nanoCpus || ra.memoryBytes !== rb.memoryBytes) return false;
  const ca = a.spec.placement.constraints;
  const cb = b.spec.placement.constraints;
  if (ca.length !== cb.length) return false;
  for (let i = 0; i < ca.length; i++) {
    const x = ca[i];
    const y = cb[i];
    if (!x || !y || x.key !== y.key || x.op !== y.op || x.value !== y.value) return false;
  }
  const pa = a.spec.placement.preferences;
  const pb = b.spec.placement.preferences;
  if (pa.length !== pb.length) return false;
  for (let i = 0; i < pa.length; i++) if (pa[i]?.spread !== pb[i]?.spread) return false;
  return true;
};

const schedulingFingerprint = (t: Task): string =>
  JSON.stringify([t.spec.resources.reservations, t.spec.placement.constraints, t.spec.placement.preferences]);

/**
 * Places `input.pending` in priority order. Each task goes to the best-ranked node that passes every
 * filter, counting the reservations and tasks of the batch's earlier assignments; a task that fits
 * nowhere is reported unplaced with the reason per filter. Pure and deterministic: the same input
 * gives the same plan, whatever the order of `nodes` and `placed`.
 *
 * Cost: O(nodes × static filters) once per group of identical tasks, then O(log nodes) per task
 * (times the preference depth), so a batch of many replicas of few services is close to linear.
 */
export function schedule(input: ScheduleInput, options: ScheduleOptions = {}): Plan {
  const filters = options.filters ?? DEFAULT_FILTERS;
  const staticFilters = filters.filter((f) => !f.dynamic);
  const dynamicFilters = filters.filter((f) => f.dynamic);

  const infos = new Map<string, NodeInfo>();
  for (const node of input.nodes) {
    if (infos.has(node.id)) continue;
    const { nanoCpus, memoryBytes } = node.description.resources;
    const load = input.loads?.get(node.id);
    infos.set(node.id, {
      node,
      available: { nanoCpus: nanoCpus - (load?.nanoCpus ?? 0), memoryBytes: memoryBytes - (load?.memoryBytes ?? 0) },
      taskCount: load?.taskCount ?? 0,
      serviceCounts: new ServiceCounts(load?.serviceCounts),
    });
  }
  const consume = (info: NodeInfo, task: Task): void => {
    const r = task.spec.resources.reservations;
    info.available.nanoCpus -= r.nanoCpus;
    info.available.memoryBytes -= r.memoryBytes;
    info.taskCount++;
    info.serviceCounts.add(task.serviceId);
  };
  for (const task of input.placed ?? []) {
    const info = infos.get(task.nodeId);
    if (info) consume(info, task); // tasks of nodes not in the snapshot hold nothing we can place on
  }
  const allNodes = [...infos.values()];
  const spread = new SpreadCounts(allNodes);

  const explain = (group: Group): string => {
    const tally = group.tally;
    for (const info of group.passed) {
      const f = firstFailure(group.task, info, dynamicFilters);
      if (f) tally.add(f.filter, f.failure);
    }
    if (!tally.empty) return `no suitable node (${tally.render(filters)})`;
    return allNodes.length === 0 ? 'no suitable node (no nodes in the cluster)' : 'no suitable node';
  };

  const makeGroup = (task: Task): Group => {
    const fits = (info: NodeInfo): boolean => firstFailure(task, info, dynamicFilters) === undefined;
    const group: Group = { task, passed: [], tally: new FailureTally(), ranker: undefined, fits };
    let pool: readonly NodeInfo[] = allNodes;
    if (task.nodeId !== '') {
      const pinned = infos.get(task.nodeId);
      if (!pinned) {
        group.reason = `no suitable node (task is pinned to node ${task.nodeId}, which is not in the cluster)`;
        return group;
      }
      pool = [pinned];
    }
    const candidates: NodeInfo[] = [];
    for (const info of pool) {
      const f = firstFailure(task, info, staticFilters);
      if (f) {
        group.tally.add(f.filter, f.failure);
        continue;
      }
      group.passed.push(info);
      if (fits(info)) candidates.push(info);
    }
    if (candidates.length === 0) {
      group.reason = explain(group);
      return group;
    }
    const prefs = task.spec.placement.preferences.map((p) => p.spread);
    group.ranker = new Ranker(task.serviceId, candidates, { prefs, spread });
    return group;
  };

  const groups = new Map<string, Group>();
  const groupFor = (task: Task): Group => {
    let key = `${task.serviceId}\0${task.serviceVersion}\0${task.nodeId}`;
    let group = groups.get(key);
    if (group && !sameSchedulingSpec(group.task, task)) {
      // The precondition is broken (same version, different spec): never let it over-commit a node.
      key += `\0${schedulingFingerprint(task)}`;
      group = groups.get(key);
    }
    if (!group) groups.set(key, (group = makeGroup(task)));
    return group;
  };

  const plan: Plan = { assignments: [], unplaced: [] };
  for (const task of input.pending) {
    const group = groupFor(task);
    const info = group.reason === undefined ? group.ranker?.next(group.fits) : undefined;
    if (info) {
      consume(info, task);
      spread.placed(task.serviceId, info);
      plan.assignments.push({ taskId: task.id, nodeId: info.node.id });
      continue;
    }
    group.reason ??= explain(group);
    plan.unplaced.push({ taskId: task.id, reason: group.reason });
  }
  return plan;
}
