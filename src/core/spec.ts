// Comparing specs: what counts as a change that replaces a service's tasks.

import type { ServiceSpec } from './objects.js';

/** JSON with object keys sorted: equal values give equal text whatever order their keys were written in. */
export const canonicalJson = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );

/** Whether going from spec `a` to `b` replaces tasks: only a changed task template does (not replicas or labels). */
export const taskTemplateChanged = (a: ServiceSpec, b: ServiceSpec): boolean => canonicalJson(a.task) !== canonicalJson(b.task);
