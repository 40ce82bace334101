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

  constructor(private readonly deps: { store: Store; cache: Cache }) {}

  async commit(ops: Op[], signal: AbortSignal): Promise<StoredObject[]> {
    const r = await this.deps.store.commit(ops);
    await this.deps.cache.waitFor(r.revision, signal);
    return r.objects.filter((o) => o !== undefined);
  }

  /** Runs a read-modify-write again when a concurrent writer (a controller, another manager) got there first. */
  async retryOnConflict<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.writes.run(fn);
      } catch (e) {
        if (!(e instanceof ShoalError && e.code === 'conflict') || attempt >= CONFLICT_RETRIES) throw e;
        await this.deps.cache.waitFor(await this.deps.store.revision());
      }
    }
  }
}
