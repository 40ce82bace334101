// Views: the stable listing rows the API returns, computed from stored objects.

import { compareText, projectOf, sameJson, type Node, type Service, type Task } from '../core/index.js';
import type { NodeListItem, ServiceListItem, TaskListItem } from '../protocol/index.js';
import type { TaskCounts } from '../store/cache.js';

/** `counts`: the service's live tasks (desired running or ready) and how many of those run (Cache.taskCounts). */
export const serviceRow = (s: Service, counts: TaskCounts): ServiceListItem => {
  const replicated = 'replicated' in s.spec.mode;
  return {
    id: s.id,
    name: s.spec.name,
    project: projectOf(s.spec),
    mode: replicated ? 'replicated' : 'global',
    image: s.spec.task.container.image,
    // A global service wants one task per eligible node: the orchestrator's live tasks are that count.
    replicas: { desired: 'replicated' in s.spec.mode ? s.spec.mode.replicated.replicas : counts.live, running: counts.running },
  };
};

/** `upToDate`: whether the task runs its service's current spec (left out when the service is gone). */
const taskRow = (t: Task, nodes: ReadonlyMap<string, Node>, upToDate: boolean | undefined): TaskListItem => ({
  id: t.id,
  serviceName: t.serviceName,
  slot: t.slot,
  nodeId: t.nodeId,
  desiredState: t.desiredState,
  state: t.status.state,
  containerId: t.status.containerId,
  error: t.status.error,
  createdAt: t.meta.createdAt,
  stateSince: t.status.timestamp,
  message: t.status.state === 'pending' && t.schedulingMessage ? t.schedulingMessage : t.status.message,
  node: nodes.get(t.nodeId)?.description.hostname ?? '',
  image: t.spec.container.image,
  ...(upToDate === undefined ? {} : { upToDate }),
});

/** Tasks of a service as `service ps` shows them: by slot, then node, newest first. */
export const taskRows = (tasks: Task[], nodes: ReadonlyMap<string, Node>, service?: Service): TaskListItem[] => {
  const template = service?.spec.task;
  // The tasks of a service version share one spec object (the cache's): compare each distinct one with the template
  // once, not once per task (a thousand deep comparisons for one `service ps`).
  const current = new Map<Task['spec'], boolean>();
  const upToDate = (spec: Task['spec']): boolean | undefined => {
    if (template === undefined) return undefined;
    let same = current.get(spec);
    if (same === undefined) current.set(spec, (same = spec === template || sameJson(spec, template)));
    return same;
  };
  return [...tasks]
    .sort((a, b) => a.slot - b.slot || compareText(a.nodeId, b.nodeId) || compareText(b.meta.createdAt, a.meta.createdAt))
    .map((t) => taskRow(t, nodes, upToDate(t.spec)));
};

/** A node as `node ls` shows it; managers say whether they lead, and otherwise whether they are reachable. */
export const nodeRow = (n: Node, leaderId: string | undefined): NodeListItem => ({
  id: n.id,
  hostname: n.description.hostname,
  role: n.spec.role,
  availability: n.spec.availability,
  status: n.status.state,
  address: n.description.address,
  ...(n.spec.role === 'manager' ? { managerStatus: n.id === leaderId ? 'leader' : n.status.state === 'ready' ? 'reachable' : 'unreachable' } : {}),
});
