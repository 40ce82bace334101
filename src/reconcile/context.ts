// What every controller is given: the store to write, the cache to read, and injected time and ids.

import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { Cache } from '../store/cache.js';
import type { Op, Store } from '../store/store.js';

export interface ControllerContext {
  store: Store;
  cache: Cache;
  clock: Clock;
  logger: Logger;
  newId: () => string;
}

/**
 * Commits ops in chunks the store accepts (one transaction when they fit) and waits until the cache has applied the
 * last one (read-your-writes). Callers pass ops that stay correct when split: each stands on its own.
 */
export const commitAndWait = async (ctx: ControllerContext, ops: Op[], signal?: AbortSignal): Promise<number> => {
  let revision = 0;
  const size = ctx.store.maxOpsPerCommit;
  for (let i = 0; i < ops.length; i += size) {
    revision = (await ctx.store.commit(ops.slice(i, i + size))).revision;
  }
  if (revision > 0) await ctx.cache.waitFor(revision, signal);
  return revision;
};
