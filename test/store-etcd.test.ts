// The etcd store against real etcd: the shared Store contract on a single member, then what only a cluster shows —
// watches that resume across member crashes, lease takeover and fencing between two managers' stores, a member
// that catches up after a restart, TLS, member status, and bounded failure when etcd is unreachable.

import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import type { Node, Task } from '../src/core/index.js';
import { ShoalError } from '../src/core/index.js';
import { sampleNode, sampleTask, storeContract } from '../src/store/contract.js';
import type { StoreFixture } from '../src/store/contract.js';
import { EtcdStore, openStore, parseStoreUrl } from '../src/store/index.js';
import type { EtcdStoreOptions, Op, Store, Term } from '../src/store/index.js';
import { startEtcd, startProxy, type EtcdCluster } from './etcd.js';
import { eventually, freePort } from './helpers.js';

const TTL_MS = 2_000;

let prefixes = 0;
/** A prefix no other store of this run uses. */
const uniquePrefix = (): string => `/shoal-test-${process.pid}-${++prefixes}/`;

const createNode = (id: string): Op => ({ op: 'create', object: sampleNode(id) });

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof ShoalError, `expected a ShoalError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return true;
};

/** How long `p` takes to settle, and how it settled. */
const timed = async <T>(p: Promise<T>): Promise<{ ms: number; result: PromiseSettledResult<T> }> => {
  const start = Date.now();
  const [result] = await Promise.allSettled([p]);
  return { ms: Date.now() - start, result };
};

/** Commits `ops`, retrying a bounded number of times while etcd is unavailable (an election after a kill). */
const commitRetrying = async (store: Store, ops: Op[]): Promise<number | undefined> => {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      return (await store.commit(ops)).revision;
    } catch (e) {
      if (!(e instanceof ShoalError)) throw e;
      // A create that etcd applied although the reply was lost: it is there, under a revision the watch reports.
      if (e.code === 'already_exists' && attempt > 0) return undefined;
      if (e.code !== 'unavailable') throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`commit kept failing: ${JSON.stringify(ops.map((o) => o.op))}`);
};

let single: EtcdCluster;
let admin: Etcd3;
before(async () => {
  single = await startEtcd();
  admin = new Etcd3({ hosts: single.endpoints });
});
after(async () => {
  admin?.close();
  await single?.close();
});

/** A fresh store on its own prefix of the single-member cluster; reopen and compact act on the current store. */
const etcdFixture = async (): Promise<StoreFixture> => {
  const opts: EtcdStoreOptions = { endpoints: single.endpoints, prefix: uniquePrefix() };
  let current = EtcdStore.open(opts);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = EtcdStore.open(opts);
      return current;
    },
    // etcd's compact(rev) keeps `rev` itself watchable: the contract wants `revision` gone, so compact one later.
    compact: async (revision) => void (await admin.kv.compact({ revision: revision + 1, physical: true })),
    cleanup: async () => {
      await admin.delete().prefix(opts.prefix!);
      await current.close();
    },
  };
};

storeContract('etcd', etcdFixture);

describe('EtcdStore', () => {
  it('refuses malformed transactions and settings before reaching etcd', async () => {
    const store = EtcdStore.open({ endpoints: single.endpoints, prefix: uniquePrefix() });
    try {
      const node = sampleNode('n1');
      const bad: Op[][] = [
        [],
        [createNode('n1'), createNode('n1')],
        [{ op: 'create', object: { ...node, id: '' } }],
        [{ op: 'create', object: { ...node, kind: 'no/de' as 'node' } }],
        [{ op: 'create', object: { ...node, kind: '_leader' as 'node' } }],
        [{ op: 'delete', kind: 'node', id: 'n1', version: undefined as unknown as number }],
        [{ op: 'upsert', object: node } as unknown as Op],
      ];
      const before = await store.revision();
      for (const ops of bad) await assert.rejects(store.commit(ops), isCode('invalid_argument'));
      assert.equal(await store.revision(), before);
    } finally {
      await store.close();
    }
    const settings: EtcdStoreOptions[] = [
      { endpoints: [] },
      { endpoints: ['127.0.0.1:2379'] },
      { endpoints: ['http://a:1', 'https://b:1'] },
      { endpoints: ['http://a:1'], tls: { ca: 'pem' } },
      { endpoints: ['http://a:1'], prefix: '/no-slash' },
      { endpoints: ['http://a:1'], timeoutMs: 0 },
    ];
    for (const opts of settings) assert.throws(() => EtcdStore.open(opts), isCode('invalid_argument'), JSON.stringify(opts));
  });

  it('never takes expected version 0 for a missing object: not_found when absent, conflict when present', async () => {
    const store = EtcdStore.open({ endpoints: single.endpoints, prefix: uniquePrefix() });
    try {
      const unstored = sampleNode('n1'); // meta.version 0
      await assert.rejects(store.commit([{ op: 'update', object: unstored }]), isCode('not_found'));
      await assert.rejects(store.commit([{ op: 'delete', kind: 'node', id: 'n1', version: 0 }]), isCode('not_found'));
      assert.equal(await store.get('node', 'n1'), undefined);
      await store.commit([createNode('n1')]);
      await assert.rejects(store.commit([{ op: 'update', object: unstored }]), isCode('conflict'));
      assert.equal((await store.get('node', 'n1'))?.meta.version, 1);
    } finally {
      await store.close();
    }
  });

  it('sends an interactive commit ahead of background commits already queued', async () => {
    // etcd held back by a proxy: every commit is sent or queued by the time the interactive one comes.
    const proxy = await startProxy(single.endpoints[0]!);
    const prefix = uniquePrefix();
    const store = EtcdStore.open({ endpoints: [proxy.endpoint], prefix });
    try {
      await store.revision(); // connected
      proxy.cut();
      const background = Array.from({ length: 100 }, (_, i) => store.commit([createNode(`bg${i}`)], { background: true }));
      await new Promise((r) => setTimeout(r, 100));
      const pending = store.commit([createNode('api')]);
      await new Promise((r) => setTimeout(r, 100));
      proxy.heal();
      const interactive = await pending;
      const after = (await Promise.all(background)).filter((r) => r.revision > interactive.revision).length;
      // 16 commits are at etcd at once; the interactive one waits only for the first of them to be answered.
      assert.ok(after >= 80, `only ${after} of 100 background commits were written after the interactive one`);
    } finally {
      proxy.heal();
      await store.close();
      await proxy.close();
      await admin.delete().prefix(prefix);
    }
  });

  it('takes maxOpsPerCommit ops in one commit, also through a term, on a default etcd', async () => {
    const prefix = uniquePrefix();
    const store = EtcdStore.open({ endpoints: single.endpoints, prefix });
    const ctl = new AbortController();
    try {
      const term = await store.campaign('a', { ttlMs: TTL_MS, signal: ctl.signal });
      assert.ok(term);
      const ops = (tag: string): Op[] => Array.from({ length: store.maxOpsPerCommit }, (_, i) => createNode(`${tag}${i}`));
      await store.commit(ops('plain'));
      await term.store.commit(ops('fenced'));
      assert.equal((await store.list('node')).items.length, 2 * store.maxOpsPerCommit);
      // Past etcd's own bound (128 without a fence) the refusal says which server flag sets it.
      await assert.rejects(store.commit([...ops('over'), createNode('over-a'), createNode('over-b')]), (e: unknown) =>
        isCode('invalid_argument')(e) && (e as Error).message.includes('--max-txn-ops'));
    } finally {
      ctl.abort();
      await store.close();
      await admin.delete().prefix(prefix); // the leader key too, should the lease outlive the store
    }
  });

  it("ends watches and terms on close, refuses use afterwards; a term store's close does nothing", async () => {
    const prefix = uniquePrefix();
    const store = EtcdStore.open({ endpoints: single.endpoints, prefix });
    const ctl = new AbortController();
    const term = await store.campaign('a', { ttlMs: TTL_MS, signal: ctl.signal });
    assert.ok(term);
    await term.store.close();
    await term.store.commit([createNode('n1')]);
    const it = store.watch({ fromRevision: (await store.revision()) + 1, signal: ctl.signal })[Symbol.asyncIterator]();
    const pending = it.next();
    await store.close();
    assert.equal((await pending).done, true);
    assert.equal(term.ended.aborted, true);
    await store.close(); // idempotent
    await assert.rejects(store.commit([createNode('n2')]), isCode('unavailable'));
    await assert.rejects(term.store.commit([createNode('n2')]), isCode('failed_precondition'));
    await assert.rejects(store.get('node', 'n1'), isCode('unavailable'));
    await assert.rejects(store.campaign('b', { ttlMs: TTL_MS, signal: ctl.signal }), isCode('unavailable'));
    ctl.abort();
    // The closed store left its lease to expire: delete the key now, so the expiry writes nothing during later tests.
    await admin.delete().prefix(prefix);
  });
});

describe('EtcdStore watch', () => {
  it('gives the first watch of its own client the task objects it committed, as written; another client parses its own', async () => {
    const prefix = uniquePrefix();
    const store = EtcdStore.open({ endpoints: single.endpoints, prefix });
    const other = EtcdStore.open({ endpoints: single.endpoints, prefix });
    const ctl = new AbortController();
    const first = async (s: Store, from: number): Promise<Task> => {
      const r = await s.watch({ fromRevision: from, signal: ctl.signal })[Symbol.asyncIterator]().next();
      assert.ok(!r.done);
      return r.value[0]?.object as Task;
    };
    try {
      const from = (await store.revision()) + 1;
      const t = sampleTask('t1', 's1', 'n1');
      await store.commit([{ op: 'create', object: t }]);
      const mine = await first(store, from);
      const theirs = await first(other, from);
      assert.deepEqual(mine, theirs);
      assert.equal(mine.spec, t.spec, 'made from the committed task (its spec is the one committed: nothing was parsed)');
      assert.notEqual(mine, t);
      assert.notEqual(theirs.spec, t.spec);
      // Taken once: a second watch of the same client parses its own.
      assert.notEqual((await first(store, from)).spec, t.spec);
    } finally {
      ctl.abort();
      await store.close();
      await other.close();
    }
  });

  it('resumes from the last delivered revision when its connection drops in the middle of a catch-up', async () => {
    const prefix = uniquePrefix();
    const writer = EtcdStore.open({ endpoints: single.endpoints, prefix });
    const proxy = await startProxy(single.endpoints[0]!);
    const watcher = EtcdStore.open({ endpoints: [proxy.endpoint], prefix });
    const ctl = new AbortController();
    try {
      // More history than etcd sends at once (1,000 revisions per response, the next one 100 ms later).
      const total = 2_500;
      const from = (await writer.revision()) + 1;
      const ids = Array.from({ length: total }, (_, i) => `n${i}`);
      const committed: number[] = [];
      for (let i = 0; i < total; i += 50) {
        for (const r of await Promise.all(ids.slice(i, i + 50).map((id) => writer.commit([createNode(id)])))) committed.push(r.revision);
      }
      const seen: number[] = [];
      const it = watcher.watch({ fromRevision: from, signal: ctl.signal })[Symbol.asyncIterator]();
      const first = await it.next();
      assert.ok(!first.done);
      seen.push(first.value[0]!.revision);
      proxy.reset(); // etcd3 reconnects by itself, and would resume past the events still owed
      while (seen.length < total) {
        const r = await Promise.race([it.next(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`stuck after ${seen.length} events`)), 10_000))]);
        assert.ok(!r.done);
        seen.push(...r.value.map((e) => e.revision));
      }
      // Other prefixes' writes (a lease of an earlier test expiring) take revisions too: compare with our own.
      assert.deepEqual(seen, committed.sort((x, y) => x - y));
    } finally {
      ctl.abort();
      await Promise.all([writer.close(), watcher.close()]);
      await proxy.close();
    }
  });

  it('delivers each delete with the object as last stored, in order among the puts around it', async () => {
    const prefix = uniquePrefix();
    const store = EtcdStore.open({ endpoints: single.endpoints, prefix });
    const ctl = new AbortController();
    try {
      const from = (await store.revision()) + 1;
      const expected: string[] = [];
      // Rounds of: create 3 nodes, update one, delete two in one commit (their last values are read back), a put after.
      for (let round = 0; round < 20; round++) {
        const ids = [0, 1, 2].map((i) => `r${round}-n${i}`);
        const created = await store.commit(ids.map(createNode));
        expected.push(...ids.map((id) => `${created.revision}:put:${id}:v1`));
        const [a, b] = created.objects as [Node, Node, Node];
        const updated = await store.commit([{ op: 'update', object: { ...a, spec: { ...a.spec, labels: { round: String(round) } } } }]);
        expected.push(`${updated.revision}:put:${a.id}:v2`);
        const removed = await store.commit([
          { op: 'delete', kind: 'node', id: a.id, version: 2 },
          { op: 'delete', kind: 'node', id: b.id, version: 1 },
        ]);
        expected.push(`${removed.revision}:delete:${a.id}:v2`, `${removed.revision}:delete:${b.id}:v1`);
        const later = await store.commit([createNode(`r${round}-after`)]);
        expected.push(`${later.revision}:put:r${round}-after:v1`);
      }
      const seen: string[] = [];
      for await (const batch of store.watch({ fromRevision: from, signal: ctl.signal })) {
        for (const e of batch) {
          seen.push(`${e.revision}:${e.type}:${e.id}:v${e.object.meta.version}`);
          if (e.type === 'delete' && e.object.meta.version === 2) assert.equal((e.object as Node).spec.labels.round, e.id.split('-')[0]?.slice(1));
        }
        if (seen.length >= expected.length) break;
      }
      assert.deepEqual(seen, expected);
    } finally {
      ctl.abort();
      await store.close();
      await admin.delete().prefix(prefix);
    }
  });

  it('pauses a watch whose consumer lags past its queue bound, and resumes it where it stopped', async () => {
    const prefix = uniquePrefix();
    const writer = EtcdStore.open({ endpoints: single.endpoints, prefix });
    // A node's event is about 400 characters: a dozen fill the queue, the first response from etcd overflows it.
    const watcher = EtcdStore.open({ endpoints: single.endpoints, prefix, watchQueueChars: 5_000 });
    const ctl = new AbortController();
    try {
      const from = (await writer.revision()) + 1;
      const committed: number[] = [];
      const commit = async (id: string): Promise<void> => void committed.push((await writer.commit([createNode(id)])).revision);
      for (let i = 0; i < 300; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => commit(`a${i + j}`)));
      const seen: number[] = [];
      const writing = (async () => {
        for (let i = 0; i < 100; i++) await commit(`b${i}`);
      })();
      for await (const batch of watcher.watch({ fromRevision: from, signal: ctl.signal })) {
        seen.push(...batch.map((e) => e.revision));
        if (seen.length % 20 === 0) await new Promise((r) => setTimeout(r, 20));
        if (seen.length >= 400) break;
      }
      await writing;
      assert.deepEqual(seen, committed.sort((x, y) => x - y));
    } finally {
      ctl.abort();
      await Promise.all([writer.close(), watcher.close()]);
    }
  });
});

describe('EtcdStore leadership between two managers (two stores on one prefix)', () => {
  /** Two stores on one fresh prefix, as two managers have; `endpointsA` lets A reach etcd another way. */
  const twoStores = (endpointsA = single.endpoints): { a: EtcdStore; b: EtcdStore; close: () => Promise<void> } => {
    const prefix = uniquePrefix();
    const a = EtcdStore.open({ endpoints: endpointsA, prefix });
    const b = EtcdStore.open({ endpoints: single.endpoints, prefix });
    return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
  };
  const campaign = (store: Store, candidate: string, signal: AbortSignal): Promise<Term | undefined> =>
    store.campaign(candidate, { ttlMs: TTL_MS, signal });
  /** The term `p` resolves to, asserting it comes within `ms`; also how long it took. */
  const wins = async (p: Promise<Term | undefined>, ms: number): Promise<{ term: Term; ms: number }> => {
    const { ms: took, result } = await timed(p);
    assert.equal(result.status, 'fulfilled', result.status === 'rejected' ? String(result.reason) : '');
    const term = (result).value;
    assert.ok(term, 'the campaign ended without winning');
    assert.ok(took <= ms, `won after ${took} ms, more than ${ms} ms`);
    return { term, ms: took };
  };

  it('hands over at once when the leader resigns', async () => {
    const { a, b, close } = twoStores();
    const ctl = new AbortController();
    try {
      const termA = await wins(campaign(a, 'a', ctl.signal), 3_000);
      const pb = campaign(b, 'b', ctl.signal);
      await termA.term.resign();
      assert.equal(termA.term.ended.aborted, true);
      const termB = await wins(pb, 1_000);
      assert.equal(await a.leader(), 'b');
      await termB.term.store.commit([createNode('by-b')]);
    } finally {
      ctl.abort();
      await close();
    }
  });

  it('replaces a leader whose client stopped without resigning once its lease expires; the old term writes nothing', async () => {
    const { a, b, close } = twoStores();
    const ctl = new AbortController();
    try {
      const termA = (await wins(campaign(a, 'a', ctl.signal), 3_000)).term;
      const pb = campaign(b, 'b', ctl.signal);
      await a.close(); // no resign: the lease is left to expire
      assert.equal(termA.ended.aborted, true, 'closing the store ends its term');
      const termB = await wins(pb, TTL_MS + 2_500);
      assert.ok(termB.ms >= TTL_MS / 2, `b won after ${termB.ms} ms, before a's lease could have expired`);
      await assert.rejects(termA.store.commit([createNode('late-a')]), isCode('failed_precondition'));
      await termB.term.store.commit([createNode('by-b')]);
      assert.deepEqual((await b.list('node')).items.map((n) => n.id), ['by-b']);
    } finally {
      ctl.abort();
      await close();
    }
  });

  it('a paused leader writes nothing when it resumes, even before it notices its lease expired (fencing)', async () => {
    const { a, b, close } = twoStores();
    const ctl = new AbortController();
    try {
      const termA = (await wins(campaign(a, 'a', ctl.signal), 3_000)).term;
      const v1 = (await termA.store.commit([createNode('n1')])).objects[0] as Node;
      const pb = campaign(b, 'b', ctl.signal);
      await new Promise((r) => setTimeout(r, 300)); // b is waiting for a's key to go
      // Block this process past the lease (a GC pause, a SIGSTOP): A sends no keepalive and runs no timer,
      // while etcd expires A's lease and deletes its leader key.
      const until = Date.now() + TTL_MS + 1_500;
      while (Date.now() < until) {
        // paused
      }
      assert.equal(termA.ended.aborted, false, 'A has not had a chance to notice yet');
      // A stale update that would also conflict: the fence must be what refuses it.
      const late = termA.store.commit([{ op: 'update', object: { ...v1, meta: { ...v1.meta, version: 9 } } }, createNode('late-a')]);
      await assert.rejects(late, (e: unknown) => isCode('failed_precondition')(e) && /'a'/.test((e as Error).message));
      assert.equal(termA.ended.aborted, true, 'a refused commit ends the term');
      const termB = await wins(pb, TTL_MS + 2_000);
      await termB.term.store.commit([createNode('by-b')]);
      assert.deepEqual((await b.list('node')).items.map((n) => n.id).sort(), ['by-b', 'n1']);
    } finally {
      ctl.abort();
      await close();
    }
  });

  it('a leader cut off from etcd stops acting before its lease expires, and cannot write once healed', async () => {
    const proxy = await startProxy(single.endpoints[0]!);
    const { a, b, close } = twoStores([proxy.endpoint]);
    const ctl = new AbortController();
    try {
      const termA = (await wins(campaign(a, 'a', ctl.signal), 3_000)).term;
      let endedAt = 0;
      let wonAt = 0;
      termA.ended.addEventListener('abort', () => (endedAt = Date.now()));
      const pb = campaign(b, 'b', ctl.signal).then((t) => ((wonAt = Date.now()), t));
      const cutAt = Date.now();
      proxy.cut();
      const termB = await wins(pb, TTL_MS + 2_500);
      assert.ok(endedAt > 0 && endedAt < wonAt, `a's term ended ${endedAt - cutAt} ms after the cut, b won ${wonAt - cutAt} ms after it`);
      assert.ok(endedAt - cutAt <= TTL_MS, `a's term ended ${endedAt - cutAt} ms after the cut`);
      assert.match(String(termA.ended.reason), /etcd has not renewed its lease for \d+ ms/);
      proxy.heal();
      await assert.rejects(termA.store.commit([createNode('late-a')]), isCode('failed_precondition'));
      await termB.term.store.commit([createNode('by-b')]);
      assert.deepEqual((await b.list('node')).items.map((n) => n.id), ['by-b']);
    } finally {
      ctl.abort();
      proxy.heal();
      await close();
      await proxy.close();
    }
  });
  it('keeps a term through event-loop stalls when the keepalives were answered during them', async () => {
    const { a, close } = twoStores();
    const ctl = new AbortController();
    try {
      const termA = (await wins(campaign(a, 'a', ctl.signal), 3_000)).term;
      // Every turn of the loop holds the thread 600 ms (more than a keepalive period, a third of the TTL), as a busy
      // manager does. etcd answers each keepalive while the thread is held; the answer is read in the next turn's I/O
      // phase, which comes after that turn's timers: the lease is renewed, but the watchdog's timer sees it late.
      const until = Date.now() + 3 * TTL_MS;
      while (Date.now() < until && !termA.ended.aborted) {
        await new Promise((r) => setImmediate(r));
        const held = Date.now() + 600;
        while (Date.now() < held) {
          // held up
        }
      }
      assert.equal(termA.ended.aborted, false, String(termA.ended.reason));
      await termA.store.commit([createNode('still-a')]);
    } finally {
      ctl.abort();
      await close();
    }
  });
});

describe('EtcdStore on a three-member cluster', () => {
  let three: EtcdCluster;
  before(async () => {
    three = await startEtcd({ members: 3 });
  });
  after(async () => {
    await three?.close();
  });

  it('a watch follows across member crashes: every revision once, in order', async () => {
    const store = EtcdStore.open({ endpoints: three.endpoints, prefix: uniquePrefix() });
    const ctl = new AbortController();
    const seen: { revision: number; id: string }[] = [];
    let watchError: unknown;
    try {
      const from = (await store.revision()) + 1;
      const watching = (async () => {
        for await (const batch of store.watch({ fromRevision: from, signal: ctl.signal })) {
          for (const e of batch) seen.push({ revision: e.revision, id: e.id });
        }
      })().catch((e: unknown) => (watchError = e));
      const acked: number[] = [];
      let n = 0;
      const commitSome = async (count: number): Promise<void> => {
        for (let i = 0; i < count; i++) {
          const r = await commitRetrying(store, [createNode(`n${n++}`)]);
          if (r !== undefined) acked.push(r);
        }
      };
      // Each member in turn, so the one serving the watch is among them.
      for (const m of three.members) {
        await commitSome(3);
        await m.kill();
        await commitSome(5);
        await m.start();
      }
      await commitSome(3);
      await eventually('the watch to see every commit', () => watchError !== undefined || seen.length >= n, 15_000);
      ctl.abort();
      await watching;
      assert.equal(watchError, undefined, String(watchError));
      assert.deepEqual(seen.map((e) => e.id).sort(), Array.from({ length: n }, (_, i) => `n${i}`).sort(), 'each commit seen once');
      assert.ok(seen.every((e, i) => i === 0 || e.revision > seen[i - 1]!.revision), 'in revision order');
      const revisions = new Set(seen.map((e) => e.revision));
      assert.ok(acked.every((r) => revisions.has(r)), 'every acknowledged revision was delivered');
    } finally {
      ctl.abort();
      await store.close();
    }
  });

  it('keeps committing and reading with a member down; the restarted member catches up', async () => {
    const prefix = uniquePrefix();
    const store = EtcdStore.open({ endpoints: three.endpoints, prefix });
    const victim = three.members[1]!;
    try {
      await commitRetrying(store, [createNode('before')]);
      await victim.kill();
      for (let i = 0; i < 5; i++) await commitRetrying(store, [createNode(`n${i}`)]);
      const n0 = await store.get('node', 'n0');
      assert.ok(n0);
      await commitRetrying(store, [{ op: 'update', object: { ...n0, spec: { ...n0.spec, availability: 'drain' } } }]);
      const latest = await store.list('node');
      assert.equal(latest.items.length, 6);
      await victim.start();
      const alone = EtcdStore.open({ endpoints: [victim.clientUrl], prefix });
      try {
        const read = await alone.list('node');
        assert.deepEqual(read.items, latest.items);
        assert.ok(read.revision >= latest.revision);
        assert.equal((await alone.get('node', 'n0'))?.spec.availability, 'drain');
      } finally {
        await alone.close();
      }
    } finally {
      await store.close();
    }
  });

  it('reports every member healthy with one leader, and a killed member unhealthy with the reason', async () => {
    const store = EtcdStore.open({ endpoints: three.endpoints });
    const victim = three.members[2]!;
    try {
      const status = await store.status();
      assert.equal(status.backend, 'etcd');
      assert.deepEqual(status.members.map((m) => [m.name, m.endpoint]).sort(), three.members.map((m) => [m.name, m.clientUrl]).sort());
      assert.ok(status.members.every((m) => m.healthy), JSON.stringify(status));
      assert.equal(status.members.filter((m) => m.leader).length, 1, JSON.stringify(status));

      await victim.kill();
      const down = await eventually('a status with a leader among the living', async () => {
        const s = await store.status();
        return s.members.filter((m) => m.leader && m.healthy).length === 1 ? s : undefined;
      }, 10_000);
      const dead = down.members.find((m) => m.name === victim.name);
      assert.ok(dead && !dead.healthy && !dead.leader && (dead.error ?? '') !== '', JSON.stringify(down));
      assert.ok(down.members.filter((m) => m.name !== victim.name).every((m) => m.healthy), JSON.stringify(down));
      const { ms } = await timed(store.status());
      assert.ok(ms < 3_000, `status took ${ms} ms with a member down`);
    } finally {
      await victim.start();
      await store.close();
    }
  });
});

describe('EtcdStore over TLS', () => {
  let secure: EtcdCluster;
  before(async () => {
    secure = await startEtcd({ tls: true });
  });
  after(async () => {
    await secure?.close();
  });

  it('commits with the CA and a client certificate; fails unavailable, in bounded time, without them', async () => {
    const config = parseStoreUrl(secure.url);
    assert.equal(config.kind, 'etcd');
    assert.ok(config.kind === 'etcd' && config.endpoints.every((e) => e.startsWith('https://127.0.0.1:')));
    const prefix = uniquePrefix();
    const store = await openStore({ ...config, kind: 'etcd', prefix, tls: secure.tls });
    try {
      const { revision } = await store.commit([createNode('n1')]);
      assert.equal((await store.get('node', 'n1'))?.meta.version, 1);
      assert.equal(await store.revision(), revision);
    } finally {
      await store.close();
    }
    const failures: [string, EtcdStoreOptions][] = [
      ['no CA', { endpoints: secure.endpoints, prefix, timeoutMs: 1_500 }],
      ['no client certificate', { endpoints: secure.endpoints, prefix, timeoutMs: 1_500, tls: { ca: secure.tls!.ca } }],
    ];
    for (const [what, opts] of failures) {
      const s = EtcdStore.open(opts);
      try {
        const { ms, result } = await timed(s.commit([createNode('n2')]));
        assert.equal(result.status, 'rejected', what);
        assert.ok(isCode('unavailable')((result).reason));
        assert.ok(ms < 4_000, `${what}: failed after ${ms} ms`);
        await assert.rejects(openStore({ kind: 'etcd', ...opts }), isCode('unavailable'));
      } finally {
        await s.close();
      }
    }
  });
});

describe('EtcdStore with etcd unreachable', () => {
  const TIMEOUT_MS = 1_000;
  /** Bound on a failing call: its timeout plus scheduling slack. */
  const BOUND_MS = TIMEOUT_MS + 1_500;

  const expectUnavailable = async (what: string, p: Promise<unknown>, endpoint: string): Promise<string> => {
    const { ms, result } = await timed(p);
    assert.equal(result.status, 'rejected', `${what} did not fail`);
    const e = (result).reason as unknown;
    assert.ok(isCode('unavailable')(e));
    assert.ok((e as Error).message.includes(endpoint), `${what}: '${(e as Error).message}' does not name ${endpoint}`);
    assert.ok(ms < BOUND_MS, `${what} failed after ${ms} ms`);
    return (e as Error).message;
  };

  it('fails commits and reads within a bounded time when nothing listens', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const store = EtcdStore.open({ endpoints: [endpoint], timeoutMs: TIMEOUT_MS });
    try {
      await expectUnavailable('commit', store.commit([createNode('n1')]), endpoint);
      await expectUnavailable('get', store.get('node', 'n1'), endpoint);
      await expectUnavailable('list', store.list('node'), endpoint);
      await expectUnavailable('campaign', store.campaign('a', { ttlMs: TTL_MS, signal: new AbortController().signal }), endpoint);
      await expectUnavailable('openStore', openStore({ kind: 'etcd', endpoints: [endpoint], timeoutMs: TIMEOUT_MS }), endpoint);
      const { ms, result } = await timed(store.status());
      assert.ok(result.status === 'fulfilled' && result.value.members.every((m) => !m.healthy && m.error), JSON.stringify(result));
      assert.ok(ms < BOUND_MS, `status took ${ms} ms`);
    } finally {
      await store.close();
    }
  });

  it('reports a commit that got no answer as unavailable, not as done', async () => {
    // Accepts connections and never answers: a member that hangs (or a network that drops everything).
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => void sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    const endpoint = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const store = EtcdStore.open({ endpoints: [endpoint], timeoutMs: TIMEOUT_MS });
    try {
      const message = await expectUnavailable('commit', store.commit([createNode('n1')]), endpoint);
      assert.match(message, /may or may not have been applied/);
    } finally {
      await store.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
