// The task state machine: states only move forward, and one function enforces the order.

/**
 * Task states in lifecycle order.
 * - new: created by an orchestrator, not yet considered by the scheduler;
 * - pending: waiting for the scheduler to find a node;
 * - assigned: placed on a node, not yet acknowledged by its agent;
 * - accepted: the agent has it;
 * - preparing: the agent is creating the container;
 * - starting: the container is being started;
 * - running: the container runs;
 * - complete: exited with code 0;
 * - failed: exited non-zero or could not be prepared/started;
 * - shutdown: stopped because the manager asked;
 * - rejected: the node could not run it at all (e.g. image missing);
 * - orphaned: its node went down and the task was given up.
 */
export const TASK_STATES = [
  'new',
  'pending',
  'assigned',
  'accepted',
  'preparing',
  'starting',
  'running',
  'complete',
  'failed',
  'shutdown',
  'rejected',
  'orphaned',
] as const;

export type TaskState = (typeof TASK_STATES)[number];

const ORDER: Record<TaskState, number> = Object.fromEntries(TASK_STATES.map((s, i) => [s, i])) as Record<TaskState, number>;

/** Terminal states: a task in one never moves again. */
export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned']);

export const isTerminal = (s: TaskState): boolean => TERMINAL_STATES.has(s);

/** Rank of a state in the lifecycle; terminal states share the highest rank. */
export const stateRank = (s: TaskState): number => Math.min(ORDER[s], ORDER.complete);

/**
 * Whether a task may move from `from` to `to`. Moves go forward only; a terminal state is final.
 * Staying in the same state is allowed (an idempotent report), except for terminal states which
 * are final and so re-reports are no-ops for the caller to drop.
 */
export const canTransition = (from: TaskState, to: TaskState): boolean => {
  if (isTerminal(from)) return false;
  if (from === to) return true;
  return stateRank(to) > stateRank(from) || isTerminal(to);
};

/** Returns `to` when the move is legal, else undefined; callers drop illegal (stale or duplicate) reports. */
export const transition = (from: TaskState, to: TaskState): TaskState | undefined =>
  canTransition(from, to) ? to : undefined;
