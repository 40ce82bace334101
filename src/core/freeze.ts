// Deep freezing: objects many holders share (the cache's task specs), which nobody may change and whose derived forms
// (their JSON) may therefore be remembered.

/** Objects frozen whole by deepFreeze: Object.isFrozen says only that the top level is. */
const deeplyFrozen = new WeakSet<object>();

/** Freezes an object and everything it holds, and returns it. */
export const deepFreeze = <T>(o: T): T => {
  if (typeof o !== 'object' || o === null || deeplyFrozen.has(o)) return o;
  Object.freeze(o);
  for (const v of Object.values(o)) deepFreeze(v);
  deeplyFrozen.add(o);
  return o;
};

/** JSON of objects frozen whole: they cannot change, so neither can their JSON. */
const frozenJson = new WeakMap<object, string>();

/**
 * JSON.stringify(o), made once for an object frozen whole (the cache's shared task specs: every write of a task and
 * every assignment sent splices it). Any other object (a shallow Object.freeze too) may change between two calls and
 * is serialized each time.
 */
export const jsonOf = (o: object): string => {
  let json = frozenJson.get(o);
  if (json === undefined) {
    json = JSON.stringify(o);
    if (deeplyFrozen.has(o)) frozenJson.set(o, json);
  }
  return json;
};
