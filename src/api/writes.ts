// How API handlers write: one commit, then wait until this manager's cache has it (a client that reads right after
// a write sees it); read-modify-writes run again on a conflict, one at a time per manager.

import { ShoalError, type StoredObject } from '../core/index.js';
import type { Cache } from '../store/cache.js';
import type { Op, Store } from '../store/store.js';

const CONFLICT_RETRIES = 5;

/** Serializes async sections (name checks + writes) so two requests cannot both claim a name. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release: () => void = () => undefined;
    this.tail = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

export class StoreWriter {
  private readonly writes = new Mutex();
  /**
   * While a read-modify-write holds the mutex: the revision of its last commit, which it waits for after letting the
   * next writer in. Undefined outside one.
   */
  private held: { revision: number; signal?: AbortSignal } | undefined;

  constructor(private readonly deps: { store: Store; cache: Cache }) {}

  /** Commits; the caller reads its own write afterwards (at once, or — inside retryOnConflict — once it returns). */
  async commit(ops: Op[], signal: AbortSignal): Promise<StoredObject[]> {
    const r = await this.deps.store.commit(ops);
    if (this.held) this.held = { revision: Math.max(this.held.revision, r.revision), signal };
    else await this.deps.cache.waitFor(r.revision, signal);
    return r.objects.filter((o) => o !== undefined);
  }

  /**
   * Runs a read-modify-write, one at a time on this manager, and again when a concurrent writer (a controller, another
   * manager) got there first. The wait for the cache to show the write happens after the next writer is let in: a
   * busy cache then delays each write once, not once per write queued before it. Correctness does not rest on the
   * mutex — every such write compares-and-sets, so one that read a stale cache conflicts and runs again.
   */
  async retryOnConflict<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { value, held } = await this.writes.run(async () => {
          this.held = { revision: 0 };
          try {
            return { value: await fn(), held: this.held };
          } finally {
            this.held = undefined;
          }
        });
        if (held.revision > 0) await this.deps.cache.waitFor(held.revision, held.signal);
        return value;
      } catch (e) {
        if (!(e instanceof ShoalError && e.code === 'conflict') || attempt >= CONFLICT_RETRIES) throw e;
        await this.deps.cache.waitFor(await this.deps.store.revision());
      }
    }
  }
}
