// What every controller is given: the store to write, the cache to read, and injected time and ids.

import { chunked } from '../lib/chunks.js';
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
export const commitAndWait = async (ctx: ControllerContext, ops: Op[], signal?: AbortSignal, opts: { background?: boolean } = {}): Promise<number> => {
  const background = opts.background ?? true;
  const chunks = chunked(ops, ctx.store.maxOpsPerCommit);
  if (chunks.length === 0) return 0;
  // The first chunk alone (callers put the op the rest depends on first, e.g. a service's update status); the others
  // go out together: a networked store (etcd) pipelines them instead of paying a round trip and a consensus round
  // each, one after another.
  // Controllers' writes are background work unless said otherwise: an API request's write goes first where the store
  // queues writes.
  const first = await ctx.store.commit(chunks[0] ?? [], { background });
  const results = await Promise.allSettled(chunks.slice(1).map((c) => ctx.store.commit(c, { background })));
  const failed = results.find((r) => r.status === 'rejected');
  const revision = Math.max(first.revision, ...results.map((r) => (r.status === 'fulfilled' ? r.value.revision : 0)));
  await ctx.cache.waitFor(revision, signal);
  if (failed) throw failed.reason;
  return revision;
};
