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

/** What `commitChunks` wrote: the revision of its last commit, and why a later chunk failed when one did. */
export interface Committed {
  revision: number;
  /** The first chunk's failure throws instead: nothing was written. */
  failed?: { reason: unknown };
}

/**
 * Commits ops in chunks the store accepts (one transaction when they fit). Callers pass ops that stay correct when
 * split: each stands on its own. A caller must wait until the cache has the revision before it plans again from the
 * cache, also when a later chunk failed (the chunks before it are written).
 */
export const commitChunks = async (ctx: ControllerContext, ops: Op[], opts: { background?: boolean } = {}): Promise<Committed> => {
  const background = opts.background ?? true;
  const chunks = chunked(ops, ctx.store.maxOpsPerCommit);
  if (chunks.length === 0) return { revision: 0 };
  // The first chunk alone (callers put the op the rest depends on first, e.g. a service's update status); the others
  // go out together: a networked store (etcd) pipelines them instead of paying a round trip and a consensus round
  // each, one after another.
  // Controllers' writes are background work unless said otherwise: an API request's write goes first where the store
  // queues writes.
  const first = await ctx.store.commit(chunks[0] ?? [], { background });
  const results = await Promise.allSettled(chunks.slice(1).map((c) => ctx.store.commit(c, { background })));
  const failed = results.find((r) => r.status === 'rejected');
  const revision = Math.max(first.revision, ...results.map((r) => (r.status === 'fulfilled' ? r.value.revision : 0)));
  return failed ? { revision, failed: { reason: failed.reason } } : { revision };
};

/** commitChunks, then waits until the cache has applied the last commit (read-your-writes); throws what failed. */
export const commitAndWait = async (ctx: ControllerContext, ops: Op[], signal?: AbortSignal, opts: { background?: boolean } = {}): Promise<number> => {
  const { revision, failed } = await commitChunks(ctx, ops, opts);
  await ctx.cache.waitFor(revision, signal);
  if (failed) throw failed.reason;
  return revision;
};
