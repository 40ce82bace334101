// Tests of the SQLite store: the shared Store contract on temp files, then what only SQLite promises (WAL, crash safety).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { ShoalError, deepFreeze } from '../../core/index.js';
import { sampleNode, sampleTask, storeContract, within } from '../contract.js';
import type { StoreFixture } from '../contract.js';
import type { Op, WatchEvent } from '../store.js';
import type { StoredObject, Task } from '../../core/index.js';
import { SqliteStore } from './sqlite-store.js';
import type { WriterConfig, WriterReply, WriterRequest } from './sqlite-writer.js';
import type { SqliteStoreOptions } from './sqlite-store.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const tempPath = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-sqlite-'));
  dirs.push(dir);
  return join(dir, 'store.db');
};

/** A fresh store on a temp file; reopen and compact act on whichever store is current. */
const sqliteFixture = async (opts: SqliteStoreOptions = {}): Promise<StoreFixture> => {
  const path = await tempPath();
  let current = SqliteStore.open(path, opts);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = SqliteStore.open(path, opts);
      return current;
    },
    compact: (revision) => current.compact(revision),
    cleanup: () => current.close(),
  };
};

storeContract('sqlite', () => sqliteFixture());

const createNode = (id: string): Op => ({ op: 'create', object: sampleNode(id) });

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof ShoalError, String(e));
  assert.equal(e.code, code, e.message);
  return true;
};

/**
 * Runs a child node process that commits one node per transaction (`commits` of them, or until killed),
 * printing `acked <revision>` after each acknowledged commit, and SIGKILLs it after the `killAfter`-th ack.
 * Returns the last revision the child acknowledged.
 */
const commitThenKill = async (path: string, opts: { commits: number; killAfter: number }): Promise<number> => {
  const script = `
    const { SqliteStore } = await import(process.env.SHOAL_STORE_MODULE);
    const store = SqliteStore.open(process.env.SHOAL_DB);
    const template = JSON.parse(process.env.SHOAL_NODE);
    const commits = Number(process.env.SHOAL_COMMITS);
    for (let i = 0; i < commits; i++) {
      const { revision } = await store.commit([{ op: 'create', object: { ...template, id: 'n' + i } }]);
      process.stdout.write('acked ' + revision + '\\n');
    }
    // Stay alive with the store open, never closing it: only SIGKILL ends this process.
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: {
      ...process.env,
      SHOAL_STORE_MODULE: new URL('./sqlite-store.js', import.meta.url).href,
      SHOAL_DB: path,
      SHOAL_NODE: JSON.stringify(sampleNode('template')),
      SHOAL_COMMITS: String(opts.commits),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
  let acked = 0;
  let lastRevision = 0;
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      const m = /^acked (\d+)$/.exec(line);
      if (!m) continue;
      acked++;
      lastRevision = Number(m[1]);
      if (acked === opts.killAfter) {
        child.kill('SIGKILL');
        break;
      }
    }
    assert.equal(await exited, 'SIGKILL', `the child must die by SIGKILL; stderr: ${stderr}`);
  } finally {
    clearTimeout(timer);
    child.kill('SIGKILL');
  }
  assert.equal(acked, opts.killAfter, `the child acknowledged ${acked} commits; stderr: ${stderr}`);
  return lastRevision;
};

describe('SqliteStore', () => {
  it('runs in WAL mode with 8 KiB pages and synchronous FULL by default, and NORMAL on request', async () => {
    const path = await tempPath();
    const store = SqliteStore.open(path);
    try {
      assert.deepEqual(store.pragmas(), { journalMode: 'wal', synchronous: 'FULL', busyTimeoutMs: 5000 });
      await store.commit([createNode('n1')]);
      assert.ok(existsSync(`${path}-wal`), 'commits go to the write-ahead log');
      // WAL is a property of the file: another connection sees it too.
      const raw = new Database(path, { readonly: true });
      try {
        assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
        // A new file's page size (see SqliteStore.open): what the store's writes were measured with.
        assert.equal(raw.pragma('page_size', { simple: true }), 8192);
      } finally {
        raw.close();
      }
    } finally {
      await store.close();
    }
    const normal = SqliteStore.open(path, { synchronous: 'NORMAL', busyTimeoutMs: 250 });
    try {
      assert.deepEqual(normal.pragmas(), { journalMode: 'wal', synchronous: 'NORMAL', busyTimeoutMs: 250 });
    } finally {
      await normal.close();
    }
  });

  it('keeps every acknowledged commit when the writing process is SIGKILLed mid-stream', async () => {
    const path = await tempPath();
    const acked = await commitThenKill(path, { commits: 100_000, killAfter: 20 });
    const store = SqliteStore.open(path);
    try {
      const revision = await store.revision();
      assert.ok(revision >= acked, `revision ${revision} lost acknowledged revision ${acked}`);
      // One node per commit: no commit is half there, and none is missing below the revision.
      const nodes = await store.list('node');
      assert.equal(nodes.revision, revision);
      assert.deepEqual(
        nodes.items.map((n) => n.id).sort(),
        Array.from({ length: revision }, (_, i) => `n${i}`).sort(),
      );
      const next = await store.commit([createNode('after')]);
      assert.equal(next.revision, revision + 1);
    } finally {
      await store.close();
    }
  });

  it('keeps a commit acknowledged just before a SIGKILL of an idle writer, with its history', async () => {
    const path = await tempPath();
    const acked = await commitThenKill(path, { commits: 3, killAfter: 3 });
    assert.equal(acked, 3);
    const store = SqliteStore.open(path);
    try {
      assert.equal(await store.revision(), 3);
      assert.deepEqual((await store.get('node', 'n2'))?.meta.version, 1);
      const ctl = new AbortController();
      const seen: string[] = [];
      await within(
        (async () => {
          for await (const batch of store.watch({ fromRevision: 1, signal: ctl.signal })) {
            seen.push(...batch.map((e) => `${e.revision}:${e.id}`));
            if (seen.length === 3) ctl.abort();
          }
        })(),
        'replaying the history',
      ).finally(() => ctl.abort());
      assert.deepEqual(seen, ['1:n0', '2:n1', '3:n2']);
    } finally {
      await store.close();
    }
  });

  it('compacts the change log past keepRevisions, also when reopened with a smaller one', async () => {
    const path = await tempPath();
    const store = SqliteStore.open(path, { keepRevisions: 3 });
    /** The revisions a watch from `fromRevision` delivers up to the current one. */
    const watchFrom = async (s: SqliteStore, fromRevision: number): Promise<number[]> => {
      const ctl = new AbortController();
      const revs: number[] = [];
      const head = await s.revision();
      await within(
        (async () => {
          for await (const batch of s.watch({ fromRevision, signal: ctl.signal })) {
            revs.push(batch[0]!.revision);
            if (revs[revs.length - 1] === head) ctl.abort();
          }
        })(),
        `watching from ${fromRevision}`,
      ).finally(() => ctl.abort());
      return revs;
    };
    try {
      for (let i = 0; i < 6; i++) await store.commit([createNode(`n${i}`)]);
      await assert.rejects(watchFrom(store, 3), isCode('failed_precondition'));
      assert.deepEqual(await watchFrom(store, 4), [4, 5, 6]);
    } finally {
      await store.close();
    }
    const reopened = SqliteStore.open(path, { keepRevisions: 1 });
    try {
      await assert.rejects(watchFrom(reopened, 5), isCode('failed_precondition'));
      assert.deepEqual(await watchFrom(reopened, 6), [6]);
      assert.equal((await reopened.list('node')).items.length, 6, 'compaction drops history, never objects');
    } finally {
      await reopened.close();
    }
  });

  it('compacts on demand only up to the current revision', async () => {
    const store = SqliteStore.open(await tempPath());
    try {
      await store.commit([createNode('n1')]);
      await assert.rejects(store.compact(2), isCode('invalid_argument'));
      await assert.rejects(store.compact(-1), isCode('invalid_argument'));
      await store.compact(1);
      await store.compact(0); // already compacted past: nothing to do
      const ctl = new AbortController();
      const it = store.watch({ fromRevision: 2, signal: ctl.signal })[Symbol.asyncIterator]();
      const pending = it.next();
      await store.commit([createNode('n2')]);
      try {
        assert.equal((await within(pending, 'a live commit')).value?.[0]?.id, 'n2');
      } finally {
        ctl.abort();
      }
    } finally {
      await store.close();
    }
  });

  it('refuses malformed transactions before writing anything', async () => {
    const store = SqliteStore.open(await tempPath());
    try {
      const node = sampleNode('n1');
      const bad: Op[][] = [
        [],
        [createNode('n1'), createNode('n1')],
        [{ op: 'create', object: { ...node, id: '' } }],
        [{ op: 'create', object: { ...node, kind: 'no,de' as 'node' } }],
        [{ op: 'delete', kind: 'node', id: 'n1', version: undefined as unknown as number }],
        [{ op: 'upsert', object: node } as unknown as Op],
      ];
      for (const ops of bad) await assert.rejects(store.commit(ops), isCode('invalid_argument'));
      assert.equal(await store.revision(), 0);
      await assert.rejects(
        (async () => {
          for await (const _ of store.watch({ fromRevision: -1, signal: new AbortController().signal })) break;
        })(),
        isCode('invalid_argument'),
      );
    } finally {
      await store.close();
    }
  });

  it('ends watches on close and refuses use afterwards', async () => {
    const store = SqliteStore.open(await tempPath());
    const ctl = new AbortController();
    const it = store.watch({ fromRevision: 1, signal: ctl.signal })[Symbol.asyncIterator]();
    const pending = it.next();
    await store.close();
    assert.equal((await within(pending, 'the end of the watch')).done, true);
    await store.close(); // idempotent
    await assert.rejects(store.commit([createNode('n1')]), isCode('unavailable'));
    await assert.rejects(store.get('node', 'n1'), isCode('unavailable'));
    await assert.rejects(store.revision(), isCode('unavailable'));
  });

  it('refuses a file of another schema version and a path it cannot open', async () => {
    const path = await tempPath();
    await SqliteStore.open(path).close();
    const raw = new Database(path);
    raw.prepare(`UPDATE meta SET value = 99 WHERE key = 'schema'`).run();
    raw.close();
    assert.throws(() => SqliteStore.open(path), isCode('failed_precondition'));
    // A directory is not a database file.
    assert.throws(() => SqliteStore.open(tmpdir()), isCode('unavailable'));
    assert.throws(() => SqliteStore.open(path, { keepRevisions: 0 }), isCode('invalid_argument'));
  });

  it('migrates a file of schema 1 (objects keyed by kind and id): same objects, revision and change log, and writes on', async () => {
    const path = await tempPath();
    const v1 = new Database(path);
    const node = (id: string, version: number): string => JSON.stringify({ ...sampleNode(id), meta: { version, createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z' } });
    v1.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, created_at TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
      CREATE TABLE changes (revision INTEGER PRIMARY KEY, kinds TEXT NOT NULL, events TEXT NOT NULL);
      INSERT INTO meta (key, value) VALUES ('schema', 1), ('revision', 2);
    `);
    const put = v1.prepare(`INSERT INTO objects (kind, id, version, created_at, data) VALUES ('node', ?, ?, '2026-01-01T00:00:00.000Z', ?)`);
    put.run('b', 1, node('b', 1));
    put.run('a', 2, node('a', 2));
    v1.prepare(`INSERT INTO changes (revision, kinds, events) VALUES (2, 'node', ?)`).run(JSON.stringify([{ revision: 2, type: 'put', kind: 'node', id: 'a', object: JSON.parse(node('a', 2)) as unknown }]));
    v1.close();

    const store = SqliteStore.open(path);
    try {
      assert.equal(await store.revision(), 2);
      assert.deepEqual((await store.list('node')).items.map((n) => [n.id, n.meta.version]), [['a', 2], ['b', 1]]);
      assert.equal((await store.get('node', 'a'))?.meta.version, 2);
      // The change log survived: a watch from revision 2 replays it.
      const ctl = new AbortController();
      const first = await within(store.watch({ fromRevision: 2, signal: ctl.signal }).next(), 'the replayed revision');
      ctl.abort();
      assert.deepEqual(first.value?.map((e) => [e.revision, e.id]), [[2, 'a']]);
      // Writes go on from there, with the versions kept.
      const b = await store.get('node', 'b');
      assert.ok(b);
      const r = await store.commit([createNode('c'), { op: 'update', object: { ...b, spec: { ...b.spec, availability: 'drain' } } }]);
      assert.equal(r.revision, 3);
      assert.equal((await store.get('node', 'b'))?.meta.version, 2);
      await assert.rejects(store.commit([createNode('a')]), isCode('already_exists'));
    } finally {
      await store.close();
    }
    const raw = new Database(path, { readonly: true });
    assert.equal(raw.prepare(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get(), 3);
    raw.close();
  });

  it('stores each task spec once, gives every read its whole spec back, and collects specs nothing can read', async () => {
    const path = await tempPath();
    let store = SqliteStore.open(path, { keepRevisions: 5 });
    const raw = new Database(path, { readonly: true });
    const rows = (sql: string): unknown[] => raw.prepare(sql).pluck().all();
    const withImage = (t: Task, image: string): Task => ({ ...t, spec: { ...t.spec, container: { ...t.spec.container, image } } });
    const strip = (o: StoredObject | undefined): unknown => (o === undefined ? undefined : { ...o, meta: undefined });
    try {
      const a = Array.from({ length: 300 }, (_, i) => withImage(sampleTask(`a${i}`, 'svc-a'), 'image-a'));
      const b = [withImage(sampleTask('b1', 'svc-b'), 'image-b'), withImage(sampleTask('b2', 'svc-b'), 'image-b')];
      const created = await store.commit([...a, ...b].map((object): Op => ({ op: 'create', object })));
      // In the file: two specs, and no task row or change holding one.
      assert.deepEqual(rows(`SELECT json FROM specs ORDER BY id`).map((j) => (JSON.parse(j as string) as Task['spec']).container.image), ['image-a', 'image-b']);
      assert.deepEqual(rows(`SELECT COUNT(*) FROM objects WHERE data LIKE '%image-%' OR spec_id IS NULL`), [0]);
      assert.deepEqual(rows(`SELECT COUNT(*) FROM changes WHERE events LIKE '%image-%'`), [0]);
      // Every way of reading gives the tasks back whole.
      const want = [...a, ...b].map(strip);
      assert.deepEqual(created.objects.map(strip), want);
      assert.deepEqual((await store.get('task', 'b2'))?.spec.container.image, 'image-b');
      assert.deepEqual((await store.list('task')).items.map(strip), [...want].sort((x, y) => ((x as Task).id < (y as Task).id ? -1 : 1)));
      const ctl = new AbortController();
      const watched = await within(store.watch({ fromRevision: created.revision, signal: ctl.signal }).next(), 'the tasks');
      ctl.abort();
      assert.deepEqual((watched.value as WatchEvent[]).map((e) => strip((e as { object: StoredObject }).object)), want);

      // A spec frozen (as the cache freezes what its tasks share) and one changed in place between two commits.
      const a0 = created.objects[0] as Task;
      const frozen = deepFreeze(structuredClone(a0.spec));
      await store.commit([{ op: 'update', object: { ...a0, spec: frozen, status: { ...a0.status, state: 'running' } } }]);
      const open = structuredClone(b[0]!.spec);
      const b1 = (await store.get('task', 'b1')) as Task;
      const b1v2 = (await store.commit([{ op: 'update', object: { ...b1, spec: open } }])).objects[0] as Task;
      open.container.image = 'image-c';
      await store.commit([{ op: 'update', object: { ...b1v2, spec: open } }]);
      assert.equal((await store.get('task', 'b1'))?.spec.container.image, 'image-c', 'a spec changed in place is stored as it is now');
      assert.equal((await store.get('task', 'a0'))?.status.state, 'running');

      // Reopened, with nothing remembered: the same tasks.
      await store.close();
      store = SqliteStore.open(path, { keepRevisions: 5 });
      assert.deepEqual((await store.get('task', 'a0'))?.spec, a[0]!.spec);
      assert.equal((await store.get('task', 'b1'))?.spec.container.image, 'image-c');

      // b2 removed and b1 moved on: image-b is no longer read by any object, and once the change log has moved past
      // the revisions that wrote it (5 kept), the next collection deletes it; the others stay.
      const b2 = (await store.get('task', 'b2')) as Task;
      await store.commit([{ op: 'delete', kind: 'task', id: 'b2', version: b2.meta.version }]);
      for (let i = 0; i < 6; i++) await store.commit([createNode(`n${i}`)]);
      await store.commit([{ op: 'create', object: withImage(sampleTask('d1', 'svc-d'), 'image-d') }]);
      assert.deepEqual(rows(`SELECT json FROM specs ORDER BY id`).map((j) => (JSON.parse(j as string) as Task['spec']).container.image), ['image-a', 'image-c', 'image-d']);
      const ctl2 = new AbortController();
      const oldest = await store.revision() - 4;
      let seen = 0;
      for await (const batch of store.watch({ fromRevision: oldest, signal: ctl2.signal })) {
        for (const e of batch) if (e.type === 'put' && e.object.kind === 'task') assert.equal(e.object.spec.container.image, 'image-d');
        if ((seen += 1) === 5) ctl2.abort();
      }
    } finally {
      raw.close();
      await store.close();
    }
  });

  it('gives the first live watcher of task writes the committed objects stamped, equal to what the log keeps, and others copies of their own', async () => {
    const store = SqliteStore.open(await tempPath());
    const ctl = new AbortController();
    /** Starts a watch from revision 1 now; `take(n)` then gives its first n batches. */
    const watch = (): { take: (n: number) => Promise<WatchEvent[][]> } => {
      const it = store.watch({ fromRevision: 1, signal: ctl.signal })[Symbol.asyncIterator]();
      const head = it.next(); // the watcher is registered and waits for the first commit
      return {
        take: async (n) => {
          const out = [(await within(head, 'batch 1')).value as WatchEvent[]];
          while (out.length < n) out.push((await within(it.next(), `batch ${out.length + 1}`)).value as WatchEvent[]);
          return out;
        },
      };
    };
    try {
      const first = watch();
      const second = watch();
      const t1 = sampleTask('t1', 'svc', 'n1');
      const t2 = sampleTask('t2', 'svc', 'n1', 2);
      const [s1] = (await store.commit([{ op: 'create', object: t1 }, { op: 'create', object: t2 }])).objects as Task[];
      const s1v2 = (await store.commit([{ op: 'update', object: { ...s1!, status: { ...s1!.status, state: 'running' } } }])).objects[0] as Task;
      // Stamped otherwise than sent (a createdAt that is not the stored one): the event is what was stored.
      await store.commit([{ op: 'update', object: { ...s1v2, desiredState: 'shutdown', meta: { ...s1v2.meta, createdAt: '2001-01-01T00:00:00.000Z' } } }]);
      await store.commit([{ op: 'delete', kind: 'task', id: 't2', version: 1 }, createNode('n9')]);
      const live = await first.take(4);
      const other = await second.take(4);
      const log = await watch().take(4);
      assert.deepEqual(live, log);
      assert.deepEqual(other, log);
      assert.equal((live[2]?.[0]?.object as Task).meta.createdAt, s1!.meta.createdAt);
      // The first watcher's objects are made from what was committed (they share its spec: nothing was parsed), yet are
      // objects of their own: neither what was committed nor what another watcher got.
      const created = live[0]?.[0]?.object as Task;
      assert.equal(created.spec, t1.spec);
      assert.notEqual((other[0]?.[0]?.object as Task).spec, t1.spec);
      assert.ok(created !== t1 && created !== other[0]?.[0]?.object);
    } finally {
      ctl.abort();
      await store.close();
    }
  });

  it('reads a file of schema 2 (specs inline) as it is, and writes its tasks on with their spec stored once', async () => {
    const path = await tempPath();
    const v2 = SqliteStore.open(path);
    await v2.close();
    const db = new Database(path);
    // Back to schema 2, with one task as schema 2 wrote it: the spec in its row and in its change.
    const task = { ...sampleTask('t1', 'svc'), meta: { version: 1, createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z' } };
    db.exec(`DROP TABLE specs; ALTER TABLE objects DROP COLUMN spec_id; UPDATE meta SET value = 2 WHERE key = 'schema'; UPDATE meta SET value = 1 WHERE key = 'revision';`);
    db.prepare(`INSERT INTO objects (kind, id, version, created_at, data) VALUES ('task', 't1', 1, '2026-01-01T00:00:00.000Z', ?)`).run(JSON.stringify(task));
    db.prepare(`INSERT INTO changes (revision, kinds, events) VALUES (1, 'task', ?)`).run(JSON.stringify([{ revision: 1, type: 'put', kind: 'task', id: 't1', object: task }]));
    db.close();

    const store = SqliteStore.open(path);
    try {
      assert.deepEqual(await store.get('task', 't1'), task);
      const ctl = new AbortController();
      const first = await within(store.watch({ fromRevision: 1, signal: ctl.signal }).next(), 'the replayed revision');
      ctl.abort();
      assert.deepEqual((first.value?.[0] as { object: Task }).object, task);
      await store.commit([{ op: 'update', object: { ...task, status: { ...task.status, state: 'running' } } }]);
      const now = await store.get('task', 't1');
      assert.deepEqual({ ...now, meta: undefined, status: undefined }, { ...task, meta: undefined, status: undefined });
    } finally {
      await store.close();
    }
    const raw = new Database(path, { readonly: true });
    assert.equal(raw.prepare(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get(), 3);
    assert.equal(raw.prepare(`SELECT COUNT(*) FROM objects WHERE spec_id IS NOT NULL AND data NOT LIKE '%shoal-test/busybox%'`).pluck().get(), 1);
    raw.close();
  });

  it('writes an interactive commit before background commits queued ahead of it', async () => {
    const { store, cleanup } = await sqliteFixture();
    try {
      const batch = (b: number): Op[] => Array.from({ length: 1500 }, (_, i) => createNode(`bg${b}-${i}`));
      const background = Array.from({ length: 6 }, (_, b) => store.commit(batch(b), { background: true }));
      const interactive = store.commit([createNode('api')]);
      const revisions = (await Promise.all(background)).map((r) => r.revision);
      const first = (await interactive).revision;
      assert.ok(revisions.every((r) => r > first), `interactive at ${first}, background at ${revisions.join(',')}`);
      assert.deepEqual(revisions, [...revisions].sort((a, b) => a - b), 'background commits keep their order');
    } finally {
      await cleanup();
    }
  });

  it('writes interactive commits made while background groups fill the writer, in order, also when closed at once', async () => {
    const f = await sqliteFixture();
    try {
      const background = Array.from({ length: 8 }, (_, b) => f.store.commit(Array.from({ length: 400 }, (_, i) => createNode(`bg${b}-${i}`)), { background: true }));
      // A turn later the writer has background groups in flight; interactive commits go out beside them.
      await new Promise((r) => setImmediate(r));
      const interactive = Array.from({ length: 3 }, (_, i) => f.store.commit([createNode(`api${i}`)]));
      const closed = f.store.close();
      const all = await Promise.all([...interactive, ...background]);
      await closed;
      const revisions = all.map((r) => r.revision);
      assert.equal(new Set(revisions).size, revisions.length, 'a revision each');
      const api = revisions.slice(0, 3);
      assert.deepEqual(api, [...api].sort((a, b) => a - b), 'interactive commits keep their order');
      assert.ok(api.every((r) => r < Math.max(...revisions)), `interactive at ${api.join(',')}, ahead of queued background commits (${revisions.slice(3).join(',')})`);
      const reopened = await (f.reopen ?? assert.fail("the SQLite fixture reopens"))();
      assert.equal((await reopened.list('node')).items.length, 8 * 400 + 3, 'every acknowledged commit is stored');
      assert.equal(await reopened.revision(), Math.max(...revisions));
    } finally {
      await f.cleanup();
    }
  });

  it("writer: takes an express group before the groups queued ahead of it, and revisions follow the order it writes", async () => {
    const path = await tempPath();
    await SqliteStore.open(path).close();
    const writer = new Worker(new URL('./sqlite-writer.js', import.meta.url), { workerData: { shoalSqliteWriter: { path, synchronous: 'NORMAL', busyTimeoutMs: 5000, keepRevisions: 100 } satisfies WriterConfig } });
    try {
      const replies = new Map<number, WriterReply>();
      const all = new Promise<void>((resolve) =>
        writer.on('message', (r: WriterReply) => {
          replies.set(r.seq, r);
          if (replies.size === 4) resolve();
        }),
      );
      const group = (seq: number, ids: string[], express?: boolean): WriterRequest => ({
        type: 'group',
        seq,
        specs: [],
        commits: [{ now: new Date().toISOString(), ops: ids.map((id) => ({ op: 'create' as const, kind: 'node', id, version: 0, body: JSON.stringify({ ...sampleNode(id), meta: undefined }) })) }],
        ...(express === undefined ? {} : { express }),
      });
      // Posted in one turn: the writer has them all queued when it picks the second (it may have picked the first, which
      // is big enough to be written still when the last arrives).
      writer.postMessage(group(1, Array.from({ length: 3000 }, (_, i) => `a${i}`)));
      writer.postMessage(group(2, Array.from({ length: 500 }, (_, i) => `b${i}`)));
      writer.postMessage(group(3, Array.from({ length: 500 }, (_, i) => `c${i}`)));
      writer.postMessage(group(4, ['api'], true));
      await within(all, 'the writer answers four groups');
      const revision = (seq: number): number => {
        const o = replies.get(seq)?.outcomes?.[0];
        assert.ok(o && !('error' in o), `group ${seq} written: ${JSON.stringify(o)}`);
        return o.revision;
      };
      assert.ok(revision(4) < revision(2), `the express group (revision ${revision(4)}) is written before the second group (${revision(2)})`);
      assert.ok(revision(1) < revision(2) && revision(2) < revision(3), 'the other groups keep their order');
      assert.deepEqual([1, 2, 3, 4].map(revision).sort((a, b) => a - b), [1, 2, 3, 4], 'a revision each, none skipped');
    } finally {
      await writer.terminate();
    }
  });

  it('creates missing parent directories, and refuses :memory: (its writer thread needs a file)', async () => {
    const path = join(dirname(await tempPath()), 'nested', 'deeper', 'store.db');
    const store = SqliteStore.open(path);
    await store.commit([createNode('n1')]);
    await store.close();
    assert.ok(existsSync(path));
    assert.throws(() => SqliteStore.open(':memory:'), isCode('invalid_argument'));
  });
});
