// The embedded Store: objects, the revision counter and a bounded change log in one SQLite file (WAL).
//
// Layout (generic over kinds, so a new kind needs no migration):
//   objects(seq, kind, id, version, created_at, data, spec_id)
//                                                 — data is the object's JSON, meta included; rows sit in the order
//                                                   they were created (seq) and are found by a unique (kind, id) index,
//                                                   so the tasks a service creates together share pages and their
//                                                   later updates dirty few of them (ids are random: keyed by id,
//                                                   1,000 new tasks dirtied ~1,000 pages, 5x slower to write);
//   specs(id, json, last_rev)                     — task specs, each stored once: a task's data holds "spec": id
//                                                   (and spec_id the same) instead of its spec, which every task of a
//                                                   service version repeats (in bench/scale 314 bytes of ~800, more
//                                                   with env, labels or mounts), written again with each status
//                                                   change, in the row and in the change log;
//                                                   last_rev is the newest revision that wrote a task with it;
//   changes(revision, kinds, events)              — one row per committed transaction: the kinds it
//                                                   touched and its WatchEvent[] as JSON (tasks with their spec's id);
//   meta(key, value)                              — the schema version and the global revision.
// Invariants:
//   - `meta.revision` equals the revision of the newest `changes` row (every commit writes one);
//   - `changes` holds every revision above `compactedThrough` up to the current one (contiguous; empty
//     when compacted through the current revision); what is at or below it can no longer be watched from;
//   - one process writes the file (the manager): live watch delivery is in-process, woken by commit();
//   - writes happen on a worker thread (sqlite-writer.ts) with its own connection; reads (get, list, the change log
//     for lagging watchers) on this thread's connection, which WAL lets read while the writer writes;
//   - group commit: the commits made while the writer is busy (at least one turn of the event loop) are applied in one
//     SQLite transaction, each in its own savepoint with its own revision (one that fails rolls back alone), so a
//     burst of small commits (status reports of many nodes) pays for one fsync, not one each;
//   - a spec is deleted only when no object refers to it and the change log keeps no revision that wrote it
//     (specs.last_rev below the oldest change), so whatever can still be read can be given its spec back.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { Kind, ObjectOfKind, StoredObject, Task } from '../../core/index.js';
import { ShoalError, jsonOf } from '../../core/index.js';
import type { Clock } from '../../lib/clock.js';
import { isoNow, systemClock } from '../../lib/clock.js';
import { background } from '../../lib/turn-budget.js';
import type {
  CampaignOptions,
  CommitOptions,
  CommitResult,
  ListResult,
  Op,
  Store,
  StoreStatus,
  Term,
  WatchEvent,
  WatchOptions,
} from '../store.js';
import { lazyCommitResult } from '../commit-result.js';
import { describeOp, type WireCommit, type WireError, type WireOp, type WireOutcome, type WriterCommand, type WriterConfig, type WriterReply, type WriterRequest } from './sqlite-writer.js';

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

const SCHEMA_VERSION = 3;

/** The objects table of schema 2, which schema 3 extends (see the file comment). */
const OBJECTS_DDL = `
  CREATE TABLE objects (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
  );
  CREATE UNIQUE INDEX objects_by_key ON objects (kind, id);
`;

/** What schema 3 adds: the specs table (ids never reused, so an id read once means one spec) and objects.spec_id. */
const SPECS_DDL = `
  CREATE TABLE specs (id INTEGER PRIMARY KEY AUTOINCREMENT, json TEXT NOT NULL, last_rev INTEGER NOT NULL);
  ALTER TABLE objects ADD COLUMN spec_id INTEGER;
`;

/** Schema 1 kept objects in a table keyed by (kind, id); schema 2 adds the creation order. Same rows, same revision. */
const migrateFrom1 = (db: Database.Database): void =>
  db
    .transaction(() => {
      db.exec(`
        ALTER TABLE objects RENAME TO objects_v1;
        ${OBJECTS_DDL}
        INSERT INTO objects (kind, id, version, created_at, data) SELECT kind, id, version, created_at, data FROM objects_v1 ORDER BY created_at, kind, id;
        DROP TABLE objects_v1;
        UPDATE meta SET value = 2 WHERE key = 'schema';
      `);
    })
    .immediate();

/** Schema 3 stores task specs once; the rows of schema 2 (whole specs inline) read as they are and are rewritten when next updated. */
const migrateFrom2 = (db: Database.Database): void =>
  db
    .transaction(() => {
      db.exec(`${SPECS_DDL} UPDATE meta SET value = 3 WHERE key = 'schema';`);
    })
    .immediate();

const DEFAULT_KEEP_REVISIONS = 10_000;
/** Per-watcher cap on buffered live batches (by JSON length); past it the watcher reads the log table. */
const WATCH_BUFFER_CHARS = 64 * 1024 * 1024;
/** Ops one group of commits (one transaction, one fsync) holds at most, past its first commit. */
const GROUP_OPS = 500;
/**
 * Groups sent to the writer before the first is answered: two keep it busy while this thread handles an answer, and no
 * more, so a commit made meanwhile (an interactive one goes first) waits for at most two groups.
 */
const GROUPS_IN_FLIGHT = 2;
/**
 * Interactive commits (API writes) also go out at once in a group of their own, besides those slots, while fewer than
 * this many such groups are in flight. The writer takes such a group before the groups that wait ahead of it: an API
 * write waits for the group being written, not for a slot, a turn of the background budget and up to three groups of
 * 500 background ops.
 */
const EXPRESS_GROUPS = 1;
/** How many log rows a lagging watcher reads per query. */
const LOG_CHUNK_ROWS = 64;

/**
 * One committed transaction as watchers see it, kept as JSON so every watcher parses its own copy. A live batch of
 * task writes stored as sent also has its events made from the committed objects (see taskEvents): the first watcher
 * to take the batch (the cache, which follows every write) gets those and parses nothing. 100,000 tasks created and
 * updated twice with a cache following kept the main thread busy 5.6-6.5 s instead of 8.1-8.4 s.
 */
interface Batch {
  revision: number;
  kinds: readonly string[];
  json: string;
  events?: WatchEvent[] | undefined;
}

/** A live watch: `cursor` is the next revision it must deliver; `buffer` is contiguous from the cursor. */
interface Watcher {
  cursor: number;
  buffer: Batch[];
  bufferedChars: number;
  wake: (() => void) | undefined;
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


/** A request to the writer waiting for its answer. */
interface Outstanding {
  resolve: (r: WriterReply) => void;
  reject: (e: unknown) => void;
}

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
    getData: Database.Statement<[string, string], string>;
    list: Database.Statement<[string], string>;
    revision: Database.Statement<[], number>;
    compact: Database.Statement<[number]>;
    oldestChange: Database.Statement<[], number | null>;
    readChanges: Database.Statement<[number, number], ChangeRow>;
    getSpec: Database.Statement<[number], string>;
  };
  /**
   * The specs this thread has sent or read, by id (what a task's spec id is resolved with). Ids the writer frees are
   * dropped one collection later: a watcher may still hold a batch it buffered before.
   */
  private readonly specText = new Map<number, string>();
  private retiring: number[] = [];

  /** The writer thread, the requests it has not answered yet, and why it stopped if it did. */
  private readonly writer: Worker;
  private readonly outstanding = new Map<number, Outstanding>();
  private seq = 0;
  private broken: ShoalError | undefined;
  /**
   * Commits waiting for a group (interactive ones, then background ones); a flush is scheduled; groups being written
   * in the slots, and of interactive commits alone.
   */
  private readonly pending = { interactive: [] as Pending[], background: [] as Pending[] };
  private flushScheduled = false;
  private expressScheduled = false;
  private flushing = false;
  private inFlight = 0;
  private expressInFlight = 0;
  /** Resolved when the last group in flight is answered (close waits for it). */
  private idle: (() => void) | undefined;
  /** Reads a kind's rows and the revision in one snapshot. */
  private readonly listTxn: (kind: string) => { rows: string[]; revision: number };

  private constructor(db: Database.Database, path: string, opts: SqliteStoreOptions) {
    this.db = db;
    this.path = path;
    this.clock = opts.clock ?? systemClock;
    this.keepRevisions = opts.keepRevisions ?? DEFAULT_KEEP_REVISIONS;

    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS changes (
        revision INTEGER PRIMARY KEY,
        kinds TEXT NOT NULL,
        events TEXT NOT NULL
      );
    `);
    // A new file is created at the current schema; a file of schema 1 is migrated (one transaction: all or nothing).
    const fresh = db.prepare<[], number>(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'objects'`).pluck().get() === 0;
    if (fresh) {
      db.transaction(() => {
        db.exec(`${OBJECTS_DDL} ${SPECS_DDL} INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ${SCHEMA_VERSION}), ('revision', 0);`);
      }).immediate();
    }
    const readSchema = (): number | undefined => db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get();
    if (readSchema() === 1) migrateFrom1(db);
    if (readSchema() === 2) migrateFrom2(db);
    const schema = readSchema();
    if (schema !== SCHEMA_VERSION) {
      throw new ShoalError(
        'failed_precondition',
        `SQLite store at ${path} has schema version ${String(schema)}, this Shoal understands ${SCHEMA_VERSION}`,
      );
    }

    this.stmt = {
      getData: db.prepare<[string, string], string>(`SELECT data FROM objects WHERE kind = ? AND id = ?`).pluck(),
      list: db.prepare<[string], string>(`SELECT data FROM objects WHERE kind = ? ORDER BY id`).pluck(),
      revision: db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'revision'`).pluck(),
      compact: db.prepare(`DELETE FROM changes WHERE revision <= ?`),
      oldestChange: db.prepare<[], number | null>(`SELECT MIN(revision) FROM changes`).pluck(),
      readChanges: db.prepare(
        `SELECT revision, kinds, events FROM changes WHERE revision >= ? ORDER BY revision LIMIT ?`,
      ),
      getSpec: db.prepare<[number], string>(`SELECT json FROM specs WHERE id = ?`).pluck(),
    };

    this.currentRevision = this.stmt.revision.get() ?? 0;
    // Apply a smaller keepRevisions at once, then derive the compaction point from what is left.
    this.stmt.compact.run(this.currentRevision - this.keepRevisions);
    const oldest = this.stmt.oldestChange.get() ?? null;
    this.compactedThrough = oldest === null ? this.currentRevision : oldest - 1;

    const cfg: WriterConfig = {
      path,
      synchronous: opts.synchronous ?? 'FULL',
      busyTimeoutMs: busyTimeout(opts),
      keepRevisions: this.keepRevisions,
    };
    this.writer = new Worker(new URL('./sqlite-writer.js', import.meta.url), {
      workerData: { shoalSqliteWriter: cfg },
      // The thread takes the process's source-map and profiling flags; a worker refuses V8 and per-process flags
      // (--max-semi-space-size, --title…), so no others.
      execArgv: process.execArgv.filter((a) => /^--(enable-source-maps|cpu-prof|heap-prof)/.test(a)),
    });
    this.writer.unref();
    this.writer.on('message', (r: WriterReply) => this.answered(r));
    this.writer.on('error', (e) => this.writerStopped(e.message));
    this.writer.on('exit', (code) => this.writerStopped(`it exited with code ${code}`));
    // One read transaction, so the rows and the revision come from the same snapshot even if another
    // connection writes.
    const read = db.transaction((kind: string) => ({
      rows: this.stmt.list.all(kind),
      revision: this.stmt.revision.get() ?? 0,
    }));
    this.listTxn = (kind) => read.deferred(kind);
  }

  /** Opens (creating if needed) the store at the file `path`, and starts its writer thread. */
  static open(path: string, opts: SqliteStoreOptions = {}): SqliteStore {
    const keep = opts.keepRevisions ?? DEFAULT_KEEP_REVISIONS;
    if (!Number.isSafeInteger(keep) || keep < 1) {
      throw new ShoalError('invalid_argument', `keepRevisions must be a positive integer, got ${String(keep)}`);
    }
    if (path === '') throw new ShoalError('invalid_argument', 'SQLite store path must not be empty');
    if (path === ':memory:') {
      throw new ShoalError('invalid_argument', 'the SQLite store needs a file: its writer thread opens the database too, which it cannot share in memory');
    }
    let db: Database.Database | undefined;
    try {
      mkdirSync(dirname(path), { recursive: true });
      db = new Database(path);
      db.pragma(`busy_timeout = ${busyTimeout(opts)}`);
      // A new file gets 8 KiB pages (an existing one keeps its own). A commit writes every page it changed to the WAL
      // whole: a failover's updates, one task in ten of a service, each dirty a page of their own, and bigger pages
      // cost more there; smaller ones split a service's new tasks over more pages. Store micro-benchmarks (100,000
      // tasks of ~500 bytes, specs stored apart), 8 KiB against 16 KiB: failover pattern (10,000 shutdowns, creates and
      // reports) 2.1-2.4 s against 2.7-2.9 s, creating 5.7-6.4 s against 6.7-7.5 s; 4 KiB was between them.
      db.pragma('page_size = 8192');
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
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
    if (data === undefined) return undefined;
    const o = JSON.parse(data) as ObjectOfKind<K>;
    this.restoreSpecs([o]);
    return o;
  }

  async list<K extends Kind>(kind: K): Promise<ListResult<K>> {
    this.assertOpen();
    const { rows, revision } = this.listTxn(kind);
    // One JSON.parse over the joined rows is much cheaper than one per row.
    const items = rows.length === 0 ? [] : (JSON.parse(`[${rows.join(',')}]`) as ObjectOfKind<K>[]);
    this.restoreSpecs(items);
    return { items, revision };
  }

  async revision(): Promise<number> {
    this.assertOpen();
    return this.stmt.revision.get() ?? 0;
  }

  commit(ops: Op[], opts?: CommitOptions): Promise<CommitResult> {
    return this.enqueue(ops, undefined, opts);
  }

  /** Queues a commit for a group; `fence` is checked when its group goes to the writer. */
  enqueue(ops: Op[], fence: (() => void) | undefined, opts?: CommitOptions): Promise<CommitResult> {
    return new Promise((resolve, reject) => {
      this.assertOpen();
      validateOps(ops);
      (opts?.background ? this.pending.background : this.pending.interactive).push({ ops, fence, resolve, reject });
      if (!opts?.background) this.scheduleExpress();
      // Commits made in one turn of the event loop (or while the writer is busy) gather into one group.
      if (this.flushScheduled || this.inFlight >= GROUPS_IN_FLIGHT) return;
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    });
  }

  /** Sends the interactive commits queued in this turn as a group of their own, unless EXPRESS_GROUPS are in flight. */
  private scheduleExpress(): void {
    if (this.expressScheduled || this.expressInFlight >= EXPRESS_GROUPS) return;
    this.expressScheduled = true;
    setImmediate(() => {
      this.expressScheduled = false;
      if (!this.closed && this.expressInFlight < EXPRESS_GROUPS) this.sendGroup('express');
    });
  }

  /** Commits wait and the writer takes another group (fewer than GROUPS_IN_FLIGHT are being written). */
  private get canSend(): boolean {
    return this.inFlight < GROUPS_IN_FLIGHT && this.pending.interactive.length + this.pending.background.length > 0;
  }

  /**
   * Sends groups to the writer, interactive commits first, while fewer than GROUPS_IN_FLIGHT are being written: each
   * group in a slot of the background budget, ahead of other background work (serializing a group of 500 tasks takes
   * milliseconds, and the writer thread waits for it).
   */
  private flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    void (async () => {
      try {
        while (!this.closed && this.canSend) {
          await background.slot('first');
          if (!this.closed && this.canSend) this.sendGroup('slot');
        }
      } finally {
        this.flushing = false;
      }
    })();
  }

  /** Sends what is queued at once, without waiting for budget (closing). */
  private flushNow(): void {
    while (this.canSend) this.sendGroup('slot');
  }

  /**
   * Sends the next group of queued commits (none if every one of them failed its fence): in a slot, interactive ones
   * and then background ones; express, interactive ones alone.
   */
  private sendGroup(lane: 'slot' | 'express'): void {
    const commits: Pending[] = [];
    const wire: WireCommit[] = [];
    const specs = new GroupSpecs();
    let ops = 0;
    for (const queue of lane === 'slot' ? [this.pending.interactive, this.pending.background] : [this.pending.interactive]) {
      while (queue.length > 0 && (commits.length === 0 || ops + (queue[0] as Pending).ops.length <= GROUP_OPS)) {
        const p = queue.shift() as Pending;
        try {
          p.fence?.();
          wire.push({ now: isoNow(this.clock), ops: p.ops.map((op) => toWire(op, specs)) });
        } catch (e) {
          p.reject(e);
          continue;
        }
        commits.push(p);
        ops += p.ops.length;
      }
    }
    if (commits.length === 0) return;
    if (lane === 'slot') this.inFlight++;
    else this.expressInFlight++;
    void this.write(commits, wire, specs.json, lane === 'express').finally(() => {
      if (lane === 'slot') this.inFlight--;
      else this.expressInFlight--;
      if (this.inFlight + this.expressInFlight === 0) this.idle?.();
      this.flush();
      if (this.pending.interactive.length > 0) this.scheduleExpress();
    });
  }

  /**
   * Writes one group. The writer answers in the order it writes (an express group before the groups that wait ahead of
   * it), and revisions follow that order: batches are published in revision order.
   */
  private async write(commits: Pending[], wire: WireCommit[], specs: string[], express: boolean): Promise<void> {
    try {
      const reply = await this.request({ type: 'group', commits: wire, specs, express });
      this.learnSpecs(specs, reply);
      (reply.outcomes ?? []).forEach((o, i) => this.settle(commits[i] as Pending, o, (wire[i] as WireCommit).now));
    } catch (e) {
      for (const p of commits) p.reject(e);
    }
  }

  private settle(p: Pending, o: WireOutcome, now: string): void {
    if ('error' in o) return p.reject(this.fromWire(o.error));
    this.currentRevision = o.revision;
    const horizon = o.revision - this.keepRevisions;
    if (horizon > this.compactedThrough) this.compactedThrough = horizon;
    this.publish({ revision: o.revision, kinds: o.kinds, json: o.json, events: o.asSent && this.watchers.size > 0 ? taskEvents(p.ops, o.revision, now) : undefined });
    p.resolve(
      lazyCommitResult(o.revision, () => {
        const objects = (JSON.parse(o.json) as WatchEvent[]).map((e) => (e.type === 'delete' ? undefined : e.object));
        this.restoreSpecs(objects);
        return objects;
      }),
    );
  }

  /** Records the ids the writer gave a group's specs, and forgets those it freed a collection ago. */
  private learnSpecs(specs: string[], reply: WriterReply): void {
    reply.specIds?.forEach((id, i) => this.specText.set(id, specs[i] as string));
    if (reply.freedSpecs === undefined) return;
    for (const id of this.retiring) this.specText.delete(id);
    this.retiring = reply.freedSpecs;
  }

  /**
   * Gives every task read back from the file its spec in place of the spec's id (parsed once per call: the tasks of a
   * read share it). The property is reassigned, never deleted: a deleted property turns an object into a slow
   * dictionary (measured in bench/scale: the cache's 100,000 tasks took ~100 MiB more).
   */
  private restoreSpecs(objects: readonly (StoredObject | undefined)[]): void {
    const parsed = new Map<number, Task['spec']>();
    for (const o of objects) {
      if (o?.kind !== 'task') continue;
      const ref = o.spec as unknown;
      if (typeof ref !== 'number') continue;
      let spec = parsed.get(ref);
      if (spec === undefined) parsed.set(ref, (spec = JSON.parse(this.specJson(ref)) as Task['spec']));
      o.spec = spec;
    }
  }

  private specJson(id: number): string {
    let json = this.specText.get(id);
    if (json === undefined) {
      json = this.stmt.getSpec.get(id);
      // Only a batch buffered since before its spec was collected can miss it: that watcher is past the change log.
      if (json === undefined) throw new ShoalError('failed_precondition', `SQLite store at ${this.path}: task spec ${id} was collected; re-list and watch again`);
      this.specText.set(id, json);
    }
    return json;
  }

  private request(req: WriterCommand): Promise<WriterReply> {
    if (this.broken) return Promise.reject(this.broken);
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.outstanding.set(seq, { resolve, reject });
      // Referenced while it has work, so the process waits for acknowledgements in flight.
      if (this.outstanding.size === 1) this.writer.ref();
      this.writer.postMessage({ ...req, seq } satisfies WriterRequest);
    });
  }

  private answered(r: WriterReply): void {
    const o = this.outstanding.get(r.seq);
    this.outstanding.delete(r.seq);
    if (this.outstanding.size === 0) this.writer.unref();
    if (r.error) o?.reject(this.fromWire(r.error));
    else o?.resolve(r);
  }

  /** The writer thread is gone (crashed, or exited at close): nothing more can be written. */
  private writerStopped(why: string): void {
    this.broken ??= new ShoalError('unavailable', `the writer of the SQLite store at ${this.path} stopped: ${why}`);
    for (const o of this.outstanding.values()) o.reject(this.broken);
    this.outstanding.clear();
  }

  private fromWire(e: WireError): ShoalError {
    return e.code === undefined ? new ShoalError('unavailable', `SQLite store at ${this.path}: ${e.message}`) : new ShoalError(e.code, e.message);
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
        const made = batch.events;
        batch.events = undefined;
        const events = made === undefined ? decodeBatch(batch, kinds) : keepKinds(made, kinds);
        if (events !== undefined && made === undefined) this.restoreSpecs(events.map((e) => e.object));
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
    await this.request({ type: 'compact', revision });
    if (revision > this.compactedThrough) this.compactedThrough = revision;
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
    this.closed = true;
    // Commits already made are written, as they would have been without grouping.
    for (;;) {
      this.flushNow();
      if (this.inFlight + this.expressInFlight === 0) break;
      await new Promise<void>((resolve) => (this.idle = resolve));
    }
    this.idle = undefined;
    if (!this.broken) await this.request({ type: 'close' }).catch(() => undefined);
    await this.writer.terminate();
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

/** The distinct specs of one group, in the order its ops first refer to them. */
class GroupSpecs {
  readonly json: string[] = [];
  private readonly index = new Map<string, number>();

  /** The index of a spec's JSON in the group. */
  add(spec: object): number {
    // The cache deep-freezes the spec it shares among the tasks of a service version (and a service's task template):
    // a status change of any of them serializes it once, not once per task write.
    const json = jsonOf(spec);
    let i = this.index.get(json);
    if (i === undefined) {
      i = this.json.push(json) - 1;
      this.index.set(json, i);
    }
    return i;
  }
}

/** An op for the writer: the object serialized here (where it was made), without the meta the writer stamps and, for a task, without its spec. */
const toWire = (op: Op, specs: GroupSpecs): WireOp => {
  if (op.op === 'delete') return { op: 'delete', kind: op.kind, id: op.id, version: op.version };
  const o = op.object;
  const task = o.kind === 'task' && typeof o.spec === 'object' && o.spec !== null ? o : undefined;
  const body = task ? JSON.stringify({ ...task, meta: undefined, spec: undefined }) : JSON.stringify({ ...o, meta: undefined });
  const spec = task ? specs.add(task.spec) : undefined;
  if (op.op === 'create') return { op: 'create', kind: o.kind, id: o.id, version: o.meta.version, body, spec };
  return { op: 'update', kind: o.kind, id: o.id, version: o.meta.version, body, spec, createdAt: o.meta.createdAt };
};

/**
 * The events of a commit of task writes stored as sent (see WireOutcome), made from the committed objects: each a copy
 * with the meta the writer stamped. Undefined when the commit wrote anything else: tasks are nearly every write, and
 * each of their writers makes the objects it commits anew and never changes them (nor what they share) afterwards.
 */
const taskEvents = (ops: readonly Op[], revision: number, now: string): WatchEvent[] | undefined => {
  const events: WatchEvent[] = [];
  for (const op of ops) {
    if (op.op === 'delete' || op.object.kind !== 'task') return undefined;
    const o = op.object;
    const meta = op.op === 'create' ? { version: 1, createdAt: now, updatedAt: now } : { version: o.meta.version + 1, createdAt: o.meta.createdAt, updatedAt: now };
    events.push({ revision, type: 'put', kind: 'task', id: o.id, object: { ...o, meta } });
  }
  return events;
};

/** The events of `kinds` (all without a filter); undefined when none is left. */
const keepKinds = (events: WatchEvent[], kinds: Set<string> | undefined): WatchEvent[] | undefined => {
  if (kinds === undefined) return events;
  const kept = events.filter((e) => kinds.has(e.kind));
  return kept.length === 0 ? undefined : kept;
};

const busyTimeout = (opts: SqliteStoreOptions): number => Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5_000));

const rowToBatch = (r: ChangeRow): Batch => ({ revision: r.revision, kinds: r.kinds.split(','), json: r.events });

/** Parses a batch for one watcher, keeping only `kinds`; undefined when nothing is left. */
const decodeBatch = (batch: Batch, kinds: Set<string> | undefined): WatchEvent[] | undefined => {
  if (kinds !== undefined && !batch.kinds.some((k) => kinds.has(k))) return undefined;
  return keepKinds(JSON.parse(batch.json) as WatchEvent[], kinds);
};

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

/** The store as a term's holder sees it: commits apply only while the term lasts (checked as each is sent to be written). */
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
  commit(ops: Op[], opts?: CommitOptions): Promise<CommitResult> {
    // Checked when the commit is written (in its group), not only when it is made.
    const fence = (): void => {
      if (this.ended.aborted) {
        throw new ShoalError('failed_precondition', `'${this.candidate}' no longer leads: its term ended, nothing was written`);
      }
    };
    return this.inner.enqueue(ops, fence, opts);
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
