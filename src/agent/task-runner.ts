// Drives one node's tasks through the runtime: makes what is assigned real, stops what is not, reports what it sees.
//
// Invariants: operations on one task are serialized (one promise chain per task); a state is reported only if it
// moves the task forward (core transition order); containers are found again by label after a restart, so an agent
// restart never starts a second container for a task.
//
// Health: a task whose container has a health check (its own or its image's) stays `starting` until the check
// passes, then is `running`; once the check says unhealthy, the container is stopped and the task `failed`, so the
// manager's restart policy replaces it. Health changes arrive as runtime events (the agent touches the task).

import { isTerminal, stateRank, type DesiredState, type TaskState } from '../core/index.js';
import type { Logger } from '../lib/logger.js';
import { wantsContainer, type AssignedTask, type TaskStatusUpdate } from '../protocol/index.js';
import { RuntimeError, type ContainerConfig, type ContainerInfo, type Runtime } from '../runtime/runtime.js';

export interface TaskRunnerOptions {
  nodeId: string;
  runtime: Runtime;
  logger: Logger;
  /** Called with each status change, in order per task. */
  report: (u: TaskStatusUpdate) => void;
}

const exitStatus = (info: ContainerInfo): { state: TaskState; error: string; message: string } => {
  const code = info.exitCode ?? -1;
  if (code === 0 && !info.error) return { state: 'complete', error: '', message: 'finished' };
  const why = info.error ? `${info.error}; ` : '';
  return { state: 'failed', error: `${why}task exited with code ${code}`, message: 'exited' };
};

/** Whether a started container may have a health check: one in the spec, or (without one) the image's own. */
const mayHaveHealthcheck = (t: AssignedTask): boolean => t.spec.container.healthcheck?.test[0] !== 'NONE';

export class TaskRunner {
  private readonly assigned = new Map<string, AssignedTask>();
  /** taskId → containerId for every container this node holds for a task. */
  private readonly containers = new Map<string, string>();
  /** The furthest state known for each task (reported by us or recorded by the manager). */
  private readonly known = new Map<string, TaskState>();
  /** The last report sent for each task, to say again if the manager lost it. */
  private readonly lastReports = new Map<string, TaskStatusUpdate>();
  private readonly chains = new Map<string, Promise<void>>();
  private haveAssignments = false;

  constructor(private readonly opts: TaskRunnerOptions) {}

  /** Finds this node's existing containers (after an agent restart) so they are adopted, not duplicated. */
  async adopt(signal?: AbortSignal): Promise<number> {
    const list = await this.opts.runtime.list({ nodeId: this.opts.nodeId }, signal);
    for (const c of list) this.containers.set(c.taskId, c.id);
    return list.length;
  }

  containerOf(taskId: string): string | undefined {
    return this.containers.get(taskId);
  }

  /** Applies the manager's complete set of tasks for this node. */
  setAssignments(tasks: AssignedTask[]): void {
    this.haveAssignments = true;
    const ids = new Set<string>();
    for (const t of tasks) {
      ids.add(t.id);
      this.assign(t);
    }
    for (const id of [...this.assigned.keys()]) if (!ids.has(id)) this.assigned.delete(id);
    // Anything this node runs that the manager no longer assigns to it is stopped and removed.
    for (const id of this.containers.keys()) if (!ids.has(id)) this.enqueue(id);
  }

  /** Applies a change to the set: tasks added or changed, and tasks no longer assigned here (stopped and removed). */
  updateAssignments(tasks: AssignedTask[], removed: string[]): void {
    for (const t of tasks) this.assign(t);
    for (const id of removed) {
      this.assigned.delete(id);
      if (this.containers.has(id)) this.enqueue(id);
    }
  }

  /**
   * Compares a digest of the manager's set (assignments-check) with the set held: true when they are the same tasks
   * with the same desired states. A task the manager shows behind this node's report has its report said again, as
   * with a whole set.
   */
  check(tasks: readonly (readonly [id: string, state: TaskState, desiredState: DesiredState])[]): boolean {
    let same = tasks.length === this.assigned.size;
    for (const [id, state, desiredState] of tasks) {
      if (this.assigned.get(id)?.desiredState !== desiredState) same = false;
      else this.recorded(id, state);
    }
    return same;
  }

  /** Takes one task of the set as the manager sees it now. */
  private assign(t: AssignedTask): void {
    const prev = this.assigned.get(t.id);
    this.assigned.set(t.id, t);
    this.recorded(t.id, t.state);
    // Only what changed needs work: every runtime call is paid for by the Engine, which serializes them.
    // Tasks whose containers change on their own are caught by runtime events and by resync().
    if (!prev || prev.desiredState !== t.desiredState) this.enqueue(t.id);
  }

  /** Re-examines one task (e.g. its container exited). */
  touch(taskId: string): void {
    if (this.assigned.has(taskId) || this.containers.has(taskId)) this.enqueue(taskId);
  }

  /** Re-examines every task: catches events the runtime did not deliver. */
  async resync(signal?: AbortSignal): Promise<void> {
    if (!this.haveAssignments) return;
    // One listing of the runtime instead of one inspect per task: enqueue only tasks whose container is not where
    // the last report left it (exited or gone while reported running, unknown containers, wanted but missing).
    const list = await this.opts.runtime.list({ nodeId: this.opts.nodeId }, signal);
    const byTask = new Map(list.map((c) => [c.taskId, c]));
    for (const c of list) if (!this.containers.has(c.taskId)) this.containers.set(c.taskId, c.id);
    for (const id of new Set([...this.assigned.keys(), ...this.containers.keys()])) {
      const t = this.assigned.get(id);
      const c = byTask.get(id);
      const known = this.known.get(id);
      // A running container is where the report left it when it is running and not unhealthy, or still starting
      // its health check while the task is reported starting.
      const live = c?.state === 'running' && (known === 'running' ? c.health !== 'unhealthy' : known === 'starting' && c.health === 'starting');
      const settled =
        t !== undefined &&
        (wantsContainer(t.desiredState)
          ? (known !== undefined && isTerminal(known)) || live || (c?.state === 'created' && t.desiredState === 'ready')
          : c === undefined || c.state !== 'running');
      if (!settled) this.enqueue(id);
    }
  }


  /**
   * The manager recorded `state` for the task. Behind what this node reported, the report was lost (e.g. the leader
   * that got it was deposed before writing it): say it again; applying it twice is harmless (reports only move a task
   * forward).
   */
  private recorded(taskId: string, state: TaskState): void {
    const known = this.known.get(taskId);
    const last = this.lastReports.get(taskId);
    if (known !== undefined && last !== undefined && stateRank(state) < stateRank(known)) this.opts.report(last);
    this.bump(taskId, state);
  }

  private enqueue(taskId: string): void {
    const prev = this.chains.get(taskId) ?? Promise.resolve();
    const next = prev
      .then(() => this.drive(taskId))
      .catch((e: unknown) => this.opts.logger.warn('task operation failed', { taskId, error: e }))
      .finally(() => {
        if (this.chains.get(taskId) === next) this.chains.delete(taskId);
      });
    this.chains.set(taskId, next);
  }

  private bump(taskId: string, state: TaskState): boolean {
    const cur = this.known.get(taskId);
    if (cur !== undefined && (isTerminal(cur) || stateRank(state) <= stateRank(cur))) return false;
    this.known.set(taskId, state);
    return true;
  }

  /** Tells the manager a finished task's container is gone (no state change: terminal states are final). */
  private reportRemoved(taskId: string, state: TaskState): void {
    this.send({ taskId, state, message: 'container removed', error: '', containerId: '', removed: true, timestamp: new Date().toISOString() });
  }

  private send(u: TaskStatusUpdate): void {
    this.lastReports.set(u.taskId, u);
    this.opts.report(u);
  }

  private report(taskId: string, state: TaskState, detail: { message?: string; error?: string; exitCode?: number; removed?: boolean } = {}): void {
    if (!this.bump(taskId, state)) return;
    this.send({
      taskId,
      state,
      message: detail.message ?? state,
      error: detail.error ?? '',
      containerId: this.containers.get(taskId) ?? '',
      ...(detail.exitCode === undefined ? {} : { exitCode: detail.exitCode }),
      ...(detail.removed ? { removed: true } : {}),
      timestamp: new Date().toISOString(),
    });
  }

  private async drive(taskId: string): Promise<void> {
    const t = this.assigned.get(taskId);
    if (!t) {
      if (this.haveAssignments) await this.discard(taskId);
      return;
    }
    if (wantsContainer(t.desiredState)) await this.run(t);
    else await this.halt(t);
  }

  /** A task the manager no longer assigns here: stop and remove its container. */
  private async discard(taskId: string): Promise<void> {
    const cid = this.containers.get(taskId);
    if (cid === undefined) return;
    await this.opts.runtime.stop(cid, 10_000);
    await this.opts.runtime.remove(cid);
    this.containers.delete(taskId);
    this.known.delete(taskId);
    this.lastReports.delete(taskId);
  }

  private async halt(t: AssignedTask): Promise<void> {
    const cid = this.containers.get(t.id);
    if (cid !== undefined) await this.opts.runtime.stop(cid, t.spec.container.stopGracePeriodMs);
    // Remove before reporting: once the manager sees the task shut down it may delete it, and whoever waits for
    // that (service rm) relies on the container being gone by then.
    if (t.desiredState === 'remove' && cid !== undefined) {
      await this.opts.runtime.remove(cid);
      this.containers.delete(t.id);
    }
    const state = this.known.get(t.id) ?? t.state;
    if (!isTerminal(state)) this.report(t.id, 'shutdown', { message: 'stopped as the manager asked', removed: t.desiredState === 'remove' });
    else if (t.desiredState === 'remove' && (cid !== undefined || t.containerId !== '')) this.reportRemoved(t.id, state);
  }

  private async run(t: AssignedTask): Promise<void> {
    const { runtime } = this.opts;
    const reported = this.known.get(t.id) ?? t.state;
    if (isTerminal(reported)) return;
    if (stateRank(reported) < stateRank('accepted')) this.report(t.id, 'accepted');

    let cid = this.containers.get(t.id);
    /** What the container is, when it existed before this call; undefined when it was just created. */
    let info: ContainerInfo | undefined;
    if (cid === undefined) {
      this.report(t.id, 'preparing', { message: 'creating container' });
      try {
        cid = await runtime.create(this.configOf(t));
        this.containers.set(t.id, cid);
      } catch (e) {
        const err = e instanceof Error ? e.message : String(e);
        this.report(t.id, e instanceof RuntimeError && e.permanent ? 'rejected' : 'failed', { error: err, message: 'could not create container' });
        return;
      }
    } else {
      info = await runtime.inspect(cid);
      if (info.state === 'missing') {
        this.containers.delete(t.id);
        this.report(t.id, 'failed', { error: 'the container was removed from outside Shoal', message: 'container missing' });
        return;
      }
    }
    if (info === undefined || info.state === 'created') {
      this.report(t.id, 'preparing', { message: 'container created' });
      if (t.desiredState !== 'running') return;
      this.report(t.id, 'starting');
      try {
        await runtime.start(cid);
      } catch (e) {
        this.report(t.id, 'failed', { error: `could not start container: ${e instanceof Error ? e.message : String(e)}` });
        return;
      }
      // A process that exits right away is seen through the runtime's exit event (and resync), which re-examines
      // the task; so without a possible health check there is no inspect here, and a start costs the Engine one call.
      if (!mayHaveHealthcheck(t)) {
        this.report(t.id, 'running', { message: 'running' });
        return;
      }
      info = await runtime.inspect(cid);
    }
    await this.follow(t, cid, info);
  }

  /** A started container: its exit, or its health, says what the task is. */
  private async follow(t: AssignedTask, cid: string, info: ContainerInfo): Promise<void> {
    if (info.state === 'exited') {
      const s = exitStatus(info);
      this.report(t.id, s.state, { error: s.error, message: s.message, ...(info.exitCode === undefined ? {} : { exitCode: info.exitCode }) });
      return;
    }
    if (info.health === 'unhealthy') {
      // Stopped before the report: the manager may start the replacement at once, and the old one must not go on serving.
      await this.opts.runtime.stop(cid, t.spec.container.stopGracePeriodMs);
      this.report(t.id, 'failed', { error: `container unhealthy${info.healthOutput ? `: ${info.healthOutput}` : ''}`, message: 'unhealthy' });
      return;
    }
    // Until the first check passes; its health event brings the task back here. (Usually reported before the start
    // already; not so for a container found running after an agent restart.)
    if (info.health === 'starting') {
      this.report(t.id, 'starting', { message: 'waiting for the health check to pass' });
      return;
    }
    this.report(t.id, 'running', { message: 'running' });
  }

  private configOf(t: AssignedTask): ContainerConfig {
    const c = t.spec.container;
    return {
      taskId: t.id,
      serviceId: t.serviceId,
      serviceName: t.serviceName,
      slot: t.slot,
      nodeId: this.opts.nodeId,
      image: c.image,
      command: c.command,
      env: c.env,
      labels: c.labels,
      limits: { nanoCpus: t.spec.resources.limits.nanoCpus, memoryBytes: t.spec.resources.limits.memoryBytes },
      ...(c.healthcheck ? { healthcheck: c.healthcheck } : {}),
    };
  }
}
