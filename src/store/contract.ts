// The Store contract suite: every backend (SQLite now, etcd later) registers these node:test cases unchanged.
//
// Not a `*.test.ts` file on purpose: it only registers tests when a backend's test file calls
// storeContract(), so the unit-test runner must not load it on its own.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Kind, Node, Service, StoredObject, Task } from '../core/index.js';
import { ShoalError } from '../core/index.js';
import type { Op, Store, WatchEvent } from './store.js';

/** One backend instance under test, fresh and empty. */
export interface StoreFixture {
  store: Store;
  /** Closes `store` and opens the same data again (durability); omitted when the backend cannot. */
  reopen?: () => Promise<Store>;
  /**
   * Compacts the backend's history so that a watch from `revision` or below fails and one from `revision + 1`
   * still works (etcd's own compact(rev) keeps `rev`: its fixture passes `revision + 1`). Omitted when the
   * backend cannot compact on demand.
   */
  compact?: (revision: number) => Promise<void>;
  /** Closes whichever store is current and removes its data. */
  cleanup: () => Promise<void>;
}

/** Bound on any single wait for a watch event: a broken watch fails the test instead of hanging it. */
const WAIT_MS = 3_000;

/** `p`, or a failure naming `what` once WAIT_MS have passed. */
export const within = async <T>(p: Promise<T>, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${WAIT_MS} ms`)), WAIT_MS);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
};

const EPOCH = '2024-01-01T00:00:00.000Z';
const unstored = { version: 0, createdAt: EPOCH, updatedAt: EPOCH };

/** A worker node, not yet stored. */
export const sampleNode = (id: string, labels: Record<string, string> = {}): Node => ({
  kind: 'node',
  id,
  meta: { ...unstored },
  spec: { role: 'worker', availability: 'active', labels },
  description: {
    hostname: id,
    address: '127.0.0.1:0',
    runtime: 'sim',
    resources: { nanoCpus: 1e9, memoryBytes: 1024 ** 3 },
    engineLabels: {},
  },
  status: { state: 'ready', message: '' },
});

/** A replicated busybox service, not yet stored. */
export const sampleService = (id: string, replicas = 1): Service => ({
  kind: 'service',
  id,
  meta: { ...unstored },
  spec: {
    name: id,
    labels: {},
    mode: { replicated: { replicas } },
    task: {
      container: { image: 'shoal-test/busybox', command: ['sleep', '3600'], env: [], labels: {}, stopGracePeriodMs: 1000 },
      resources: { reservations: { nanoCpus: 0, memoryBytes: 0 }, limits: { nanoCpus: 0, memoryBytes: 0 } },
      restartPolicy: { condition: 'any', delayMs: 0, maxAttempts: 0, windowMs: 0 },
      placement: { constraints: [], preferences: [] },
    },
  },
});

/** A task of `serviceId` on `nodeId` ('' = unassigned), not yet stored. */
export const sampleTask = (id: string, serviceId: string, nodeId = '', slot = 1): Task => ({
  kind: 'task',
  id,
  meta: { ...unstored },
  serviceId,
  serviceName: serviceId,
  slot,
  nodeId,
  spec: sampleService(serviceId).spec.task,
  serviceVersion: 1,
  desiredState: 'running',
  status: { state: nodeId === '' ? 'pending' : 'assigned', timestamp: EPOCH, message: '', error: '', containerId: '' },
  restartHistory: [],
  notBefore: 0,
});

const create = (object: StoredObject): Op => ({ op: 'create', object });
const update = (object: StoredObject): Op => ({ op: 'update', object });
const remove = (o: StoredObject): Op => ({ op: 'delete', kind: o.kind, id: o.id, version: o.meta.version });

/** The object a one-op commit stored. */
const only = (objects: (StoredObject | undefined)[]): StoredObject => {
  assert.equal(objects.length, 1);
  assert.ok(objects[0], 'the commit returned no object');
  return objects[0];
};

/** Asserts `p` rejects with a ShoalError of `code` whose message names every string in `names`. */
const rejectsWith = async (p: Promise<unknown>, code: string, names: string[] = []): Promise<void> => {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ShoalError, `expected a ShoalError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const n of names) assert.ok(e.message.includes(n), `message '${e.message}' does not name '${n}'`);
    return true;
  });
};

/** A watch that can be read one batch at a time, each read bounded by WAIT_MS. */
class Watch {
  readonly ctl = new AbortController();
  private readonly it: AsyncIterator<WatchEvent[]>;

  constructor(store: Store, fromRevision: number, kinds?: Kind[]) {
    this.it = store.watch({ fromRevision, signal: this.ctl.signal, ...(kinds ? { kinds } : {}) })[Symbol.asyncIterator]();
  }

  /** The next iterator result, or a failure after WAIT_MS. */
  nextResult(): Promise<IteratorResult<WatchEvent[]>> {
    return within(this.it.next(), 'waiting for a watch result');
  }

  async next(): Promise<WatchEvent[]> {
    const r = await this.nextResult();
    assert.ok(!r.done, 'the watch ended early');
    return r.value;
  }

  /** The next `n` batches. */
  async take(n: number): Promise<WatchEvent[][]> {
    const out: WatchEvent[][] = [];
    for (let i = 0; i < n; i++) out.push(await this.next());
    return out;
  }

  stop(): void {
    this.ctl.abort();
  }
}

/** Registers the Store contract for one backend; `open` must return a fresh, empty store each call. */
export function storeContract(name: string, open: () => Promise<StoreFixture>): void {
  /** Runs `body` on a fresh fixture and always cleans up, also closing watches the body left open. */
  const withStore = async (body: (f: StoreFixture, watch: (from: number, kinds?: Kind[]) => Watch) => Promise<void>) => {
    const f = await open();
    const watches: Watch[] = [];
    const watch = (from: number, kinds?: Kind[]): Watch => {
      const w = new Watch(f.store, from, kinds);
      watches.push(w);
      return w;
    };
    try {
      await body(f, watch);
    } finally {
      for (const w of watches) w.stop();
      await f.cleanup();
    }
  };

  describe(`Store contract: ${name}`, () => {
    describe('objects and revisions', () => {
      it('creates at version 1, stamps times, returns what it stored and counts one revision per commit', () =>
        withStore(async ({ store }) => {
          const start = await store.revision();
          const input = sampleNode('n1');
          input.meta.version = 42; // ignored on create
          const r1 = await store.commit([create(input)]);
          assert.equal(r1.revision, start + 1);
          const stored = only(r1.objects);
          assert.equal(stored.meta.version, 1);
          assert.ok(!Number.isNaN(Date.parse(stored.meta.createdAt)), 'createdAt is an ISO time');
          assert.equal(stored.meta.updatedAt, stored.meta.createdAt);
          assert.deepEqual({ ...stored, meta: input.meta }, input, 'everything but meta is stored as given');
          assert.deepEqual(await store.get('node', 'n1'), stored);

          // Several ops in one transaction still make exactly one revision.
          const r2 = await store.commit([create(sampleService('s1')), create(sampleTask('t1', 's1')), create(sampleTask('t2', 's1'))]);
          assert.equal(r2.revision, start + 2);
          assert.equal(r2.objects.length, 3);
          assert.deepEqual(r2.objects.map((o) => o?.id), ['s1', 't1', 't2']);
          assert.equal(await store.revision(), start + 2);

          const tasks = await store.list('task');
          assert.equal(tasks.revision, start + 2);
          assert.deepEqual(tasks.items.map((t) => t.id).sort(), ['t1', 't2']);
          assert.deepEqual((await store.list('node')).items, [stored]);
          assert.deepEqual((await store.list('cluster')).items, []);
          assert.equal(await store.get('node', 'missing'), undefined);
          assert.equal(await store.get('task', 'n1'), undefined, 'objects are keyed by kind and id');
        }));

      it('hands back copies: changing a returned object changes nothing stored', () =>
        withStore(async ({ store }) => {
          const input = sampleNode('n1');
          const stored = only((await store.commit([create(input)])).objects) as Node;
          input.spec.labels.zone = 'changed-input';
          stored.spec.labels.zone = 'changed-result';
          const read = await store.get('node', 'n1');
          assert.ok(read);
          assert.deepEqual(read.spec.labels, {});
          read.spec.labels.zone = 'changed-read';
          assert.deepEqual((await store.get('node', 'n1'))?.spec.labels, {});
        }));

      it('updates with compare-and-set on meta.version and keeps createdAt', () =>
        withStore(async ({ store }) => {
          const v1 = only((await store.commit([create(sampleNode('n1'))])).objects) as Node;
          const change = structuredClone(v1);
          change.spec.availability = 'drain';
          const r = await store.commit([update(change)]);
          const v2 = only(r.objects) as Node;
          assert.equal(v2.meta.version, 2);
          assert.equal(v2.meta.createdAt, v1.meta.createdAt);
          assert.ok(v2.meta.updatedAt >= v1.meta.updatedAt);
          assert.equal(v2.spec.availability, 'drain');
          assert.deepEqual(await store.get('node', 'n1'), v2);

          // Writing from the stale version 1 again is a lost update: refused, naming the object.
          const stale = structuredClone(v1);
          stale.spec.availability = 'pause';
          await rejectsWith(store.commit([update(stale)]), 'conflict', ['node', 'n1']);
          assert.deepEqual(await store.get('node', 'n1'), v2);
          assert.equal(await store.revision(), r.revision, 'a refused commit makes no revision');

          // A version from the future is just as stale.
          await rejectsWith(store.commit([update({ ...v2, meta: { ...v2.meta, version: 7 } })]), 'conflict', ['n1']);
        }));

      it('refuses to create an object that exists, naming it', () =>
        withStore(async ({ store }) => {
          const { revision } = await store.commit([create(sampleService('web'))]);
          await rejectsWith(store.commit([create(sampleService('web'))]), 'already_exists', ['service', 'web']);
          assert.equal(await store.revision(), revision);
          assert.equal((await store.get('service', 'web'))?.meta.version, 1);
        }));

      it('deletes with compare-and-set; deleting or updating a missing object is not_found', () =>
        withStore(async ({ store }) => {
          const v1 = only((await store.commit([create(sampleTask('t1', 's1'))])).objects);
          const v2 = only((await store.commit([update(v1)])).objects);
          await rejectsWith(store.commit([remove(v1)]), 'conflict', ['task', 't1']);
          assert.ok(await store.get('task', 't1'), 'a refused delete leaves the object');

          const r = await store.commit([remove(v2)]);
          assert.deepEqual(r.objects, [undefined]);
          assert.equal(await store.get('task', 't1'), undefined);
          assert.deepEqual((await store.list('task')).items, []);

          await rejectsWith(store.commit([remove(v2)]), 'not_found', ['t1']);
          await rejectsWith(store.commit([update(v2)]), 'not_found', ['t1']);
          assert.equal(await store.revision(), r.revision);

          // The id is free again: a new object starts over at version 1.
          assert.equal(only((await store.commit([create(sampleTask('t1', 's2'))])).objects).meta.version, 1);
        }));

      it('applies a transaction all or nothing: a failing op leaves nothing written and no revision', () =>
        withStore(async ({ store }) => {
          const base = await store.commit([create(sampleNode('n1')), create(sampleService('s1')), create(sampleNode('n2'))]);
          const [n1, s1, n2] = base.objects as [Node, Service, Node];

          const failing: [string, Op[]][] = [
            // The failing op last: everything before it must be undone.
            ['conflict', [create(sampleTask('t1', 's1')), update({ ...n1, spec: { ...n1.spec, availability: 'drain' } }), update({ ...s1, meta: { ...s1.meta, version: 9 } })]],
            ['already_exists', [update({ ...s1, spec: { ...s1.spec, labels: { a: 'b' } } }), remove(n1), create(sampleNode('n2'))]],
            ['not_found', [create(sampleTask('t2', 's1')), remove({ ...n1, id: 'gone' })]],
            // The failing op first: nothing after it may be applied either.
            ['conflict', [update({ ...n1, meta: { ...n1.meta, version: 2 } }), create(sampleTask('t3', 's1'))]],
          ];
          for (const [code, ops] of failing) {
            await rejectsWith(store.commit(ops), code);
            assert.equal(await store.revision(), base.revision, 'no revision for a failed transaction');
            assert.deepEqual(await store.get('node', 'n1'), n1);
            assert.deepEqual(await store.get('node', 'n2'), n2);
            assert.deepEqual(await store.get('service', 's1'), s1);
            assert.deepEqual((await store.list('task')).items, []);
          }

          // The same store still commits, at the next revision.
          const ok = await store.commit([create(sampleTask('t1', 's1')), update(n1)]);
          assert.equal(ok.revision, base.revision + 1);
        }));

      it('lets exactly one of several concurrent writers of one version win', () =>
        withStore(async ({ store }) => {
          const v1 = only((await store.commit([create(sampleService('counter'))])).objects) as Service;
          const writers = Array.from({ length: 8 }, (_, i) =>
            store.commit([update({ ...v1, spec: { ...v1.spec, labels: { writer: String(i) } } })]),
          );
          const results = await Promise.allSettled(writers);
          const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
          assert.equal(won.length, 1, `exactly one writer wins, got ${won.length}`);
          for (const r of results) {
            if (r.status === 'rejected') {
              assert.ok(r.reason instanceof ShoalError && r.reason.code === 'conflict', String(r.reason));
            }
          }
          const final = await store.get('service', 'counter');
          assert.equal(final?.meta.version, 2);
          assert.equal(final?.spec.labels.writer, String(won[0]));
        }));

      it('loses no update when concurrent writers retry on conflict (a CAS counter)', () =>
        withStore(async ({ store }) => {
          await store.commit([create(sampleService('counter'))]);
          const increment = async (): Promise<void> => {
            for (let attempt = 0; attempt < 200; attempt++) {
              const cur = await store.get('service', 'counter');
              assert.ok(cur);
              const n = Number(cur.spec.labels.n ?? '0');
              try {
                await store.commit([update({ ...cur, spec: { ...cur.spec, labels: { n: String(n + 1) } } })]);
                return;
              } catch (e) {
                if (!(e instanceof ShoalError && e.code === 'conflict')) throw e;
              }
            }
            assert.fail('an increment kept conflicting');
          };
          const writers = 6;
          const each = 5;
          await Promise.all(Array.from({ length: writers }, async () => { for (let i = 0; i < each; i++) await increment(); }));
          const final = await store.get('service', 'counter');
          assert.equal(final?.spec.labels.n, String(writers * each));
          assert.equal(final?.meta.version, 1 + writers * each);
        }));
    });

    describe('watch', () => {
      it('replays every transaction from a past revision once, in order, batched per transaction', () =>
        withStore(async ({ store }, watch) => {
          const r1 = await store.commit([create(sampleNode('n1')), create(sampleService('s1'))]);
          const [n1] = r1.objects as [Node];
          const r2 = await store.commit([update({ ...n1, spec: { ...n1.spec, availability: 'pause' } }), create(sampleTask('t1', 's1', 'n1'))]);
          const [n1v2, t1] = r2.objects as [Node, Task];
          const r3 = await store.commit([remove(t1)]);

          const batches = await watch(r1.revision).take(3);
          assert.deepEqual(batches.map((b) => b.map((e) => [e.revision, e.type, e.kind, e.id])), [
            [[r1.revision, 'put', 'node', 'n1'], [r1.revision, 'put', 'service', 's1']],
            [[r2.revision, 'put', 'node', 'n1'], [r2.revision, 'put', 'task', 't1']],
            [[r3.revision, 'delete', 'task', 't1']],
          ]);
          const [created, updated, deleted] = [batches[0]![0]!, batches[1]![0]!, batches[2]![0]!];
          assert.deepEqual(created.object, n1);
          assert.deepEqual(updated.object, n1v2);
          assert.deepEqual(deleted.object, t1, 'a delete carries the object as last stored');
          // Previous values are the cache's to add (see WatchEvent.prev): a store does not log them.
          assert.deepEqual(batches.flat().map((e) => e.prev), [undefined, undefined, undefined, undefined, undefined]);

          // From a later revision: only what follows.
          const later = await watch(r3.revision).next();
          assert.deepEqual(later.map((e) => [e.revision, e.id]), [[r3.revision, 't1']]);
        }));

      it('gives live watchers the same events as a watcher of the history, each watcher objects of its own', () =>
        withStore(async ({ store }, watch) => {
          const [first, second] = [watch(1), watch(1)];
          // Both wait for the first commit: the commits below reach them live.
          const heads = [first.next(), second.next()];
          const t1 = sampleTask('t1', 's1', 'n1');
          const [s1, s2] = (await store.commit([create(t1), create(sampleTask('t2', 's1', 'n1', 2))])).objects as [Task, Task];
          await store.commit([update({ ...s1, status: { ...s1.status, state: 'running' } })]);
          await store.commit([remove(s2), create(sampleNode('n9'))]);
          const live = [[await heads[0]!, ...(await first.take(2))], [await heads[1]!, ...(await second.take(2))]];
          const history = await watch(1).take(3);
          assert.deepEqual(live[0], history);
          assert.deepEqual(live[1], history);
          const created = live[0][0]![0]!.object;
          assert.ok(created !== t1 && created !== live[1][0]![0]!.object, 'a watcher got an object that is not its own');
        }));

      it('delivers live commits after the replay without gaps or repeats', () =>
        withStore(async ({ store }, watch) => {
          const first = await store.commit([create(sampleNode('n0'))]);
          const w = watch(first.revision);
          assert.equal((await w.next())[0]?.id, 'n0');

          // The watcher now waits; commits arrive while it waits and while it is busy.
          const pending = w.next();
          const live = await store.commit([create(sampleNode('n1'))]);
          const got = await pending;
          assert.deepEqual(got.map((e) => [e.revision, e.id]), [[live.revision, 'n1']]);
          const revisions: number[] = [];
          for (let i = 2; i < 6; i++) revisions.push((await store.commit([create(sampleNode(`n${i}`))])).revision);
          const rest = await w.take(4);
          assert.deepEqual(rest.map((b) => b[0]?.revision), revisions);
        }));

      it('a watch from the next revision sees only new commits; from 0 it sees all history', () =>
        withStore(async ({ store }, watch) => {
          const base = await store.revision();
          await store.commit([create(sampleNode('old'))]);
          const w = watch((await store.revision()) + 1);
          const pending = w.next();
          await store.commit([create(sampleNode('new'))]);
          assert.deepEqual((await pending).map((e) => e.id), ['new']);

          if (base === 0) {
            const all = await watch(0).take(2);
            assert.deepEqual(all.map((b) => b[0]?.id), ['old', 'new']);
          }
        }));

      it('follows a long history and a burst of commits while the consumer is slow', () =>
        withStore(async ({ store }, watch) => {
          const start = (await store.revision()) + 1;
          for (let i = 0; i < 150; i++) await store.commit([create(sampleNode(`a${i}`))]);
          const w = watch(start);
          const seen: number[] = [];
          // Consume slowly while 150 more commits land, so the watch must switch between history and live.
          const writer = (async () => {
            for (let i = 0; i < 150; i++) {
              await store.commit([create(sampleNode(`b${i}`))]);
              if (i % 10 === 0) await new Promise((r) => setImmediate(r));
            }
          })();
          while (seen.length < 300) {
            const batch = await w.next();
            assert.equal(batch.length, 1);
            seen.push(batch[0]!.revision);
            if (seen.length % 25 === 0) await new Promise((r) => setTimeout(r, 1));
          }
          await writer;
          assert.deepEqual(seen, Array.from({ length: 300 }, (_, i) => start + i));
        }));

      it('filters by kind: drops other kinds and transactions with none of them', () =>
        withStore(async ({ store }, watch) => {
          const from = (await store.revision()) + 1;
          await store.commit([create(sampleNode('n1'))]);
          const mixed = await store.commit([create(sampleService('s1')), create(sampleTask('t1', 's1')), create(sampleNode('n2'))]);
          await store.commit([create(sampleNode('n3'))]);
          const marker = await store.commit([create(sampleTask('t2', 's1'))]);

          const w = watch(from, ['task']);
          const batches = await w.take(2);
          assert.deepEqual(batches.map((b) => b.map((e) => [e.revision, e.kind, e.id])), [
            [[mixed.revision, 'task', 't1']],
            [[marker.revision, 'task', 't2']],
          ]);

          const two = await watch(from, ['node', 'service']).take(3);
          assert.deepEqual(two.map((b) => b.map((e) => e.id)), [['n1'], ['s1', 'n2'], ['n3']]);

          // Live, too: a node-only commit is skipped, the next task commit arrives.
          const pending = w.next();
          await store.commit([create(sampleNode('n4'))]);
          const live = await store.commit([create(sampleTask('t3', 's1'))]);
          assert.deepEqual((await pending).map((e) => [e.revision, e.id]), [[live.revision, 't3']]);
        }));

      it('serves several watchers independently', () =>
        withStore(async ({ store }, watch) => {
          const from = (await store.revision()) + 1;
          const a = watch(from);
          const b = watch(from);
          for (let i = 0; i < 5; i++) await store.commit([create(sampleNode(`n${i}`))]);
          const ids = (bs: WatchEvent[][]): string[] => bs.map((x) => x[0]!.id);
          assert.deepEqual(ids(await a.take(5)), ['n0', 'n1', 'n2', 'n3', 'n4']);
          b.stop();
          await store.commit([create(sampleNode('n5'))]);
          assert.deepEqual(ids(await a.take(1)), ['n5']);
          assert.equal((await b.nextResult()).done, true, 'a stopped watcher ends');
        }));

      it('ends the iterator when the signal aborts, whether waiting, between reads or before the start', () =>
        withStore(async ({ store }, watch) => {
          const w = watch((await store.revision()) + 1);
          const waiting = w.nextResult();
          w.stop();
          assert.equal((await waiting).done, true, 'a pending read ends on abort');
          assert.equal((await w.nextResult()).done, true);

          const between = watch((await store.revision()) + 1);
          const pending = between.next();
          await store.commit([create(sampleNode('n1'))]);
          await pending;
          between.stop();
          await store.commit([create(sampleNode('n2'))]);
          assert.equal((await between.nextResult()).done, true, 'no event after abort');

          const ctl = new AbortController();
          ctl.abort();
          const events: WatchEvent[][] = [];
          for await (const batch of store.watch({ fromRevision: 1, signal: ctl.signal })) events.push(batch);
          assert.deepEqual(events, []);
        }));

      it('ends the iterator when the consumer breaks out of the loop, and keeps serving others', () =>
        withStore(async ({ store }, watch) => {
          const from = (await store.revision()) + 1;
          await store.commit([create(sampleNode('n1'))]);
          await store.commit([create(sampleNode('n2'))]);
          const ctl = new AbortController();
          let seen = 0;
          for await (const batch of store.watch({ fromRevision: from, signal: ctl.signal })) {
            seen += batch.length;
            break;
          }
          assert.equal(seen, 1);
          assert.equal((await watch(from).take(2)).length, 2);
        }));
    });

    describe('leadership', () => {
      const TTL_MS = 2_000;
      /** Whether `p` settles within `ms` (to show a campaign is still waiting). */
      const settlesWithin = (p: Promise<unknown>, ms: number): Promise<boolean> =>
        new Promise((resolve) => {
          const timer = setTimeout(() => resolve(false), ms);
          void p.then(
            () => (clearTimeout(timer), resolve(true)),
            () => (clearTimeout(timer), resolve(true)),
          );
        });

      it('one leader at a time: a second candidate waits for the first to resign, whose fenced commits then fail', () =>
        withStore(async ({ store }) => {
          const ctlA = new AbortController();
          const ctlB = new AbortController();
          try {
            const a = await within(store.campaign('a', { ttlMs: TTL_MS, signal: ctlA.signal }), 'a campaigning');
            assert.ok(a, 'a did not win an uncontested election');
            assert.equal(await store.leader(), 'a');
            assert.equal(a.ended.aborted, false);
            await a.store.commit([create(sampleNode('by-a'))]);

            const pb = store.campaign('b', { ttlMs: TTL_MS, signal: ctlB.signal });
            assert.equal(await settlesWithin(pb, 300), false, 'b won while a led');

            await a.resign();
            assert.equal(a.ended.aborted, true);
            const b = await within(pb, 'b campaigning after a resigned');
            assert.ok(b);
            assert.equal(await store.leader(), 'b');

            // The deposed leader writes nothing, not even within what would have been its lease.
            const before = await store.revision();
            await rejectsWith(a.store.commit([create(sampleNode('late-a'))]), 'failed_precondition');
            assert.equal(await store.revision(), before);
            assert.equal(await store.get('node', 'late-a'), undefined);

            await b.store.commit([create(sampleNode('by-b'))]);
            ctlB.abort();
            await within(
              (async () => {
                while (!b.ended.aborted || (await store.leader()) !== undefined) await new Promise((r) => setTimeout(r, 20));
              })(),
              'b stepping down on abort',
            );
            await rejectsWith(b.store.commit([create(sampleNode('late-b'))]), 'failed_precondition');
            assert.deepEqual((await store.list('node')).items.map((n) => n.id).sort(), ['by-a', 'by-b']);
          } finally {
            ctlA.abort();
            ctlB.abort();
          }
        }));

      it('a waiting candidate stops when its signal aborts, and the leader keeps leading', () =>
        withStore(async ({ store }) => {
          const ctlA = new AbortController();
          const ctlB = new AbortController();
          try {
            const a = await within(store.campaign('a', { ttlMs: TTL_MS, signal: ctlA.signal }), 'a campaigning');
            assert.ok(a);
            const pb = store.campaign('b', { ttlMs: TTL_MS, signal: ctlB.signal });
            ctlB.abort();
            assert.equal(await within(pb, 'b giving up'), undefined);
            assert.equal(await store.leader(), 'a');
            assert.equal(a.ended.aborted, false);
            await a.store.commit([create(sampleNode('still-a'))]);
          } finally {
            ctlA.abort();
            ctlB.abort();
          }
        }));

      it('reports the health of its members', () =>
        withStore(async ({ store }) => {
          const status = await store.status();
          assert.ok(status.members.length >= 1);
          assert.ok(status.members.every((m) => m.healthy && m.endpoint !== ''), JSON.stringify(status));
          assert.equal(status.members.filter((m) => m.leader).length, 1, JSON.stringify(status));
        }));
    });

    it('keeps objects, revision and history across a reopen', async (t) => {
      const f0 = await open();
      if (!f0.reopen) {
        await f0.cleanup();
        t.skip(`${name} cannot reopen`);
        return;
      }
      await withStoreFixture(f0, async (f) => {
        const reopen = f.reopen!;
        const r1 = await f.store.commit([create(sampleNode('n1')), create(sampleService('s1'))]);
        const r2 = await f.store.commit([update(r1.objects[0]!)]);
        const before = { nodes: await f.store.list('node'), services: await f.store.list('service') };

        const store = await reopen();
        assert.equal(await store.revision(), r2.revision);
        assert.deepEqual(await store.list('node'), before.nodes);
        assert.deepEqual(await store.list('service'), before.services);
        assert.equal((await store.get('node', 'n1'))?.meta.version, 2);

        // CAS still holds against the reopened data, and revisions continue from where they were.
        await rejectsWith(store.commit([update(r1.objects[0]!)]), 'conflict', ['n1']);
        const r3 = await store.commit([remove(r2.objects[0]!)]);
        assert.equal(r3.revision, r2.revision + 1);

        const w = new Watch(store, r1.revision);
        try {
          const batches = await w.take(3);
          assert.deepEqual(batches.map((b) => b.map((e) => `${e.revision}:${e.type}:${e.id}`)), [
            [`${r1.revision}:put:n1`, `${r1.revision}:put:s1`],
            [`${r2.revision}:put:n1`],
            [`${r3.revision}:delete:n1`],
          ]);
        } finally {
          w.stop();
        }
      });
    });

    it('refuses a watch from a compacted revision with failed_precondition', async (t) => {
      const f0 = await open();
      if (!f0.compact) {
        await f0.cleanup();
        t.skip(`${name} cannot compact on demand`);
        return;
      }
      await withStoreFixture(f0, async (f) => {
        const compact = f.compact!;
        const revs: number[] = [];
        for (let i = 0; i < 4; i++) revs.push((await f.store.commit([create(sampleNode(`n${i}`))])).revision);
        const [, second, third] = revs as [number, number, number, number];
        await compact(second);

        for (const from of [1, second]) {
          const w = new Watch(f.store, from);
          try {
            await rejectsWith(w.next(), 'failed_precondition');
          } finally {
            w.stop();
          }
        }
        // Just past the compaction point the history is intact, and live commits follow.
        const w = new Watch(f.store, third);
        try {
          assert.deepEqual((await w.take(2)).map((b) => b[0]?.id), ['n2', 'n3']);
          const pending = w.next();
          await f.store.commit([create(sampleNode('n4'))]);
          assert.deepEqual((await pending).map((e) => e.id), ['n4']);
        } finally {
          w.stop();
        }
        // Compaction drops history, never objects.
        assert.equal((await f.store.list('node')).items.length, 5);
      });
    });
  });
}

/** Runs `body` on an already opened fixture and always cleans it up. */
async function withStoreFixture(f: StoreFixture, body: (f: StoreFixture) => Promise<void>): Promise<void> {
  try {
    await body(f);
  } finally {
    await f.cleanup();
  }
}
