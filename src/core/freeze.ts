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

/** Whether `o` was frozen whole by deepFreeze, so neither it nor anything it holds can change. */
export const isDeepFrozen = (o: object): boolean => deeplyFrozen.has(o);
