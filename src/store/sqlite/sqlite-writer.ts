// The SQLite store's writer: a worker thread that owns the write connection and applies groups of commits, so the
// manager's event loop (API requests, heartbeats, controllers) never waits for SQLite's statements, COMMIT or fsync.
//
// The main thread validates, fences and serializes; this thread checks versions, stamps meta, writes objects and the
// change log, and answers each commit with its revision and its events as JSON (what watchers and results are made
// of). Messages are handled one at a time, in order: revisions follow the order of the requests.

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

/** One op as sent to the writer: a create/update carries its object as JSON without `meta` (the writer adds it). */
export type WireOp =
  | { op: 'create' | 'update'; kind: string; id: string; version: number; body: string }
  | { op: 'delete'; kind: string; id: string; version: number };

/** One commit: its ops and the time it is stamped with (the store's clock lives on the main thread). */
export interface WireCommit {
  now: string;
  ops: WireOp[];
}

export type WriterCommand = { type: 'group'; commits: WireCommit[] } | { type: 'compact'; revision: number } | { type: 'close' };

export type WriterRequest = WriterCommand & { seq: number };

/** A commit's outcome: the revision and its WatchEvent[] as JSON, or why it was not written. */
export type WireOutcome = { revision: number; kinds: string[]; json: string } | { error: WireError };

export interface WireError {
  code: ErrorCode | undefined;
  message: string;
}

export type WriterReply = { seq: number; outcomes?: WireOutcome[]; error?: WireError };

/** A WatchEvent as JSON, spliced from already-serialized objects to avoid a parse/stringify round trip. */
const eventJson = (revision: number, type: 'put' | 'delete', kind: string, id: string, object: string): string =>
  `{"revision":${revision},"type":"${type}","kind":${JSON.stringify(kind)},"id":${JSON.stringify(id)},"object":${object}}`;

export const describeOp = (kind: string, id: string): string => `${kind} '${id}'`;

const conflict = (what: 'update' | 'delete', kind: string, id: string, expected: number, actual: number): ShoalError =>
  new ShoalError(
    'conflict',
    `cannot ${what} ${describeOp(kind, id)}: expected version ${String(expected)} but the stored version is ${actual}`,
  );

/** An object's JSON with its meta appended (the body was serialized without one). */
const withMeta = (body: string, version: number, createdAt: string, updatedAt: string): string =>
  `${body.slice(0, -1)}${body.length > 2 ? ',' : ''}"meta":{"version":${version},"createdAt":"${createdAt}","updatedAt":"${updatedAt}"}}`;

const toWireError = (e: unknown): WireError =>
  e instanceof ShoalError ? { code: e.code, message: e.message } : { code: undefined, message: e instanceof Error ? e.message : String(e) };

/** The write connection and its statements. */
class Writer {
  private readonly db: Database.Database;
  private revision: number;
  private readonly stmt;
  private readonly group: (commits: WireCommit[]) => WireOutcome[];

  constructor(private readonly cfg: WriterConfig) {
    this.db = new Database(cfg.path);
    this.db.pragma(`busy_timeout = ${cfg.busyTimeoutMs}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${cfg.synchronous}`);
    this.db.pragma('journal_size_limit = 67108864');
    // Checkpoint every 32 MiB of WAL rather than SQLite's 4 MiB: tasks are rewritten as they move on, and a page
    // written several times between two checkpoints is copied to the database once.
    this.db.pragma('wal_autocheckpoint = 8192');
    const db = this.db;
    this.stmt = {
      // Without the data: a write needs only the version and creation time of what it replaces.
      get: db.prepare<[string, string], { version: number; created_at: string }>(`SELECT version, created_at FROM objects WHERE kind = ? AND id = ?`),
      getData: db.prepare<[string, string], string>(`SELECT data FROM objects WHERE kind = ? AND id = ?`).pluck(),
      insert: db.prepare<[string, string, number, string, string]>(`INSERT INTO objects (kind, id, version, created_at, data) VALUES (?, ?, ?, ?, ?)`),
      update: db.prepare<[number, string, string, string]>(`UPDATE objects SET version = ?, data = ? WHERE kind = ? AND id = ?`),
      remove: db.prepare<[string, string]>(`DELETE FROM objects WHERE kind = ? AND id = ?`),
      setRevision: db.prepare<[number]>(`UPDATE meta SET value = ? WHERE key = 'revision'`),
      appendChange: db.prepare<[number, string, string]>(`INSERT INTO changes (revision, kinds, events) VALUES (?, ?, ?)`),
      compact: db.prepare<[number]>(`DELETE FROM changes WHERE revision <= ?`),
      revision: db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'revision'`).pluck(),
    };
    this.revision = this.stmt.revision.get() ?? 0;
    // A transaction function called inside another runs in a savepoint: a commit that throws rolls back alone.
    const one = db.transaction((c: WireCommit) => this.apply(c));
    const group = db.transaction((commits: WireCommit[]) =>
      commits.map((c): WireOutcome => {
        try {
          return one(c);
        } catch (e) {
          return { error: toWireError(e) };
        }
      }),
    );
    // IMMEDIATE takes the write lock up front, so a transaction never fails half-way on a lock upgrade.
    this.group = (commits) => group.immediate(commits);
  }

  handle(req: WriterRequest): WriterReply {
    try {
      if (req.type === 'group') return { seq: req.seq, outcomes: this.group(req.commits) };
      if (req.type === 'compact') this.stmt.compact.run(req.revision);
      else this.db.close();
      return { seq: req.seq };
    } catch (e) {
      // The group's transaction failed as a whole (disk full, I/O error): nothing of it was written.
      if (req.type === 'group') this.revision = this.stmt.revision.get() ?? 0;
      return { seq: req.seq, error: toWireError(e) };
    }
  }

  /** One commit, inside its savepoint: any throw rolls its writes back. */
  private apply(c: WireCommit): WireOutcome {
    const revision = this.revision + 1;
    const { now } = c;
    const events: string[] = [];
    const kinds = new Set<string>();
    for (const op of c.ops) {
      kinds.add(op.kind);
      const row = this.stmt.get.get(op.kind, op.id);
      if (op.op === 'delete') {
        if (row === undefined) throw new ShoalError('not_found', `cannot delete ${describeOp(op.kind, op.id)}: it does not exist`);
        if (row.version !== op.version) throw conflict('delete', op.kind, op.id, op.version, row.version);
        const last = this.stmt.getData.get(op.kind, op.id) as string;
        this.stmt.remove.run(op.kind, op.id);
        events.push(eventJson(revision, 'delete', op.kind, op.id, last));
      } else if (op.op === 'create') {
        if (row !== undefined) throw new ShoalError('already_exists', `cannot create ${describeOp(op.kind, op.id)}: it already exists`);
        const json = withMeta(op.body, 1, now, now);
        this.stmt.insert.run(op.kind, op.id, 1, now, json);
        events.push(eventJson(revision, 'put', op.kind, op.id, json));
      } else {
        if (row === undefined) throw new ShoalError('not_found', `cannot update ${describeOp(op.kind, op.id)}: it does not exist`);
        if (row.version !== op.version) throw conflict('update', op.kind, op.id, op.version, row.version);
        const json = withMeta(op.body, row.version + 1, row.created_at, now);
        this.stmt.update.run(row.version + 1, json, op.kind, op.id);
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
    return { revision, kinds: kindList, json };
  }
}

// The worker's entry: only when started as the store's writer (importing this file for its types does nothing).
const cfg = (workerData as { shoalSqliteWriter?: WriterConfig } | null)?.shoalSqliteWriter;
if (parentPort && cfg) {
  const port = parentPort;
  const writer = new Writer(cfg);
  port.on('message', (req: WriterRequest) => {
    port.postMessage(writer.handle(req));
    if (req.type === 'close') port.close();
  });
}
