// Comparing specs: what counts as a change that replaces a service's tasks.

import { compareText } from './compare.js';
import type { ServiceSpec } from './objects.js';

/** JSON with object keys sorted: equal values give equal text whatever order their keys were written in. */
export const canonicalJson = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => compareText(a, b))) : x,
  );

/**
 * Whether two JSON values are equal as JSON: object key order does not matter, and a key whose value is undefined is
 * no key at all — what comparing their canonical JSON says, without making the strings.
 */
export const sameJson = (a: unknown, b: unknown): boolean => {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => sameJson(x, b[i]));
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = (r: Record<string, unknown>): string[] => Object.keys(r).filter((k) => r[k] !== undefined);
  const ka = keys(ra);
  return ka.length === keys(rb).length && ka.every((k) => rb[k] !== undefined && sameJson(ra[k], rb[k]));
};

/** Whether going from spec `a` to `b` replaces tasks: only a changed task template does (not replicas or labels). */
export const taskTemplateChanged = (a: ServiceSpec, b: ServiceSpec): boolean => !sameJson(a.task, b.task);
