// The policy layer's public surface: declarative admission policies compiled from documents and evaluated per write — pure.
export * from './admit.js';
export { CEL_LIMITS } from './cel.js';
export { MAX_POLICY_COST, MAX_REPEATS } from './limits.js';
export { globsToRegExp, imageRepository } from './match.js';
export { policyObject, type PolicyObject } from './object.js';
