// The service plan: a pure function from a service and its tasks to the task writes that converge them.
// It covers the replicated orchestrator (one live task per slot), the global orchestrator (one live task per
// eligible node), the restart supervisor (restart policy with delay, attempts and window), the updater (rolling
// replacement of tasks made from an older spec, with its failure action) and the task reaper (bounded history of
// dead tasks per slot or node).
//
// Everything the updater needs is in the store (the service's updateStatus, the tasks' specs and states), so an
// update resumes where it was after a manager restart or a change of leader.

import { DEFAULT_UPDATE_CONFIG, compareText, isLive, isTerminal, matchConstraint, projectOf, sameJson, type Node, type RestartPolicy, type Service, type Task, type UpdateConfig, type UpdateStatus } from '../core/index.js';

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
  /** When a delayed restart (or the updater's next step) is due, if any. */
  requeueAfterMs?: number;
  /** The service with a new update status (or, to roll back, its previous spec), written with compare-and-set. */
  service?: Service;
  /**
   * Set when planning again right after this plan is written may find more to do: a rolling update's or rollback's
   * steps follow one another, and global services are not shown otherwise. Without it, planning the same tasks again at
   * the same time writes nothing (the property tests check it), so the writes' own events need not plan the service
   * again.
   */
  again?: true;
}

/** An update (or rollback) is replacing tasks now. */
const rolling = (s: Service): boolean => s.updateStatus?.state === 'updating' || s.updateStatus?.state === 'rollback_started';

const FAILED_STATES = new Set(['failed', 'rejected', 'complete']);

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
    project: projectOf(service.spec),
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

/**
 * Whether a task spec equals a service's task template, remembered per (spec object, template object): the cache's
 * objects are replaced, never changed, and a service is reconciled again and again with the same ones.
 */
const currentMemo = new WeakMap<object, { template: object; current: boolean }>();
const isCurrentSpec = (spec: Task['spec'], template: Task['spec']): boolean => {
  const m = currentMemo.get(spec);
  if (m?.template === template) return m.current;
  const current = sameJson(spec, template);
  currentMemo.set(spec, { template, current });
  return current;
};

/** Newest first, by creation time. */
const newestFirst = (a: Task, b: Task): number => compareText(b.meta.createdAt, a.meta.createdAt);

/** Orders a slot's live tasks best first: furthest along, then newest. */
const better = (a: Task, b: Task): number => {
  const run = (t: Task): number => (t.status.state === 'running' ? 1 : 0);
  return run(b) - run(a) || newestFirst(a, b);
};

const NONE: readonly Task[] = [];

/** A group's live tasks, best first. Most groups hold one task: no copy, no sort (a plan looks at every group). */
const liveBestFirst = (tasks: readonly Task[]): readonly Task[] => {
  if (tasks.length === 1) return isLive(tasks[0] as Task) ? tasks : NONE;
  return tasks.filter(isLive).sort(better);
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

interface UpdateInput {
  service: Service;
  config: UpdateConfig;
  /** The wanted groups (slots or nodes), in the order their tasks are replaced. */
  wanted: string[];
  /** The live task standing for each group. */
  current: ReadonlyMap<string, Task>;
  /** Groups that get a new task in this plan anyway (a restart, a node replacement, a missing task). */
  replacing: ReadonlySet<string>;
  tasksOf: (key: string) => Task[];
  isCurrent: (t: Task) => boolean;
  now: number;
  due: (ms: number) => void;
  /** Replaces the group's outdated task with one of the current spec. */
  replace: (key: string, old: Task) => void;
}

/**
 * The updater: replaces tasks made from an older spec, `parallelism` groups at a time; the next batch starts once
 * every new task of this one has run for `monitorMs`, plus `delayMs`. New tasks that fail (or end) since the update
 * started count against `maxFailureRatio`; beyond it the failure action applies: pause, or roll back to the previous
 * spec (a rollback that fails pauses). Returns the service when its update status (or spec) changes.
 */
const planUpdate = (u: UpdateInput): Service | undefined => {
  const { service, config, now } = u;
  const status = service.updateStatus as UpdateStatus;
  const back = status.state === 'rollback_started';
  const what = back ? 'rollback' : 'update';
  const startedAt = Date.parse(status.startedAt) || 0;
  const failed = u.wanted
    .flatMap(u.tasksOf)
    .filter((t) => u.isCurrent(t) && FAILED_STATES.has(t.status.state) && taskTime(t) >= startedAt)
    .sort((a, b) => taskTime(b) - taskTime(a));
  const [last] = failed;
  if (last && failed.length / Math.max(1, u.wanted.length) > config.maxFailureRatio && config.failureAction !== 'continue') {
    const why = `task ${last.id} (slot ${last.slot}) ${last.status.state}${last.status.error ? `: ${last.status.error}` : ''}`;
    if (config.failureAction === 'rollback' && !back && service.previousSpec) {
      return { ...service, spec: service.previousSpec, previousSpec: service.spec, updateStatus: { state: 'rollback_started', startedAt: new Date(now).toISOString(), message: `update failed (${why}); rolling back` } };
    }
    return { ...service, updateStatus: { ...status, state: back ? 'rollback_paused' : 'paused', message: `${what} paused: ${why}` } };
  }

  let busy = 0;
  let settledAt = 0;
  const outdated: [string, Task][] = [];
  for (const key of u.wanted) {
    const cur = u.current.get(key);
    if (!cur || u.replacing.has(key)) busy++;
    else if (!u.isCurrent(cur)) outdated.push([key, cur]);
    else if (isTerminal(cur.status.state)) continue; // a new task that failed (and counted) or gave up: not waited for
    else if (cur.status.state === 'running' && now - taskTime(cur) >= config.monitorMs) settledAt = Math.max(settledAt, taskTime(cur) + config.monitorMs);
    else {
      busy++;
      if (cur.status.state === 'running') u.due(taskTime(cur) + config.monitorMs - now);
    }
  }
  if (busy === 0 && outdated.length === 0) {
    return { ...service, updateStatus: { ...status, state: back ? 'rollback_completed' : 'completed', completedAt: new Date(now).toISOString(), message: `${what} completed` } };
  }
  // One batch at a time: wait until this one has settled, then for the delay.
  if (busy > 0 || outdated.length === 0) return undefined;
  const next = settledAt >= startedAt && settledAt > 0 ? settledAt + config.delayMs : 0;
  if (now < next) {
    u.due(next - now);
    return undefined;
  }
  for (const [key, old] of config.parallelism === 0 ? outdated : outdated.slice(0, config.parallelism)) u.replace(key, old);
  return undefined;
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
  const isCurrent = (t: Task): boolean => isCurrentSpec(t.spec, service.spec.task);
  const update = rolling(service) ? (service.updateStatus?.state === 'rollback_started' ? service.spec.rollbackConfig : service.spec.updateConfig) ?? DEFAULT_UPDATE_CONFIG : undefined;
  /** The live task standing for each wanted group after this plan (what the updater looks at). */
  const current = new Map<string, Task>();

  for (const [key, mayCreate] of wanted) {
    const tasks = groups.get(key) ?? NONE;
    const live = liveBestFirst(tasks);
    let cur = live[0];
    let extra = live.length > 1 ? live.slice(1) : NONE;
    const replacement = update?.order === 'start-first' && cur && !isCurrent(cur) ? live.find(isCurrent) : undefined;
    if (replacement) {
      // Start-first: the new task stands for the group; the old one keeps running until the new one runs.
      cur = replacement;
      const old = live.find((t) => !isCurrent(t));
      extra = live.filter((t) => t !== replacement && (t !== old || replacement.status.state === 'running'));
    }
    // More than one live task in a group happens only around a handover (or a start-first update); keep the best one.
    for (const t of extra) setDesired(t, 'shutdown');
    if (cur) current.set(key, cur);

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
      // A stop-first replacement waits until the task it replaces has stopped (or its node is gone).
      const stopping = tasks.some((t) => t !== cur && !isLive(t) && t.nodeId !== '' && !isTerminal(t.status.state) && t.status.state !== 'pending' && nodeHealthy(input.nodes, t.nodeId));
      if (now < cur.notBefore) due(cur.notBefore - now);
      else if (!stopping) setDesired(cur, 'running');
    }
  }

  if (update || global) plan.again = true;
  if (update) {
    const replacing = new Set(plan.create.map(keyOf));
    plan.service = planUpdate({
      service,
      config: update,
      wanted: [...wanted.keys()],
      current,
      replacing,
      tasksOf: (key) => groups.get(key) ?? [],
      isCurrent,
      now,
      due,
      replace: (key, old) => {
        const next = fresh(key, { restartHistory: old.restartHistory });
        if (update.order === 'start-first') {
          // The old task runs on until the new one does (see the group loop above).
          plan.create.push(next);
          return;
        }
        // Stop-first: the new task is prepared now and started once the old one has stopped (see above).
        setDesired(old, 'shutdown');
        plan.create.push({ ...next, desiredState: 'ready' });
      },
    });
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
    let dead: Task[] | undefined;
    for (const t of tasks) {
      const latest = updated.size === 0 ? t : (updated.get(t.id) ?? t);
      if (!isLive(latest)) (dead ??= []).push(latest);
    }
    if (!dead) continue;
    dead.sort(newestFirst);
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
