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

/** Largest transaction a controller writes at once; larger plans are written in chunks of independent ops. */
export const MAX_OPS_PER_COMMIT = 1000;

/** Commits ops in chunks and waits until the cache has applied the last one (read-your-writes). */
export const commitAndWait = async (ctx: ControllerContext, ops: Op[], signal?: AbortSignal): Promise<number> => {
  let revision = 0;
  for (let i = 0; i < ops.length; i += MAX_OPS_PER_COMMIT) {
    revision = (await ctx.store.commit(ops.slice(i, i + MAX_OPS_PER_COMMIT))).revision;
  }
  if (revision > 0) await ctx.cache.waitFor(revision, signal);
  return revision;
};
