// The embedded Store: objects, the revision counter and a bounded change log in one SQLite file (WAL).
//
// Layout (generic over kinds, so a new kind needs no migration):
//   objects(kind, id, version, created_at, data)  — data is the object's JSON, meta included;
//   changes(revision, kinds, events)              — one row per committed transaction: the kinds it
//                                                   touched and its WatchEvent[] as JSON;
//   meta(key, value)                              — the schema version and the global revision.
// Invariants:
//   - `meta.revision` equals the revision of the newest `changes` row (every commit writes one);
//   - `changes` holds every revision above `compactedThrough` up to the current one (contiguous; empty
//     when compacted through the current revision); what is at or below it can no longer be watched from;
//   - one process writes the file (the manager): live watch delivery is in-process, woken by commit();
//   - group commit: the commits made in one turn of the event loop are applied in one SQLite transaction, each in its
//     own savepoint with its own revision (one that fails rolls back alone), so a burst of small commits (status
//     reports of many nodes) pays for one fsync, not one each.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Kind, ObjectOfKind, StoredObject } from '../../core/index.js';
import { ShoalError } from '../../core/index.js';
import type { Clock } from '../../lib/clock.js';
import { isoNow, systemClock } from '../../lib/clock.js';
import type {
  CampaignOptions,
  CommitResult,
  ListResult,
  Op,
  Store,
  StoreStatus,
  Term,
  WatchEvent,
  WatchOptions,
} from '../store.js';

export interface SqliteStoreOptions {
  /** Source of meta.createdAt / meta.updatedAt. */
  clock?: Clock;
  /** How many of the newest revisions the change log keeps for watch replay (default 10,000). */
  keepRevisions?: number;
  /**
   * FULL (default): an acknowledged commit survives a process kill or power loss.
   * NORMAL: survives a process kill; the last commits may be lost on power loss. Faster.
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long a write waits for another connection's lock before failing, in ms (default 5,000). */
  busyTimeoutMs?: number;
}

/** The connection settings actually in force, for diagnostics and tests. */
export interface SqlitePragmas {
  journalMode: string;
  synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';
  busyTimeoutMs: number;
}

const SCHEMA_VERSION = 1;
const DEFAULT_KEEP_REVISIONS = 10_000;
/** Per-watcher cap on buffered live batches (by JSON length); past it the watcher reads the log table. */
const WATCH_BUFFER_CHARS = 64 * 1024 * 1024;
/**
 * Ops one group of commits holds at most (past the first commit): a group is written synchronously, and the event
 * loop (API requests, heartbeats) waits for it, so bigger bursts go out in several groups, one per loop turn.
 */
const GROUP_OPS = 1000;
/** How many log rows a lagging watcher reads per query. */
const LOG_CHUNK_ROWS = 64;

/** One committed transaction as watchers see it, kept as JSON so every watcher parses its own copy. */
interface Batch {
  revision: number;
  kinds: readonly string[];
  json: string;
}

/** A live watch: `cursor` is the next revision it must deliver; `buffer` is contiguous from the cursor. */
interface Watcher {
  cursor: number;
  buffer: Batch[];
  bufferedChars: number;
  wake: (() => void) | undefined;
}

interface ObjectRow {
  version: number;
  created_at: string;
}

/** A commit waiting for the next group; `fence` throws when it may no longer be written (a term that ended). */
interface Pending {
  ops: Op[];
  fence: (() => void) | undefined;
  resolve: (r: CommitResult) => void;
  reject: (e: unknown) => void;
}

interface ChangeRow {
  revision: number;
  kinds: string;
  events: string;
}

const SYNC_NAMES = ['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const;

const describeOp = (kind: string, id: string): string => `${kind} '${id}'`;

export class SqliteStore implements Store {
  /** SQLite takes any size; this bounds how long one write transaction holds the database. */
  readonly maxOpsPerCommit = 1000;
  private readonly db: Database.Database;
  private readonly path: string;
  private readonly clock: Clock;
  private readonly keepRevisions: number;
  private readonly watchers = new Set<Watcher>();
  private closed = false;
  /** The live term (one writer process: leadership is in-process) and who waits for it to end. */
  private term: { candidate: string; ended: AbortController } | undefined;
  private readonly termWaiters = new Set<() => void>();
  /** Cached revision of the last commit (this process is the only writer). */
  private currentRevision: number;
  /** Revisions at or below this have been compacted out of the change log. */
  private compactedThrough: number;

  private readonly stmt: {
    get: Database.Statement<[string, string], ObjectRow>;
    getData: Database.Statement<[string, string], string>;
    list: Database.Statement<[string], string>;
    insert: Database.Statement<[string, string, number, string, string]>;
    update: Database.Statement<[number, string, string, string]>;
    remove: Database.Statement<[string, string]>;
    revision: Database.Statement<[], number>;
    setRevision: Database.Statement<[number]>;
    appendChange: Database.Statement<[number, string, string]>;
    compact: Database.Statement<[number]>;
    oldestChange: Database.Statement<[], number | null>;
    readChanges: Database.Statement<[number, number], ChangeRow>;
  };

  /** Applies a group of commits in one IMMEDIATE transaction, each in a savepoint: its outcome, or why it failed. */
  private readonly groupTxn: (group: Pending[]) => ({ result: CommitResult; batch: Batch } | { error: unknown })[];
  private pending: Pending[] = [];
  /** A flush is scheduled (or more groups of the queue are): new commits join the queue. */
  private flushing = false;
  /** Reads a kind's rows and the revision in one snapshot. */
  private readonly listTxn: (kind: string) => { rows: string[]; revision: number };

  private constructor(db: Database.Database, path: string, opts: SqliteStoreOptions) {
    this.db = db;
    this.path = path;
    this.clock = opts.clock ?? systemClock;
    this.keepRevisions = opts.keepRevisions ?? DEFAULT_KEEP_REVISIONS;

    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS objects (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, id)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS changes (
        revision INTEGER PRIMARY KEY,
        kinds TEXT NOT NULL,
        events TEXT NOT NULL
      );
      INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ${SCHEMA_VERSION}), ('revision', 0);
    `);
    const schema = db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get();
    if (schema !== SCHEMA_VERSION) {
      throw new ShoalError(
        'failed_precondition',
        `SQLite store at ${path} has schema version ${String(schema)}, this Shoal understands ${SCHEMA_VERSION}`,
      );
    }

    this.stmt = {
      // Without the data: a write needs only the version and creation time of what it replaces (a 1.5 KB task row read
      // per update doubled the cost of a write).
      get: db.prepare(`SELECT version, created_at FROM objects WHERE kind = ? AND id = ?`),
      getData: db.prepare<[string, string], string>(`SELECT data FROM objects WHERE kind = ? AND id = ?`).pluck(),
      list: db.prepare<[string], string>(`SELECT data FROM objects WHERE kind = ? ORDER BY id`).pluck(),
      insert: db.prepare(`INSERT INTO objects (kind, id, version, created_at, data) VALUES (?, ?, ?, ?, ?)`),
      update: db.prepare(`UPDATE objects SET version = ?, data = ? WHERE kind = ? AND id = ?`),
      remove: db.prepare(`DELETE FROM objects WHERE kind = ? AND id = ?`),
      revision: db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'revision'`).pluck(),
      setRevision: db.prepare(`UPDATE meta SET value = ? WHERE key = 'revision'`),
      appendChange: db.prepare(`INSERT INTO changes (revision, kinds, events) VALUES (?, ?, ?)`),
      compact: db.prepare(`DELETE FROM changes WHERE revision <= ?`),
      oldestChange: db.prepare<[], number | null>(`SELECT MIN(revision) FROM changes`).pluck(),
      readChanges: db.prepare(
        `SELECT revision, kinds, events FROM changes WHERE revision >= ? ORDER BY revision LIMIT ?`,
      ),
    };

    this.currentRevision = this.stmt.revision.get() ?? 0;
    // Apply a smaller keepRevisions at once, then derive the compaction point from what is left.
    this.stmt.compact.run(this.currentRevision - this.keepRevisions);
    const oldest = this.stmt.oldestChange.get() ?? null;
    this.compactedThrough = oldest === null ? this.currentRevision : oldest - 1;

    // IMMEDIATE takes the write lock up front, so a transaction never fails half-way on a lock upgrade.
    // A transaction function called inside another runs in a savepoint: a commit that throws rolls back alone.
    const one = db.transaction((p: Pending) => {
      p.fence?.();
      return this.applyOps(p.ops);
    });
    const group = db.transaction((items: Pending[]) =>
      items.map((p) => {
        try {
          return one(p);
        } catch (error) {
          return { error };
        }
      }),
    );
    this.groupTxn = (items) => group.immediate(items);
    // One read transaction, so the rows and the revision come from the same snapshot even if another
    // connection writes.
    const read = db.transaction((kind: string) => ({
      rows: this.stmt.list.all(kind),
      revision: this.stmt.revision.get() ?? 0,
    }));
    this.listTxn = (kind) => read.deferred(kind);
  }

  /** Opens (creating if needed) the store at `path`; ':memory:' gives a private in-memory store. */
  static open(path: string, opts: SqliteStoreOptions = {}): SqliteStore {
    const keep = opts.keepRevisions ?? DEFAULT_KEEP_REVISIONS;
    if (!Number.isSafeInteger(keep) || keep < 1) {
      throw new ShoalError('invalid_argument', `keepRevisions must be a positive integer, got ${String(keep)}`);
    }
    if (path === '') throw new ShoalError('invalid_argument', 'SQLite store path must not be empty');
    let db: Database.Database | undefined;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      db = new Database(path);
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5_000))}`);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
      // Big transactions grow the WAL; give the space back after each checkpoint beyond this size.
      db.pragma('journal_size_limit = 67108864');
      // Checkpoint every 32 MiB of WAL rather than SQLite's 4 MiB: tasks are rewritten as they move on, and a page
      // written several times between two checkpoints is copied to the database once.
      db.pragma('wal_autocheckpoint = 8192');
      db.pragma('foreign_keys = OFF');
      return new SqliteStore(db, path, opts);
    } catch (e) {
      db?.close();
      if (e instanceof ShoalError) throw e;
      throw new ShoalError('unavailable', `cannot open SQLite store at ${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The connection settings in force (journal mode, synchronous level, busy timeout). */
  pragmas(): SqlitePragmas {
    this.assertOpen();
    const sync = this.db.pragma('synchronous', { simple: true }) as number;
    return {
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      synchronous: SYNC_NAMES[sync] ?? 'FULL',
      busyTimeoutMs: Number(this.db.pragma('busy_timeout', { simple: true })),
    };
  }

  async get<K extends Kind>(kind: K, id: string): Promise<ObjectOfKind<K> | undefined> {
    this.assertOpen();
    const data = this.stmt.getData.get(kind, id);
    return data === undefined ? undefined : (JSON.parse(data) as ObjectOfKind<K>);
  }

  async list<K extends Kind>(kind: K): Promise<ListResult<K>> {
    this.assertOpen();
    const { rows, revision } = this.listTxn(kind);
    // One JSON.parse over the joined rows is much cheaper than one per row.
    const items = rows.length === 0 ? [] : (JSON.parse(`[${rows.join(',')}]`) as ObjectOfKind<K>[]);
    return { items, revision };
  }

  async revision(): Promise<number> {
    this.assertOpen();
    return this.stmt.revision.get() ?? 0;
  }

  commit(ops: Op[]): Promise<CommitResult> {
    return this.enqueue(ops, undefined);
  }

  /** Queues a commit for the group of this event-loop turn; `fence` is checked when the group is written. */
  enqueue(ops: Op[], fence: (() => void) | undefined): Promise<CommitResult> {
    return new Promise((resolve, reject) => {
      this.assertOpen();
      validateOps(ops);
      this.pending.push({ ops, fence, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Writes the queued commits as one transaction (one fsync), then settles each and tells the watchers. */
  private flush(): void {
    let ops = 0;
    let n = 0;
    for (const p of this.pending) {
      if (n > 0 && ops + p.ops.length > GROUP_OPS) break;
      ops += p.ops.length;
      n++;
    }
    const group = this.pending.splice(0, n);
    if (this.pending.length > 0) setImmediate(() => this.flush());
    else this.flushing = false;
    let outcomes: ReturnType<typeof this.groupTxn>;
    try {
      this.assertOpen();
      outcomes = this.groupTxn(group);
    } catch (e) {
      for (const p of group) p.reject(e);
      return;
    }
    outcomes.forEach((o, i) => {
      const p = group[i] as Pending;
      if ('error' in o) return p.reject(o.error);
      this.currentRevision = o.batch.revision;
      const horizon = o.batch.revision - this.keepRevisions;
      if (horizon > this.compactedThrough) this.compactedThrough = horizon;
      this.publish(o.batch);
      p.resolve(o.result);
    });
  }

  /**
   * Events from `fromRevision` on, one batch per transaction. Reads the change log while behind, then
   * follows live commits from a per-watcher buffer; falls back to the log if the buffer overflows.
   */
  async *watch(opts: WatchOptions): AsyncGenerator<WatchEvent[], void, undefined> {
    const { signal } = opts;
    if (!Number.isSafeInteger(opts.fromRevision) || opts.fromRevision < 0) {
      throw new ShoalError('invalid_argument', `watch fromRevision must be a non-negative integer, got ${String(opts.fromRevision)}`);
    }
    if (signal.aborted) return;
    this.assertOpen();
    const kinds = opts.kinds === undefined ? undefined : new Set<string>(opts.kinds);
    const watcher: Watcher = { cursor: Math.max(1, opts.fromRevision), buffer: [], bufferedChars: 0, wake: undefined };
    this.assertReplayable(watcher.cursor);

    // On abort, stop buffering at once (the consumer may never call next() again) and wake the loop.
    const onAbort = (): void => {
      this.watchers.delete(watcher);
      watcher.wake?.();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    this.watchers.add(watcher);
    try {
      for (;;) {
        if (signal.aborted || this.closed) return;
        const batch = this.nextBatch(watcher);
        if (batch === undefined) {
          // Nothing to deliver: sleep until commit(), abort or close() calls wake.
          await new Promise<void>((resolve) => {
            watcher.wake = resolve;
          });
          watcher.wake = undefined;
          continue;
        }
        watcher.cursor = batch.revision + 1;
        const events = decodeBatch(batch, kinds);
        if (events !== undefined) yield events;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.watchers.delete(watcher);
    }
  }

  /**
   * Drops the change log through `revision` (etcd's compaction, off by one: etcd keeps `revision` itself):
   * a watch from `revision` or below then fails with failed_precondition. Commits also compact on their
   * own past `keepRevisions`; objects are never touched.
   */
  async compact(revision: number): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(revision) || revision < 0 || revision > this.currentRevision) {
      throw new ShoalError(
        'invalid_argument',
        `cannot compact through revision ${String(revision)}: the store is at revision ${this.currentRevision}`,
      );
    }
    if (revision <= this.compactedThrough) return;
    this.stmt.compact.run(revision);
    this.compactedThrough = revision;
  }

  /**
   * One process writes the file, so leadership is decided in-process: the first candidate leads at once,
   * others wait until its term ends. The term's store refuses commits once the term has ended.
   */
  async campaign(candidate: string, opts: CampaignOptions): Promise<Term | undefined> {
    const { signal } = opts;
    while (this.term !== undefined && !signal.aborted && !this.closed) {
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.termWaiters.delete(wake);
          signal.removeEventListener('abort', wake);
          resolve();
        };
        this.termWaiters.add(wake);
        signal.addEventListener('abort', wake, { once: true });
      });
    }
    if (signal.aborted) return undefined;
    this.assertOpen();
    const ended = new AbortController();
    const term = { candidate, ended };
    this.term = term;
    const end = (): void => {
      signal.removeEventListener('abort', end);
      if (this.term !== term) return;
      this.term = undefined;
      ended.abort();
      for (const wake of [...this.termWaiters]) wake();
    };
    signal.addEventListener('abort', end, { once: true });
    return { store: new FencedStore(this, ended.signal, candidate), ended: ended.signal, resign: async () => end() };
  }

  async leader(): Promise<string | undefined> {
    return this.term?.candidate;
  }

  async status(): Promise<StoreStatus> {
    return { backend: 'sqlite', members: [{ name: 'sqlite', endpoint: this.path, healthy: !this.closed, leader: true }] };
  }

  /** Ends every watch and term, and closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Commits already made are written, as they would have been without grouping.
    while (this.pending.length > 0) this.flush();
    this.closed = true;
    if (this.term !== undefined) {
      const { ended } = this.term;
      this.term = undefined;
      ended.abort();
    }
    for (const wake of [...this.termWaiters]) wake();
    for (const w of this.watchers) w.wake?.();
    this.watchers.clear();
    this.db.close();
  }

  // ------------------------------------------------------------------ internals

  private assertOpen(): void {
    if (this.closed) throw new ShoalError('unavailable', `SQLite store at ${this.path} is closed`);
  }

  private assertReplayable(revision: number): void {
    if (revision <= this.compactedThrough) {
      throw new ShoalError(
        'failed_precondition',
        `cannot watch from revision ${revision}: the change log was compacted through revision ` +
          `${this.compactedThrough}; re-list and watch from the list's revision + 1`,
      );
    }
  }

  /** Runs inside the IMMEDIATE transaction: any throw rolls every write back. */
  private applyOps(ops: Op[]): { result: CommitResult; batch: Batch } {
    const revision = (this.stmt.revision.get() ?? 0) + 1;
    const now = isoNow(this.clock);
    /** What each op stored, as JSON (undefined for a delete); parsed only if the caller reads the result's objects. */
    const stored: (string | undefined)[] = [];
    const events: string[] = [];
    const kinds = new Set<string>();

    for (const op of ops) {
      if (op.op === 'delete') {
        const row = this.stmt.get.get(op.kind, op.id);
        if (row === undefined) {
          throw new ShoalError('not_found', `cannot delete ${describeOp(op.kind, op.id)}: it does not exist`);
        }
        if (row.version !== op.version) {
          throw conflict('delete', op.kind, op.id, op.version, row.version);
        }
        const last = this.stmt.getData.get(op.kind, op.id) as string;
        this.stmt.remove.run(op.kind, op.id);
        stored.push(undefined);
        kinds.add(op.kind);
        events.push(eventJson(revision, 'delete', op.kind, op.id, last));
        continue;
      }

      const { kind, id } = op.object;
      const row = this.stmt.get.get(kind, id);
      let object: StoredObject;
      let json: string;
      if (op.op === 'create') {
        if (row !== undefined) {
          throw new ShoalError('already_exists', `cannot create ${describeOp(kind, id)}: it already exists`);
        }
        object = { ...op.object, meta: { ...op.object.meta, version: 1, createdAt: now, updatedAt: now } };
        json = JSON.stringify(object);
        this.stmt.insert.run(kind, id, 1, now, json);
        events.push(eventJson(revision, 'put', kind, id, json));
      } else {
        if (row === undefined) {
          throw new ShoalError('not_found', `cannot update ${describeOp(kind, id)}: it does not exist`);
        }
        const expected = op.object.meta.version;
        if (row.version !== expected) throw conflict('update', kind, id, expected, row.version);
        const version = row.version + 1;
        object = { ...op.object, meta: { ...op.object.meta, version, createdAt: row.created_at, updatedAt: now } };
        json = JSON.stringify(object);
        this.stmt.update.run(version, json, kind, id);
        events.push(eventJson(revision, 'put', kind, id, json));
      }
      kinds.add(kind);
      stored.push(json);
    }

    const kindList = [...kinds];
    const batchJson = `[${events.join(',')}]`;
    this.stmt.setRevision.run(revision);
    this.stmt.appendChange.run(revision, kindList.join(','), batchJson);
    const horizon = revision - this.keepRevisions;
    if (horizon > 0) this.stmt.compact.run(horizon);
    return { result: lazyResult(revision, stored), batch: { revision, kinds: kindList, json: batchJson } };
  }

  /** Hands a committed batch to every watcher that is caught up; others will read it from the log. */
  private publish(batch: Batch): void {
    for (const w of this.watchers) {
      const last = w.buffer[w.buffer.length - 1];
      const contiguous = last === undefined ? batch.revision === w.cursor : batch.revision === last.revision + 1;
      if (contiguous && w.bufferedChars + batch.json.length <= WATCH_BUFFER_CHARS) {
        w.buffer.push(batch);
        w.bufferedChars += batch.json.length;
      }
      w.wake?.();
    }
  }

  /** The batch at the watcher's cursor, from its buffer or the log; undefined when it is caught up. */
  private nextBatch(w: Watcher): Batch | undefined {
    while (w.buffer.length > 0 && w.buffer[0]!.revision < w.cursor) this.shiftBuffer(w);
    const head = w.buffer[0];
    if (head !== undefined && head.revision === w.cursor) {
      this.shiftBuffer(w);
      return head;
    }
    if (w.cursor > this.currentRevision) return undefined;

    // Behind: refill the buffer from the log. Live batches already buffered lie beyond this chunk
    // or are superseded by it; drop them and let publish() resume once the log read reaches the head.
    this.assertReplayable(w.cursor);
    const rows = this.stmt.readChanges.all(w.cursor, LOG_CHUNK_ROWS);
    const first = rows[0];
    if (first === undefined || first.revision !== w.cursor) {
      this.assertReplayable(w.cursor);
      throw new ShoalError('internal', `change log of ${this.path} has no entry for revision ${w.cursor}`);
    }
    w.buffer = rows.slice(1).map(rowToBatch);
    w.bufferedChars = 0;
    for (const b of w.buffer) w.bufferedChars += b.json.length;
    return rowToBatch(first);
  }

  private shiftBuffer(w: Watcher): void {
    const b = w.buffer.shift();
    if (b !== undefined) w.bufferedChars -= b.json.length;
  }
}

/**
 * A commit's result whose objects are parsed from what was stored (never an alias of the caller's input) on first
 * read: most writers (controllers, status reports) only need the revision, and parsing every object is not free.
 */
const lazyResult = (revision: number, stored: (string | undefined)[]): CommitResult => {
  let objects: (StoredObject | undefined)[] | undefined;
  return {
    revision,
    get objects() {
      return (objects ??= stored.map((j) => (j === undefined ? undefined : (JSON.parse(j) as StoredObject))));
    },
  };
};

const rowToBatch = (r: ChangeRow): Batch => ({ revision: r.revision, kinds: r.kinds.split(','), json: r.events });

/** Parses a batch for one watcher, keeping only `kinds`; undefined when nothing is left. */
const decodeBatch = (batch: Batch, kinds: Set<string> | undefined): WatchEvent[] | undefined => {
  if (kinds !== undefined && !batch.kinds.some((k) => kinds.has(k))) return undefined;
  const events = JSON.parse(batch.json) as WatchEvent[];
  if (kinds === undefined) return events;
  const kept = events.filter((e) => kinds.has(e.kind));
  return kept.length === 0 ? undefined : kept;
};

/** A WatchEvent as JSON, spliced from already-serialized objects to avoid a parse/stringify round trip. */
const eventJson = (
  revision: number,
  type: 'put' | 'delete',
  kind: string,
  id: string,
  object: string,
): string => `{"revision":${revision},"type":"${type}","kind":${JSON.stringify(kind)},"id":${JSON.stringify(id)},"object":${object}}`;

const conflict = (what: 'update' | 'delete', kind: string, id: string, expected: number, actual: number): ShoalError =>
  new ShoalError(
    'conflict',
    `cannot ${what} ${describeOp(kind, id)}: expected version ${String(expected)} but the stored version is ${actual}`,
  );

/** Rejects malformed transactions before touching the database. */
const validateOps = (ops: Op[]): void => {
  if (!Array.isArray(ops) || ops.length === 0) {
    throw new ShoalError('invalid_argument', 'a transaction needs at least one operation');
  }
  const seen = new Set<string>();
  ops.forEach((op, i) => {
    let kind: unknown;
    let id: unknown;
    if (op.op === 'create' || op.op === 'update') {
      const o = op.object as Partial<StoredObject> | undefined;
      if (typeof o !== 'object' || o === null) {
        throw new ShoalError('invalid_argument', `operation ${i} (${op.op}) has no object`);
      }
      kind = o.kind;
      id = o.id;
      if (op.op === 'update' && typeof o.meta?.version !== 'number') {
        throw new ShoalError('invalid_argument', `operation ${i} (update) needs object.meta.version`);
      }
    } else if (op.op === 'delete') {
      kind = op.kind;
      id = op.id;
      if (typeof op.version !== 'number') {
        throw new ShoalError('invalid_argument', `operation ${i} (delete) needs a version`);
      }
    } else {
      throw new ShoalError('invalid_argument', `operation ${i} has unknown op '${String((op as { op: unknown }).op)}'`);
    }
    if (typeof kind !== 'string' || kind === '' || kind.includes(',')) {
      throw new ShoalError('invalid_argument', `operation ${i} (${op.op}) has an invalid kind '${String(kind)}'`);
    }
    if (typeof id !== 'string' || id === '') {
      throw new ShoalError('invalid_argument', `operation ${i} (${op.op}) on ${kind} has an empty id`);
    }
    // etcd refuses a transaction that writes one key twice; refuse it here too so backends agree.
    const key = `${kind}\u0000${id}`;
    if (seen.has(key)) {
      throw new ShoalError('invalid_argument', `transaction touches ${describeOp(kind, id)} more than once`);
    }
    seen.add(key);
  });
};

/** The store as a term's holder sees it: commits apply only while the term lasts (commit() is synchronous here). */
class FencedStore implements Store {
  readonly maxOpsPerCommit: number;

  constructor(
    private readonly inner: SqliteStore,
    private readonly ended: AbortSignal,
    private readonly candidate: string,
  ) {
    this.maxOpsPerCommit = inner.maxOpsPerCommit;
  }

  get<K extends Kind>(kind: K, id: string): Promise<ObjectOfKind<K> | undefined> {
    return this.inner.get(kind, id);
  }
  list<K extends Kind>(kind: K): Promise<ListResult<K>> {
    return this.inner.list(kind);
  }
  commit(ops: Op[]): Promise<CommitResult> {
    // Checked when the commit is written (in its group), not only when it is made.
    return this.inner.enqueue(ops, () => {
      if (this.ended.aborted) {
        throw new ShoalError('failed_precondition', `'${this.candidate}' no longer leads: its term ended, nothing was written`);
      }
    });
  }
  watch(opts: WatchOptions): AsyncIterable<WatchEvent[]> {
    return this.inner.watch(opts);
  }
  revision(): Promise<number> {
    return this.inner.revision();
  }
  campaign(candidate: string, opts: CampaignOptions): Promise<Term | undefined> {
    return this.inner.campaign(candidate, opts);
  }
  leader(): Promise<string | undefined> {
    return this.inner.leader();
  }
  status(): Promise<StoreStatus> {
    return this.inner.status();
  }
  async close(): Promise<void> {}
}
