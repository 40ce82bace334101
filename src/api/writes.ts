// How API handlers write: one commit, then wait until this manager's cache has it (a client that reads right after
// a write sees it); read-modify-writes run again on a conflict, one at a time per manager.

import { ShoalError, canonicalJson, type ObjectOfKind, type Service, type ServiceSpec, type StoredObject } from '../core/index.js';
import { isoNow, type Clock } from '../lib/clock.js';
import type { PolicyApplyResult } from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { Op, Store } from '../store/store.js';
import type { AuditNote } from './http.js';

const CONFLICT_RETRIES = 5;

/**
 * The request a write is made for: its signal ends the wait for the cache, and its audit entry, when it has one, goes
 * in the same commit as its first write (a RequestContext is one).
 */
export interface WriteOrigin {
  signal: AbortSignal;
  audit?: Pick<AuditNote, 'withWrite'>;
}

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

/**
 * Gathers the requests that arrive while a batch is being written and runs them as the next batch (at most `max()`,
 * read per batch): one commit and one wait for many requests. `run` answers each item with its result or the error
 * that refused it.
 */
class Batcher<I, O> {
  private readonly waiting: { item: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];
  private running = false;

  constructor(
    private readonly run: (items: I[]) => Promise<(O | ShoalError)[]>,
    private readonly max: () => number,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.max());
      try {
        const out = await this.run(batch.map((b) => b.item));
        batch.forEach((b, i) => {
          const o = out[i] as O | ShoalError;
          if (o instanceof ShoalError) b.reject(o);
          else b.resolve(o);
        });
      } catch (e) {
        for (const b of batch) b.reject(e);
      }
    }
    this.running = false;
  }
}

/** Services created in one commit at most (each commit also writes the cluster object, and each service its audit entry). */
const CREATES_PER_COMMIT = 100;

interface Create {
  spec: ServiceSpec;
  id: string;
  createdAt: string;
  from?: WriteOrigin | undefined;
}

export class StoreWriter {
  private readonly writes = new Mutex();
  private readonly creates: Batcher<Create, Service>;

  constructor(private readonly deps: { store: Store; cache: Cache }) {
    this.creates = new Batcher((items) => this.createServices(items), () => Math.max(1, Math.min(CREATES_PER_COMMIT, Math.floor((deps.store.maxOpsPerCommit - 1) / 2))));
  }

  /**
   * Creates a service whose name no other service has. Creates that arrive while others are written are gathered into
   * one commit (one wait for the store, not one each), so a deploy tool creating many services is not served one at a
   * time. Every such commit also writes the cluster object (compare-and-set on its version): of two managers creating
   * one name at once, one conflicts, catches up and finds the name taken.
   */
  createService(spec: ServiceSpec, id: string, clock: Clock, from?: WriteOrigin): Promise<Service> {
    return this.creates.submit({ spec, id, createdAt: isoNow(clock), from });
  }

  private createServices(items: Create[]): Promise<(Service | ShoalError)[]> {
    return this.retryOnConflict(async () => {
      const taken = new Set(this.deps.cache.list('service').map((s) => s.spec.name));
      const out: (Service | ShoalError)[] = [];
      const ops: Op[] = [];
      const origins: WriteOrigin[] = [];
      for (const { spec, id, createdAt, from } of items) {
        if (taken.has(spec.name)) {
          out.push(new ShoalError('already_exists', `service '${spec.name}' already exists`, { violations: [{ field: 'name', reason: 'a service with this name exists' }] }));
          continue;
        }
        taken.add(spec.name);
        const s: Service = { kind: 'service', id, meta: { version: 0, createdAt, updatedAt: createdAt }, spec };
        out.push(s);
        ops.push({ op: 'create', object: s });
        if (from) origins.push(from);
      }
      if (ops.length === 0) return out;
      const cluster = this.deps.cache.list('cluster')[0];
      // Answers are given once the cache has the services; a client that goes away meanwhile does not stop the others'
      // (no request's signal ends the wait).
      const stored = await this.commitFor([...ops, ...(cluster ? [{ op: 'update' as const, object: cluster }] : [])], origins);
      const byId = new Map(stored.map((o) => [o.id, o]));
      return out.map((o) => (o instanceof ShoalError ? o : ((byId.get(o.id) as Service | undefined) ?? o)));
    });
  }

  /**
   * Commits `ops`, with the audit entry of the request they are made for when it has one not yet committed (and there
   * is room for it), and waits until the cache has the commit. Returns the objects of `ops` as stored.
   */
  commit(ops: Op[], from?: WriteOrigin): Promise<StoredObject[]> {
    return this.commitFor(ops, from ? [from] : [], from?.signal);
  }

  /** `commit` for the requests `origins`: their audit entries not yet committed go with `ops` when they all fit. */
  private async commitFor(ops: Op[], origins: WriteOrigin[], signal?: AbortSignal): Promise<StoredObject[]> {
    const entries = origins.flatMap((o) => (o.audit?.withWrite && !o.audit.withWrite.committed ? [o.audit.withWrite] : []));
    const audited = ops.length + entries.length <= this.deps.store.maxOpsPerCommit ? entries : [];
    const r = await this.deps.store.commit([...ops, ...audited.map((e): Op => ({ op: 'create', object: e.event() }))]);
    for (const e of audited) e.committed = true;
    await this.deps.cache.waitFor(r.revision, signal);
    return r.objects.slice(0, ops.length).filter((o) => o !== undefined);
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
  async applyByName<K extends AppliedKind>(kind: K, docs: AppliedDocument<K>[], clock: Clock, from: WriteOrigin): Promise<PolicyApplyResult[]> {
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
      if (ops.length > 0) await this.commit(ops, from);
      return out;
    });
  }

  /** Deletes the object `find` returns as it is at the time (`find` throws not_found when there is none). */
  async removeCurrent(find: () => StoredObject, from: WriteOrigin): Promise<void> {
    await this.retryOnConflict(async () => {
      const cur = find();
      await this.commit([{ op: 'delete', kind: cur.kind, id: cur.id, version: cur.meta.version }], from);
    });
  }
}
