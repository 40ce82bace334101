// The service plan: a pure function from a service and its tasks to the task writes that converge them.
// It covers the replicated orchestrator (one live task per slot), the global orchestrator (one live task per
// eligible node), the restart supervisor (restart policy with delay, attempts and window) and the task reaper
// (bounded history of dead tasks per slot or node).

import { isTerminal, matchConstraint, type Node, type RestartPolicy, type Service, type Task } from '../core/index.js';

export interface ServicePlanInput {
  serviceId: string;
  /** Undefined when the service was removed: its tasks are wound down and deleted. */
  service: Service | undefined;
  tasks: Task[];
  nodes: ReadonlyMap<string, Node>;
  now: number;
  historyLimit: number;
  newId: () => string;
}

export interface ServicePlan {
  create: Task[];
  /** Tasks with a changed desiredState (or notBefore); the caller writes them with compare-and-set. */
  update: Task[];
  delete: Task[];
  /** When a delayed restart is due, if any. */
  requeueAfterMs?: number;
}

/** A live task is one the manager still wants prepared or running. */
export const isLive = (t: Task): boolean => t.desiredState === 'ready' || t.desiredState === 'running';

/** Whether a node can keep running tasks: ready and not drained. */
const nodeHealthy = (nodes: ReadonlyMap<string, Node>, nodeId: string): boolean => {
  const n = nodes.get(nodeId);
  return n !== undefined && n.status.state !== 'down' && n.spec.availability !== 'drain';
};

const taskTime = (t: Task): number => Date.parse(t.status.timestamp) || 0;

/**
 * The restart decision for a task that ended while the manager wanted it running. Attempts are counted in the
 * window that ends when the task ended (not "now"), so the decision is the same every time it is recomputed.
 */
export const shouldRestart = (policy: RestartPolicy, task: Task): boolean => {
  if (policy.condition === 'none') return false;
  if (policy.condition === 'on-failure' && task.status.state === 'complete') return false;
  if (policy.maxAttempts === 0) return true;
  const endedAt = taskTime(task);
  const attempts = task.restartHistory.filter((t) => policy.windowMs === 0 || t >= endedAt - policy.windowMs).length;
  return attempts < policy.maxAttempts;
};

/** A fresh task for a slot, made from the service's current spec. */
export const newTask = (service: Service, slot: number, opts: { id: string; now: number; restartHistory?: number[]; notBefore?: number; nodeId?: string }): Task => {
  const iso = new Date(opts.now).toISOString();
  const notBefore = opts.notBefore ?? 0;
  return {
    kind: 'task',
    id: opts.id,
    meta: { version: 0, createdAt: iso, updatedAt: iso },
    serviceId: service.id,
    serviceName: service.spec.name,
    slot,
    nodeId: opts.nodeId ?? '',
    spec: service.spec.task,
    serviceVersion: service.meta.version,
    desiredState: notBefore > opts.now ? 'ready' : 'running',
    status: { state: 'pending', timestamp: iso, message: 'waiting for a node', error: '', containerId: '' },
    restartHistory: opts.restartHistory ?? [],
    notBefore,
  };
};

/** Orders a slot's live tasks best first: furthest along, then newest. */
const better = (a: Task, b: Task): number => {
  const run = (t: Task): number => (t.status.state === 'running' ? 1 : 0);
  return run(b) - run(a) || b.meta.createdAt.localeCompare(a.meta.createdAt);
};

/** Replicated: slots 1..N, each one a task should exist for. */
const replicatedSlots = (service: Service): Map<string, boolean> => {
  const n = 'replicated' in service.spec.mode ? service.spec.mode.replicated.replicas : 0;
  return new Map(Array.from({ length: n }, (_, i) => [String(i + 1), true]));
};

/**
 * Global: every node that is not down or drained and meets the constraints. A paused node keeps the task it has
 * but gets no new one (the value says whether a task may be created).
 */
const globalNodes = (service: Service, nodes: ReadonlyMap<string, Node>, groups: ReadonlyMap<string, Task[]>): Map<string, boolean> => {
  const out = new Map<string, boolean>();
  for (const n of nodes.values()) {
    if (n.status.state === 'down' || n.spec.availability === 'drain') continue;
    if (!service.spec.task.placement.constraints.every((c) => matchConstraint(n, c))) continue;
    if (n.spec.availability === 'pause' && !(groups.get(n.id) ?? []).some(isLive)) continue;
    out.set(n.id, n.spec.availability === 'active');
  }
  return out;
};

export const planService = (input: ServicePlanInput): ServicePlan => {
  const plan: ServicePlan = { create: [], update: [], delete: [] };
  const { service, now } = input;
  const setDesired = (t: Task, desiredState: Task['desiredState']): void => {
    if (t.desiredState !== desiredState) plan.update.push({ ...t, desiredState });
  };
  const due = (ms: number): void => {
    plan.requeueAfterMs = Math.min(plan.requeueAfterMs ?? Number.MAX_SAFE_INTEGER, Math.max(1, ms));
  };

  if (!service) {
    for (const t of input.tasks) {
      // A task whose container is gone (or that never had a node, or whose node is gone) can be deleted at once;
      // otherwise its agent stops it and removes its container first, and reports when that is done.
      // (A drained node is alive and removes containers like any other; only a down or unknown node cannot.)
      const node = input.nodes.get(t.nodeId);
      const gone = (isTerminal(t.status.state) && t.status.containerId === '') || !node || node.status.state === 'down';
      if (gone) plan.delete.push(t);
      else setDesired(t, 'remove');
    }
    return plan;
  }

  // Tasks are grouped by what they stand for: a slot (replicated: 1..N) or a node (global: one task per eligible
  // node, slot 0). Each group has at most one live task; the same restart and reaper rules apply to both.
  const global = 'global' in service.spec.mode;
  const keyOf = (t: Task): string => (global ? t.nodeId : String(t.slot));
  const groups = new Map<string, Task[]>();
  for (const t of input.tasks) {
    const k = keyOf(t);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(t);
  }
  const wanted = global ? globalNodes(service, input.nodes, groups) : replicatedSlots(service);
  const fresh = (key: string, opts: { restartHistory?: number[]; notBefore?: number } = {}): Task =>
    global ? newTask(service, 0, { id: input.newId(), now, nodeId: key, ...opts }) : newTask(service, Number(key), { id: input.newId(), now, ...opts });
  const policy = service.spec.task.restartPolicy;

  for (const [key, mayCreate] of wanted) {
    const tasks = groups.get(key) ?? [];
    const live = tasks.filter(isLive).sort(better);
    const [cur, ...extra] = live;
    // More than one live task in a group happens only around a handover; keep the best one.
    for (const t of extra) setDesired(t, 'shutdown');

    if (!cur) {
      if (mayCreate) plan.create.push(fresh(key));
    } else if (isTerminal(cur.status.state)) {
      // The task ended while wanted: the restart supervisor decides. A task it gives up on stays the group's
      // current task (desired running, state terminal), which is how `service ps` shows a slot that gave up.
      if (mayCreate && shouldRestart(policy, cur)) {
        const endedAt = taskTime(cur);
        // Bounded, but never below maxAttempts: a shorter history would undercount and restart for ever.
        const keep = Math.max(100, policy.maxAttempts);
        const history = [...cur.restartHistory.filter((t) => policy.windowMs === 0 || t >= endedAt - policy.windowMs), endedAt].slice(-keep);
        const notBefore = endedAt + policy.delayMs;
        setDesired(cur, 'shutdown');
        plan.create.push(fresh(key, { restartHistory: history, notBefore }));
        if (notBefore > now) due(notBefore - now);
      }
    } else if (!global && cur.nodeId !== '' && !nodeHealthy(input.nodes, cur.nodeId)) {
      // Its node died or is drained: replace it now, elsewhere. Not a failure of the task: no restart delay.
      setDesired(cur, 'shutdown');
      plan.create.push(fresh(key, { restartHistory: cur.restartHistory }));
    } else if (cur.desiredState === 'ready') {
      if (now >= cur.notBefore) setDesired(cur, 'running');
      else due(cur.notBefore - now);
    }
  }

  // Groups no longer wanted (slots beyond the replica count, nodes no longer eligible): stop their live tasks.
  for (const [key, tasks] of groups) {
    if (wanted.has(key)) continue;
    for (const t of tasks) {
      if (isLive(t)) setDesired(t, 'shutdown');
    }
  }

  // The reaper: dead tasks (not live) that never reached a node are deleted at once; finished ones are kept as
  // history, at most `historyLimit` per group, and none for groups no longer wanted.
  const updated = new Map(plan.update.map((t) => [t.id, t]));
  for (const [key, tasks] of groups) {
    const dead = tasks
      .map((t) => updated.get(t.id) ?? t)
      .filter((t) => !isLive(t))
      .sort((a, b) => b.meta.createdAt.localeCompare(a.meta.createdAt));
    let kept = 0;
    for (const t of dead) {
      const finished = isTerminal(t.status.state) || t.nodeId === '' || !input.nodes.has(t.nodeId);
      if (!finished) continue;
      if (wanted.has(key) && t.nodeId !== '' && kept < input.historyLimit) {
        kept++;
        continue;
      }
      plan.delete.push(t);
      updated.delete(t.id);
    }
  }
  plan.update = [...updated.values()];
  return plan;
};
