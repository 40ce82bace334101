// The scheduler's public surface: schedule() and the filter plug-in points.
export { schedule } from './schedule.js';
export type { Plan, ScheduleInput, ScheduleOptions } from './schedule.js';
export { NodeLoads, holdsResources } from './loads.js';
export type { NodeLoad } from './loads.js';
export {
  DEFAULT_FILTERS,
  FailureTally,
  ServiceCounts,
  constraintFilter,
  countNodes,
  firstFailure,
  pinnedFilter,
  readyFilter,
  resourceFilter,
} from './filters.js';
export type { Filter, NodeInfo } from './filters.js';
