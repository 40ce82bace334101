// The reconcile layer's public surface: the controllers the leader runs.
export { ServiceController } from './service-controller.js';
export { SchedulingLoop, type SchedulingStats } from './scheduling.js';
export { NodeHealth, type HeartbeatSource, DEFAULT_MISSED_BEATS } from './node-health.js';
export type { ControllerContext } from './context.js';
