// What the tasks already placed hold on each node, kept up to date one task at a time: a scheduler that places a
// few tasks among 100,000 must not add up every placed task again for each batch.

import { isTerminal, type Task } from '../core/index.js';

/** One node's load: reserved resources and task counts (in total and per service). */
export interface NodeLoad {
  nanoCpus: number;
  memoryBytes: number;
  taskCount: number;
  readonly serviceCounts: Map<string, number>;
}

/** Whether a task holds resources on its node: it has one and has neither ended nor still waits to be placed. */
export const holdsResources = (t: Task): boolean => t.nodeId !== '' && t.status.state !== 'pending' && !isTerminal(t.status.state);

/** Loads by node id, changed by adding and removing tasks (each task counted as it holds resources). */
export class NodeLoads {
  private readonly byNode = new Map<string, NodeLoad>();

  get view(): ReadonlyMap<string, Readonly<NodeLoad>> {
    return this.byNode;
  }

  add(t: Task): void {
    if (holdsResources(t)) this.change(t, 1);
  }

  remove(t: Task): void {
    if (holdsResources(t)) this.change(t, -1);
  }

  private change(t: Task, sign: 1 | -1): void {
    let load = this.byNode.get(t.nodeId);
    if (!load) this.byNode.set(t.nodeId, (load = { nanoCpus: 0, memoryBytes: 0, taskCount: 0, serviceCounts: new Map() }));
    const r = t.spec.resources.reservations;
    load.nanoCpus += sign * r.nanoCpus;
    load.memoryBytes += sign * r.memoryBytes;
    load.taskCount += sign;
    const n = (load.serviceCounts.get(t.serviceId) ?? 0) + sign;
    if (n > 0) load.serviceCounts.set(t.serviceId, n);
    else load.serviceCounts.delete(t.serviceId);
    if (load.taskCount === 0) this.byNode.delete(t.nodeId);
  }
}
