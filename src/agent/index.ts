// The agent layer's public surface.
export { Agent, type AgentOptions } from './agent.js';
export { TaskRunner } from './task-runner.js';
