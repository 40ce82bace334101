// Views: the stable listing rows the API returns, computed from stored objects.

import { projectOf, sameJson, type Node, type Service, type Task } from '../core/index.js';
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

/** `template`: the service's task template, to say whether the task runs the current spec. */
export const taskRow = (t: Task, nodes: ReadonlyMap<string, Node>, template?: Task['spec']): TaskListItem => ({
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
  ...(template === undefined ? {} : { upToDate: t.spec === template || sameJson(t.spec, template) }),
});

/** Tasks of a service as `service ps` shows them: by slot, newest first within a slot. */
export const taskRows = (tasks: Task[], nodes: ReadonlyMap<string, Node>, service?: Service): TaskListItem[] => {
  const template = service?.spec.task;
  return [...tasks]
    .sort((a, b) => a.slot - b.slot || a.nodeId.localeCompare(b.nodeId) || b.meta.createdAt.localeCompare(a.meta.createdAt))
    .map((t) => taskRow(t, nodes, template));
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
