// The SQLite store's writer: a worker thread that owns the write connection and applies groups of commits, so the
// manager's event loop (API requests, heartbeats, controllers) never waits for SQLite's statements, COMMIT or fsync.
//
// The main thread validates, fences and serializes; this thread checks versions, stamps meta, writes objects and the
// change log, and answers each commit with its revision and its events as JSON (what watchers and results are made
// of). Messages are handled one at a time, in order but for express groups (interactive commits), which go before the
// groups that wait: revisions follow the order of writing.

import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { ShoalError, type ErrorCode } from '../../core/index.js';

/** What the writer needs to open its connection. */
export interface WriterConfig {
  path: string;
  synchronous: 'FULL' | 'NORMAL';
  busyTimeoutMs: number;
  keepRevisions: number;
}

/**
 * One op as sent to the writer: a create/update carries its object as JSON without `meta` (the writer adds it). A task's
 * body also lacks its `spec`: `spec` is the index of that spec's JSON in the group's `specs`, stored once (see
 * sqlite-store.ts) however many tasks share it.
 */
export type WireOp =
  | { op: 'create'; kind: string; id: string; version: number; body: string; spec?: number }
  | { op: 'update'; kind: string; id: string; version: number; body: string; spec?: number; createdAt: string }
  | { op: 'delete'; kind: string; id: string; version: number };

/** One commit: its ops and the time it is stamped with (the store's clock lives on the main thread). */
export interface WireCommit {
  now: string;
  ops: WireOp[];
}

/** A group: its commits, and the distinct task specs (JSON) their ops refer to by index. */
/** `express`: a group of interactive commits, written before the groups that came ahead of it and wait. */
export type WriterCommand = { type: 'group'; commits: WireCommit[]; specs: string[]; express?: boolean } | { type: 'compact'; revision: number } | { type: 'close' };

export type WriterRequest = WriterCommand & { seq: number };

/**
 * A commit's outcome: the revision and its WatchEvent[] as JSON, or why it was not written. `asSent` says every op put
 * its object as sent, stamped the usual way (version 1 for a create, the sent version + 1 for an update, createdAt now
 * for a create and as sent for an update, updatedAt now): the sender can make the events from its own objects.
 */
export type WireOutcome = { revision: number; kinds: string[]; json: string; asSent?: true } | { error: WireError };

export interface WireError {
  code: ErrorCode | undefined;
  message: string;
}

/**
 * The answer to a request, in order. A group's answer gives the stored id of each of its specs (`specIds`, in the order
 * of `specs`); `freedSpecs` are ids of specs that nothing can read any more (no object, no change kept), deleted.
 */
export type WriterReply = { seq: number; outcomes?: WireOutcome[]; specIds?: number[]; freedSpecs?: number[]; error?: WireError };

/** A WatchEvent as JSON, spliced from already-serialized objects to avoid a parse/stringify round trip. */
const eventJson = (revision: number, type: 'put' | 'delete', kind: string, id: string, object: string): string =>
  `{"revision":${revision},"type":"${type}","kind":${JSON.stringify(kind)},"id":${JSON.stringify(id)},"object":${object}}`;

export const describeOp = (kind: string, id: string): string => `${kind} '${id}'`;

const conflict = (what: 'update' | 'delete', kind: string, id: string, expected: number, actual: number): ShoalError =>
  new ShoalError(
    'conflict',
    `cannot ${what} ${describeOp(kind, id)}: expected version ${String(expected)} but the stored version is ${actual}`,
  );

/**
 * An object's JSON with its meta appended (the body was serialized without it) and, for a task, `"spec":` the id of its
 * stored spec (a number where a spec is an object: the reader puts the spec back, see sqlite-store.ts).
 */
const withMeta = (body: string, specId: number | undefined, version: number, createdAt: string, updatedAt: string): string =>
  `${body.slice(0, -1)}${body.length > 2 ? ',' : ''}${specId === undefined ? '' : `"spec":${specId},`}"meta":{"version":${version},"createdAt":"${createdAt}","updatedAt":"${updatedAt}"}}`;

const toWireError = (e: unknown): WireError =>
  e instanceof ShoalError ? { code: e.code, message: e.message } : { code: undefined, message: e instanceof Error ? e.message : String(e) };

/** The write connection and its statements. */
class Writer {
  private readonly db: Database.Database;
  private revision: number;
  private readonly stmt;
  private readonly group: (commits: WireCommit[], specs: string[]) => { outcomes: WireOutcome[]; specs: number[] };
  /** Every stored spec's id, by its JSON (what a group's specs are matched against). */
  private specIds = new Map<string, number>();
  /** When specs were last collected, and whether one was stored since. */
  private collectedAt: number;
  private storedSpec = false;

  constructor(private readonly cfg: WriterConfig) {
    this.db = new Database(cfg.path);
    this.db.pragma(`busy_timeout = ${cfg.busyTimeoutMs}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${cfg.synchronous}`);
    this.db.pragma('journal_size_limit = 67108864');
    // Checkpoint every 8,192 pages of WAL (64 MiB of 8 KiB pages) rather than SQLite's 1,000: tasks are rewritten as
    // they move on, and a page written several times between two checkpoints is copied to the database once.
    this.db.pragma('wal_autocheckpoint = 8192');
    const db = this.db;
    this.stmt = {
      // Without the data: a write needs only the version and creation time of what it replaces.
      get: db.prepare<[string, string], { version: number; created_at: string }>(`SELECT version, created_at FROM objects WHERE kind = ? AND id = ?`),
      getData: db.prepare<[string, string], string>(`SELECT data FROM objects WHERE kind = ? AND id = ?`).pluck(),
      insert: db.prepare<[string, string, number, string, string, number | null]>(`INSERT INTO objects (kind, id, version, created_at, data, spec_id) VALUES (?, ?, ?, ?, ?, ?)`),
      update: db.prepare<[number, string, number | null, string, string]>(`UPDATE objects SET version = ?, data = ?, spec_id = ? WHERE kind = ? AND id = ?`),
      remove: db.prepare<[string, string]>(`DELETE FROM objects WHERE kind = ? AND id = ?`),
      setRevision: db.prepare<[number]>(`UPDATE meta SET value = ? WHERE key = 'revision'`),
      appendChange: db.prepare<[number, string, string]>(`INSERT INTO changes (revision, kinds, events) VALUES (?, ?, ?)`),
      compact: db.prepare<[number]>(`DELETE FROM changes WHERE revision <= ?`),
      revision: db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'revision'`).pluck(),
      allSpecs: db.prepare<[], { id: number; json: string }>(`SELECT id, json FROM specs`),
      insertSpec: db.prepare<[string, number]>(`INSERT INTO specs (json, last_rev) VALUES (?, ?)`),
      touchSpec: db.prepare<[number, number]>(`UPDATE specs SET last_rev = ? WHERE id = ?`),
      // A spec may go once no object refers to it and the change log keeps no revision that wrote it.
      collectSpecs: db.prepare<[], number>(
        `DELETE FROM specs WHERE last_rev < (SELECT COALESCE(MIN(revision), (SELECT value FROM meta WHERE key = 'revision') + 1) FROM changes)
           AND id NOT IN (SELECT spec_id FROM objects WHERE spec_id IS NOT NULL) RETURNING id`,
      ).pluck(),
    };
    this.revision = this.stmt.revision.get() ?? 0;
    this.collectedAt = this.revision;
    this.loadSpecs();
    // A transaction function called inside another runs in a savepoint: a commit that throws rolls back alone.
    const one = db.transaction((c: WireCommit, specs: number[]) => this.apply(c, specs));
    const group = db.transaction((commits: WireCommit[], specJson: string[]) => {
      const specs = specJson.map((json) => this.specId(json));
      const outcomes = commits.map((c): WireOutcome => {
        try {
          return one(c, specs);
        } catch (e) {
          return { error: toWireError(e) };
        }
      });
      // The group's specs were written by revisions up to this one (a spec of a failed commit too: harmless).
      for (const id of specs) this.stmt.touchSpec.run(this.revision, id);
      return { outcomes, specs };
    });
    // IMMEDIATE takes the write lock up front, so a transaction never fails half-way on a lock upgrade.
    this.group = (commits, specs) => group.immediate(commits, specs);
  }

  handle(req: WriterRequest): WriterReply {
    try {
      if (req.type === 'group') {
        const { outcomes, specs } = this.group(req.commits, req.specs);
        const reply: WriterReply = { seq: req.seq, outcomes, specIds: specs };
        const freed = this.collectSpecs();
        return freed.length > 0 ? { ...reply, freedSpecs: freed } : reply;
      }
      if (req.type === 'compact') this.stmt.compact.run(req.revision);
      else this.db.close();
      return { seq: req.seq };
    } catch (e) {
      // The group's transaction failed as a whole (disk full, I/O error): nothing of it was written, specs included.
      if (req.type === 'group') {
        this.revision = this.stmt.revision.get() ?? 0;
        this.loadSpecs();
      }
      return { seq: req.seq, error: toWireError(e) };
    }
  }

  private loadSpecs(): void {
    this.specIds = new Map(this.stmt.allSpecs.all().map((r) => [r.json, r.id]));
  }

  /** The id of a stored spec with this JSON, storing it first if there is none (in the group's transaction). */
  private specId(json: string): number {
    let id = this.specIds.get(json);
    if (id === undefined) {
      id = Number(this.stmt.insertSpec.run(json, this.revision).lastInsertRowid);
      this.specIds.set(json, id);
      this.storedSpec = true;
    }
    return id;
  }

  /**
   * Deletes the specs nothing can read any more, at most once per `keepRevisions` commits and only after new ones were
   * stored (a scan of the objects), so the table holds about the specs in use.
   */
  private collectSpecs(): number[] {
    if (!this.storedSpec || this.revision < this.collectedAt + this.cfg.keepRevisions) return [];
    this.collectedAt = this.revision;
    this.storedSpec = false;
    const freed = this.stmt.collectSpecs.all().map(Number);
    const gone = new Set(freed);
    for (const [json, id] of this.specIds) if (gone.has(id)) this.specIds.delete(json);
    return freed;
  }

  /** One commit, inside its savepoint: any throw rolls its writes back. */
  private apply(c: WireCommit, specs: number[]): WireOutcome {
    const revision = this.revision + 1;
    const { now } = c;
    const events: string[] = [];
    const kinds = new Set<string>();
    let asSent = true;
    for (const op of c.ops) {
      kinds.add(op.kind);
      const row = this.stmt.get.get(op.kind, op.id);
      if (op.op === 'delete') {
        if (row === undefined) throw new ShoalError('not_found', `cannot delete ${describeOp(op.kind, op.id)}: it does not exist`);
        if (row.version !== op.version) throw conflict('delete', op.kind, op.id, op.version, row.version);
        const last = this.stmt.getData.get(op.kind, op.id) as string;
        this.stmt.remove.run(op.kind, op.id);
        asSent = false; // the event carries the object last stored, which the sender does not have
        events.push(eventJson(revision, 'delete', op.kind, op.id, last));
        continue;
      }
      const specId = op.spec === undefined ? undefined : specs[op.spec];
      if (op.spec !== undefined && specId === undefined) throw new ShoalError('internal', `${describeOp(op.kind, op.id)} refers to spec ${op.spec}, which its group lacks`);
      if (op.op === 'create') {
        if (row !== undefined) throw new ShoalError('already_exists', `cannot create ${describeOp(op.kind, op.id)}: it already exists`);
        const json = withMeta(op.body, specId, 1, now, now);
        this.stmt.insert.run(op.kind, op.id, 1, now, json, specId ?? null);
        events.push(eventJson(revision, 'put', op.kind, op.id, json));
      } else {
        if (row === undefined) throw new ShoalError('not_found', `cannot update ${describeOp(op.kind, op.id)}: it does not exist`);
        if (row.version !== op.version) throw conflict('update', op.kind, op.id, op.version, row.version);
        if (row.created_at !== op.createdAt) asSent = false;
        const json = withMeta(op.body, specId, row.version + 1, row.created_at, now);
        this.stmt.update.run(row.version + 1, json, specId ?? null, op.kind, op.id);
        events.push(eventJson(revision, 'put', op.kind, op.id, json));
      }
    }
    const kindList = [...kinds];
    const json = `[${events.join(',')}]`;
    this.stmt.setRevision.run(revision);
    this.stmt.appendChange.run(revision, kindList.join(','), json);
    const horizon = revision - this.cfg.keepRevisions;
    if (horizon > 0) this.stmt.compact.run(horizon);
    this.revision = revision;
    return asSent ? { revision, kinds: kindList, json, asSent } : { revision, kinds: kindList, json };
  }
}

// The worker's entry: only when started as the store's writer (importing this file for its types does nothing).
const cfg = (workerData as { shoalSqliteWriter?: WriterConfig } | null)?.shoalSqliteWriter;
if (parentPort && cfg) {
  const port = parentPort;
  const writer = new Writer(cfg);
  // Requests are handled one per turn of this thread's loop, so those that arrive while one is written are all queued
  // when the next is picked: an express group first, then in order. Revisions follow the order of writing, and each
  // answer is sent as its group is written, so the store publishes them in revision order.
  const queue: WriterRequest[] = [];
  let scheduled = false;
  const next = (): void => {
    scheduled = false;
    const express = queue.findIndex((r) => r.type === 'group' && r.express === true);
    const [req] = queue.splice(Math.max(express, 0), 1);
    if (req === undefined) return;
    port.postMessage(writer.handle(req));
    if (req.type === 'close') return port.close();
    if (queue.length > 0 && !scheduled) {
      scheduled = true;
      setImmediate(next);
    }
  };
  port.on('message', (req: WriterRequest) => {
    queue.push(req);
    if (!scheduled) {
      scheduled = true;
      setImmediate(next);
    }
  });
}
