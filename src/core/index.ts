// The core layer's public surface: domain types, the task state machine and the error registry.
export * from './errors.js';
export * from './objects.js';
export * from './access.js';
export * from './task-state.js';
export * from './constraints.js';
export * from './units.js';
export * from './spec.js';
export * from './freeze.js';
export * from './compare.js';
