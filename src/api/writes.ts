// How API handlers write: one commit, then wait until this manager's cache has it (a client that reads right after
// a write sees it); read-modify-writes run again on a conflict, one at a time per manager.

import { ShoalError, canonicalJson, type ObjectOfKind, type StoredObject } from '../core/index.js';
import { isoNow, type Clock } from '../lib/clock.js';
import type { PolicyApplyResult } from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { Op, Store } from '../store/store.js';

const CONFLICT_RETRIES = 5;

/** The kinds an admin applies from YAML documents: the object's id is the document's name. */
export type AppliedKind = 'policy' | 'template';

/** One document of an apply: its name and what its object holds besides kind, id and meta. */
export interface AppliedDocument<K extends AppliedKind> {
  name: string;
  content: Omit<ObjectOfKind<K>, 'kind' | 'id' | 'meta'>;
}

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

  /**
   * Creates or updates the object of every document by name, all in one commit (all or nothing, run again on a
   * conflict); an object whose content is already the document's is left unchanged, and no commit is made when all are.
   */
  async applyByName<K extends AppliedKind>(kind: K, docs: AppliedDocument<K>[], clock: Clock, signal: AbortSignal): Promise<PolicyApplyResult[]> {
    return this.retryOnConflict(async () => {
      const ops: Op[] = [];
      const out: PolicyApplyResult[] = [];
      for (const { name, content } of docs) {
        const cur: ObjectOfKind<AppliedKind> | undefined = this.deps.cache.get(kind, name);
        if (cur && canonicalJson({ ...cur, kind: undefined, id: undefined, meta: undefined }) === canonicalJson(content)) {
          out.push({ name, version: cur.meta.version, result: 'unchanged' });
          continue;
        }
        const iso = isoNow(clock);
        const object = { kind, id: name, meta: cur?.meta ?? { version: 0, createdAt: iso, updatedAt: iso }, ...content } as ObjectOfKind<K>;
        ops.push({ op: cur ? 'update' : 'create', object });
        out.push({ name, version: (cur?.meta.version ?? 0) + 1, result: cur ? 'updated' : 'created' });
      }
      if (ops.length > 0) await this.commit(ops, signal);
      return out;
    });
  }

  /** Deletes the object `find` returns as it is at the time (`find` throws not_found when there is none). */
  async removeCurrent(find: () => StoredObject, signal: AbortSignal): Promise<void> {
    await this.retryOnConflict(async () => {
      const cur = find();
      await this.commit([{ op: 'delete', kind: cur.kind, id: cur.id, version: cur.meta.version }], signal);
    });
  }
}
