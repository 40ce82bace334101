// The agent↔manager session protocol: JSON messages over one WebSocket, the same for local and remote workers.

import type { DesiredState, NodeDescription, NodeRole, Task, TaskState } from '../core/index.js';

export const SESSION_PATH = '/v1/session';
/**
 * 3: every message from the agent is a sign of life, and the agent heartbeats only in a period it sent nothing else (a
 * manager of protocol 2 counted heartbeats alone, and would find a node busy reporting status down).
 * 4: the periodic check of a node's set is a digest (`assignments-check`), not the whole set again; an agent whose set
 * differs asks for the whole set (`assignments-request`).
 */
export const SESSION_PROTOCOL_VERSION = 4;

/** The TLS server name in every manager's certificate: clients check it whatever address they dialled. */
export const MANAGER_TLS_NAME = 'shoal-manager';

/**
 * Response header of a manager that is not the leader, on a request only the leader serves (an agent session, a log
 * stream): HOST:PORT of the leading manager, absent while none is known. Such responses have status 503.
 */
export const LEADER_HEADER = 'shoal-leader';

/** Response header on every API response: the addresses (HOST:PORT) of all managers, comma-separated, leader first. */
export const MANAGERS_HEADER = 'shoal-managers';

/** What an agent needs of a task; the manager sends tasks whole so the agent needs nothing else. */
export type AssignedTask = Pick<Task, 'id' | 'serviceId' | 'serviceName' | 'slot' | 'nodeId' | 'spec' | 'desiredState' | 'serviceVersion'> & {
  state: TaskState;
  containerId: string;
};

/** One observed change of a task, reported by the agent that runs it. */
export interface TaskStatusUpdate {
  taskId: string;
  state: TaskState;
  message: string;
  error: string;
  containerId: string;
  exitCode?: number;
  /** The task's container has been removed (sent for finished tasks too, so the manager knows cleanup is done). */
  removed?: boolean;
  /** ISO time the agent observed the change. */
  timestamp: string;
}

// ---------------------------------------------------------------- agent → manager

export interface HelloMessage {
  type: 'hello';
  protocol: number;
  nodeId: string;
  description: NodeDescription;
}
/** Sent once per heartbeat period in which the agent sent nothing else: any message says the node lives. */
export interface HeartbeatMessage {
  type: 'heartbeat';
}
export interface StatusMessage {
  type: 'status';
  updates: TaskStatusUpdate[];
}
export interface LogsDataMessage {
  type: 'logs-data';
  requestId: string;
  lines: { stream: 'stdout' | 'stderr'; time?: string; line: string }[];
}
export interface LogsEndMessage {
  type: 'logs-end';
  requestId: string;
  error?: string;
}
/** The agent's set differs from the manager's last `assignments-check`: it asks for the whole set. */
export interface AssignmentsRequestMessage {
  type: 'assignments-request';
}
export type AgentMessage = HelloMessage | HeartbeatMessage | StatusMessage | LogsDataMessage | LogsEndMessage | AssignmentsRequestMessage;

// ---------------------------------------------------------------- manager → agent

export interface WelcomeMessage {
  type: 'welcome';
  nodeId: string;
  heartbeatPeriodMs: number;
  /** Addresses (HOST:PORT) of every manager, the leader first: where to go when this one is lost. */
  managers: string[];
  /** The role the cluster gives the node now: a node told another role than it runs (promoted, demoted) takes it up. */
  role: NodeRole;
}
/** The complete set of tasks assigned to the node: anything the agent runs that is not in it must stop. */
export interface AssignmentsMessage {
  type: 'assignments';
  tasks: AssignedTask[];
}
/**
 * What changed in the node's set since the last `assignments` or `assignments-update` of this session: tasks added or
 * changed (whole), and ids no longer assigned (their containers must stop). A session always starts with a full set.
 */
export interface AssignmentsUpdateMessage {
  type: 'assignments-update';
  tasks: AssignedTask[];
  removed: string[];
}
/**
 * The node's set as the manager holds it, as a digest sent now and then (the whole set costs ~0.6 KB a task): each
 * task's id, state as the manager recorded it, and desired state. An agent holding another set (a task more or less,
 * another desired state) asks for the whole set; one whose report the manager lacks says it again.
 */
export interface AssignmentsCheckMessage {
  type: 'assignments-check';
  tasks: [id: string, state: TaskState, desiredState: DesiredState][];
}
export interface LogsRequestMessage {
  type: 'logs-request';
  requestId: string;
  taskId: string;
  follow: boolean;
  tail?: number;
  since?: number;
}
export interface LogsCancelMessage {
  type: 'logs-cancel';
  requestId: string;
}
export type ManagerMessage = WelcomeMessage | AssignmentsMessage | AssignmentsUpdateMessage | AssignmentsCheckMessage | LogsRequestMessage | LogsCancelMessage;

/** Desired states in which the agent must have the task's container prepared or running. */
export const wantsContainer = (d: DesiredState): boolean => d === 'ready' || d === 'running';

/** Parses a JSON message, checking only the discriminant; fields are trusted per message handler. */
export const parseMessage = <T extends { type: string }>(raw: string, allowed: readonly T['type'][]): T => {
  const m = JSON.parse(raw) as unknown;
  if (typeof m !== 'object' || m === null || !allowed.includes((m as { type: string }).type)) {
    throw new Error(`unexpected session message type ${JSON.stringify((m as { type?: unknown } | null)?.type)}`);
  }
  return m as T;
};
