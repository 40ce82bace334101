// Tests of the Cache (informer) over a real SQLite store: consistent start, following commits, indexes, waiters.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Kind, StoredObject, Task } from '../core/index.js';
import { ShoalError } from '../core/index.js';
import { Cache } from './cache.js';
import { sampleNode, sampleService, sampleTask, within } from './contract.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import type { Op, WatchEvent } from './store.js';

const KINDS: Kind[] = ['cluster', 'node', 'service', 'task'];

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A store on a temp file and an abort controller for the cache under test; both are closed after `body`. */
const withStore = async (body: (store: SqliteStore, ctl: AbortController) => Promise<void>): Promise<void> => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-cache-'));
  dirs.push(dir);
  const store = SqliteStore.open(join(dir, 'store.db'));
  const ctl = new AbortController();
  try {
    await body(store, ctl);
  } finally {
    ctl.abort();
    await store.close();
  }
};

const create = (object: StoredObject): Op => ({ op: 'create', object });
const update = (object: StoredObject): Op => ({ op: 'update', object });
const remove = (o: StoredObject): Op => ({ op: 'delete', kind: o.kind, id: o.id, version: o.meta.version });

/** The cache's view equals the store's, kind by kind. */
const assertMirrors = async (cache: Cache, store: SqliteStore): Promise<void> => {
  for (const kind of KINDS) {
    const byId = (a: StoredObject, b: StoredObject): number => a.id.localeCompare(b.id);
    assert.deepEqual(cache.list(kind).sort(byId), (await store.list(kind)).items.sort(byId), `${kind} objects differ`);
  }
};

const ids = (tasks: Task[]): string[] => tasks.map((t) => t.id).sort();

describe('Cache', () => {
  it('starts from the store as it is, at its revision', () =>
    withStore(async (store, ctl) => {
      await store.commit([create(sampleNode('a')), create(sampleNode('b')), create(sampleService('s1'))]);
      await store.commit([create(sampleTask('t1', 's1', 'a')), create(sampleTask('t2', 's1'))]);
      const cache = await Cache.start(store, { signal: ctl.signal });
      assert.equal(cache.revision, await store.revision());
      await assertMirrors(cache, store);
      assert.equal(cache.count('node'), 2);
      assert.equal(cache.get('service', 's1')?.spec.name, 's1');
      assert.deepEqual(ids(cache.tasksOfService('s1')), ['t1', 't2']);
      assert.deepEqual(ids(cache.tasksOfNode('a')), ['t1']);
      assert.deepEqual(cache.tasksOfNode(''), [], 'unassigned tasks are in no node index');
    }));

  it("keeps each service's live and running task counts as tasks are created, move on, are stopped and deleted", () =>
    withStore(async (store, ctl) => {
      const scan = (cache: Cache, sid: string): { live: number; running: number } => {
        const live = cache.tasksOfService(sid).filter((t) => t.desiredState === 'running' || t.desiredState === 'ready');
        return { live: live.length, running: live.filter((t) => t.status.state === 'running').length };
      };
      const run = (t: Task): Task => ({ ...t, status: { ...t.status, state: 'running' } });
      await store.commit([create(sampleService('s1')), create(sampleService('s2')), create(run(sampleTask('old', 's1', 'a')))]);
      const cache = await Cache.start(store, { signal: ctl.signal });
      assert.deepEqual(cache.taskCounts('s1'), { live: 1, running: 1 }, 'counted at load');
      const r = await store.commit([create(sampleTask('t1', 's1', 'a')), create(run(sampleTask('t2', 's1', 'b'))), create({ ...sampleTask('t3', 's2'), desiredState: 'ready' })]);
      await within(cache.waitFor(r.revision), 'the creates');
      const [t1, , t3] = r.objects as Task[];
      assert.ok(t1 && t3);
      const old = cache.get('task', 'old');
      assert.ok(old);
      const moved = await store.commit([update(run(t1)), update({ ...old, desiredState: 'shutdown' }), update(run(t3))]);
      await within(cache.waitFor(moved.revision), 'the updates');
      assert.deepEqual(cache.taskCounts('s1'), { live: 2, running: 2 });
      assert.deepEqual(cache.taskCounts('s2'), { live: 1, running: 1 }, 'a ready task is live');
      const t2 = cache.get('task', 't2');
      assert.ok(t2);
      const gone = await store.commit([remove(t2)]);
      await within(cache.waitFor(gone.revision), 'the delete');
      for (const sid of ['s1', 's2', 'none']) assert.deepEqual(cache.taskCounts(sid), scan(cache, sid), sid);
      assert.deepEqual(cache.taskCounts('s1'), { live: 1, running: 1 });
      assert.deepEqual(cache.serviceIdsWithTasks().sort(), ['s1', 's2']);
      const rest = cache.tasksOfService('s2');
      await within(cache.waitFor((await store.commit(rest.map(remove))).revision), 'the last task of s2 deleted');
      assert.deepEqual(cache.serviceIdsWithTasks(), ['s1'], 'a service without tasks left is not listed');
    }));

  it('ends up a consistent copy when it starts while writers commit', () =>
    withStore(async (store, ctl) => {
      await store.commit([create(sampleService('s1'))]);
      // Writers touching several kinds keep the revision moving between the cache's per-kind lists.
      const writer = (async () => {
        for (let i = 0; i < 60; i++) {
          await store.commit([create(sampleNode(`n${i}`)), create(sampleTask(`t${i}`, 's1', `n${i}`))]);
          const svc = await store.get('service', 's1');
          assert.ok(svc);
          await store.commit([update({ ...svc, spec: { ...svc.spec, labels: { i: String(i) } } })]);
        }
      })();
      const cache = await Cache.start(store, { signal: ctl.signal });
      await writer;
      await within(cache.waitFor(await store.revision()), 'the cache to catch up');
      assert.equal(cache.revision, await store.revision());
      await assertMirrors(cache, store);
      assert.equal(cache.tasksOfService('s1').length, 60);
      assert.equal(cache.get('service', 's1')?.spec.labels.i, '59');
    }));

  it('follows commits, and waitFor resolves once a revision is applied', () =>
    withStore(async (store, ctl) => {
      const cache = await Cache.start(store, { signal: ctl.signal });
      assert.equal(cache.revision, 0);
      await cache.waitFor(0); // already there

      const r1 = await store.commit([create(sampleNode('a'))]);
      await within(cache.waitFor(r1.revision), 'revision 1');
      assert.deepEqual(cache.get('node', 'a'), r1.objects[0]);

      // A waiter for a later revision resolves only when that revision lands.
      let resolved = false;
      const later = cache.waitFor(r1.revision + 2).then(() => (resolved = true));
      const r2 = await store.commit([update(r1.objects[0]!)]);
      await within(cache.waitFor(r2.revision), 'revision 2');
      assert.equal(resolved, false, 'waitFor(3) resolved at revision 2');
      await store.commit([{ op: 'delete', kind: 'node', id: 'a', version: 2 }]);
      await within(later, 'revision 3');
      assert.equal(cache.get('node', 'a'), undefined);
      assert.equal(cache.count('node'), 0);
    }));

  it('tells its listeners each change with the value it replaced (prev), which the store does not send', () =>
    withStore(async (store, ctl) => {
      const cache = await Cache.start(store, { signal: ctl.signal });
      const seen: WatchEvent[] = [];
      cache.subscribe((batch) => seen.push(...batch));
      const r1 = await store.commit([create(sampleNode('a'))]);
      const [v1] = r1.objects as [StoredObject];
      const r2 = await store.commit([update(v1)]);
      const [v2] = r2.objects as [StoredObject];
      const r3 = await store.commit([{ op: 'delete', kind: 'node', id: 'a', version: 2 }]);
      await within(cache.waitFor(r3.revision), 'revision 3');
      assert.deepEqual(
        seen.map((e) => [e.type, e.object.meta.version, e.prev?.meta.version]),
        [['put', 1, undefined], ['put', 2, 1], ['delete', 2, 2]],
      );
      assert.deepEqual(seen[1]?.prev, v1);
      assert.deepEqual(seen[2]?.prev, v2);
    }));

  it('waitFor honours its abort signal', () =>
    withStore(async (store, ctl) => {
      const cache = await Cache.start(store, { signal: ctl.signal });
      const aborted = AbortSignal.abort(new Error('gave up'));
      await assert.rejects(cache.waitFor(5, aborted), /gave up/);
      await cache.waitFor(0, aborted); // an applied revision needs no waiting, aborted or not

      const waitCtl = new AbortController();
      const pending = cache.waitFor(5, waitCtl.signal);
      waitCtl.abort(new Error('stopped waiting'));
      await assert.rejects(within(pending, 'the abort'), /stopped waiting/);

      // The aborted waiter is gone: reaching the revision later disturbs nothing.
      for (let i = 0; i < 5; i++) await store.commit([create(sampleNode(`n${i}`))]);
      await within(cache.waitFor(5), 'revision 5');
    }));

  it('fails pending and later waiters once it stops following, but still answers for applied revisions', () =>
    withStore(async (store, ctl) => {
      const cache = await Cache.start(store, { signal: ctl.signal });
      const r = await store.commit([create(sampleNode('a'))]);
      await within(cache.waitFor(r.revision), 'revision 1');
      const pending = cache.waitFor(r.revision + 1);
      ctl.abort();
      const unavailable = (e: unknown): boolean => e instanceof ShoalError && e.code === 'unavailable';
      await assert.rejects(within(pending, 'the stop'), unavailable);
      await assert.rejects(cache.waitFor(r.revision + 1), unavailable);
      await cache.waitFor(r.revision);
    }));

  it('fails waiters when the store closes under it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-cache-'));
    dirs.push(dir);
    const store = SqliteStore.open(join(dir, 'store.db'));
    const ctl = new AbortController();
    try {
      const cache = await Cache.start(store, { signal: ctl.signal });
      const pending = cache.waitFor(1);
      await store.close();
      await assert.rejects(within(pending, 'the close'), (e: unknown) => e instanceof ShoalError && e.code === 'unavailable');
    } finally {
      ctl.abort();
      await store.close();
    }
  });

  it('keeps the task indexes right through moves, assignments and deletes', () =>
    withStore(async (store, ctl) => {
      const base = await store.commit([
        create(sampleNode('a')),
        create(sampleNode('b')),
        create(sampleService('s1')),
        create(sampleService('s2')),
        create(sampleTask('t1', 's1', 'a')),
        create(sampleTask('t2', 's1')),
        create(sampleTask('t3', 's2', 'a', 1)),
      ]);
      const cache = await Cache.start(store, { signal: ctl.signal });
      const task = (id: string): Task => {
        const t = cache.get('task', id);
        assert.ok(t, `task ${id} is cached`);
        return t;
      };
      assert.equal(cache.revision, base.revision);
      assert.deepEqual(ids(cache.tasksOfService('s1')), ['t1', 't2']);
      assert.deepEqual(ids(cache.tasksOfNode('a')), ['t1', 't3']);
      assert.deepEqual(cache.tasksOfNode('b'), []);

      // Move t1 to b and assign t2 to b in one transaction.
      const moved = await store.commit([update({ ...task('t1'), nodeId: 'b' }), update({ ...task('t2'), nodeId: 'b' })]);
      await within(cache.waitFor(moved.revision), 'the move');
      assert.deepEqual(ids(cache.tasksOfNode('a')), ['t3']);
      assert.deepEqual(ids(cache.tasksOfNode('b')), ['t1', 't2']);
      assert.deepEqual(ids(cache.tasksOfService('s1')), ['t1', 't2']);
      // The indexes hold the newest version, not the one first indexed.
      assert.deepEqual(cache.tasksOfNode('b').map((t) => t.meta.version), [2, 2]);
      assert.equal(cache.tasksOfService('s1').find((t) => t.id === 't1')?.nodeId, 'b');

      // Delete t3 (the last task of s2 and of node a) and unassign t2.
      const t3 = task('t3');
      const gone = await store.commit([
        { op: 'delete', kind: 'task', id: 't3', version: t3.meta.version },
        update({ ...task('t2'), nodeId: '' }),
      ]);
      await within(cache.waitFor(gone.revision), 'the delete');
      assert.deepEqual(cache.tasksOfService('s2'), []);
      assert.deepEqual(cache.tasksOfNode('a'), []);
      assert.deepEqual(ids(cache.tasksOfNode('b')), ['t1']);
      assert.deepEqual(ids(cache.tasksOfService('s1')), ['t1', 't2']);
      await assertMirrors(cache, store);
    }));

  it('hands subscribers one batch per transaction, after applying it', () =>
    withStore(async (store, ctl) => {
      const cache = await Cache.start(store, { signal: ctl.signal });
      const batches: WatchEvent[][] = [];
      const seenInCache: boolean[] = [];
      const unsubscribe = cache.subscribe((events) => {
        batches.push(events);
        seenInCache.push(events.every((e) => (e.type === 'put' ? cache.get(e.kind, e.id) !== undefined : cache.get(e.kind, e.id) === undefined)));
      });
      const r1 = await store.commit([create(sampleService('s1')), create(sampleTask('t1', 's1')), create(sampleTask('t2', 's1'))]);
      const r2 = await store.commit([{ op: 'delete', kind: 'task', id: 't2', version: 1 }]);
      await within(cache.waitFor(r2.revision), 'revision 2');
      assert.deepEqual(batches.map((b) => b.map((e) => `${e.revision}:${e.type}:${e.id}`)), [
        [`${r1.revision}:put:s1`, `${r1.revision}:put:t1`, `${r1.revision}:put:t2`],
        [`${r2.revision}:delete:t2`],
      ]);
      assert.deepEqual(seenInCache, [true, true], 'listeners see the cache with their batch applied');

      unsubscribe();
      const r3 = await store.commit([create(sampleNode('a'))]);
      await within(cache.waitFor(r3.revision), 'revision 3');
      assert.equal(batches.length, 2, 'no batches after unsubscribe');
    }));

  it('keeps one spec object for the tasks of one service version, equal to what the store holds', () =>
    withStore(async (store, ctl) => {
      await store.commit([create(sampleService('s1')), create(sampleTask('t1', 's1')), create(sampleTask('t2', 's1'))]);
      const cache = await Cache.start(store, { signal: ctl.signal });
      const r = await store.commit([create(sampleTask('t3', 's1')), create({ ...sampleTask('t4', 's1'), serviceVersion: 99 })]);
      await cache.waitFor(r.revision);
      const [t1, t2, t3, t4] = ['t1', 't2', 't3', 't4'].map((id) => cache.get('task', id));
      assert.ok(t1 && t2 && t3 && t4);
      assert.equal(t1.spec, t2.spec, 'loaded tasks share');
      assert.equal(t1.spec, t3.spec, 'a task that arrives by the watch shares too');
      assert.notEqual(t1.spec, t4.spec, 'another service version has its own');
      await assertMirrors(cache, store);
    }));
});
