// Tests of cluster events: which watch events make which cluster events (pure), the bounded history over a real
// SQLite store and cache, and the parsing of the `filter`, `since` and `until` query parameters.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Cluster, Node, Service, StoredObject, Task } from '../core/index.js';
import { ShoalError } from '../core/index.js';
import { Cache } from '../store/cache.js';
import { sampleNode, sampleService, sampleTask, within } from '../store/contract.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { WatchEvent } from '../store/store.js';
import { EventLog, clusterEvents, parseEventFilters } from './events.js';
import { parseTimeQuery } from './time-query.js';

const NOW = '2024-06-01T12:00:00.000Z';
const stored = <T extends StoredObject>(o: T, version = 1, updatedAt = '2024-06-01T11:00:00.000Z'): T => ({ ...o, meta: { version, createdAt: o.meta.createdAt, updatedAt } });

const put = (object: StoredObject, prev?: StoredObject): WatchEvent => ({ revision: 7, type: 'put', kind: object.kind, id: object.id, object, ...(prev ? { prev } : {}) });
const del = (object: StoredObject): WatchEvent => ({ revision: 8, type: 'delete', kind: object.kind, id: object.id, object, prev: object });

/** action and attributes of each event, the parts most tests look at. */
const summary = (ev: WatchEvent): { action: string; attributes: Record<string, string> }[] => clusterEvents(ev, NOW).map(({ action, attributes }) => ({ action, attributes }));

describe('clusterEvents', () => {
  const svc = stored(sampleService('web', 3));

  it('tells service create, update (what changed) and remove, with the write time or, for a removal, now', () => {
    const [created] = clusterEvents(put(svc), NOW);
    assert.deepEqual(created, {
      revision: 7,
      time: '2024-06-01T11:00:00.000Z',
      type: 'service',
      action: 'create',
      id: 'web',
      name: 'web',
      attributes: { image: 'shoal-test/busybox', mode: 'replicated', replicas: '3' },
    });
    const scaled: Service = stored({ ...svc, spec: { ...svc.spec, mode: { replicated: { replicas: 5 } } } }, 2);
    assert.deepEqual(summary(put(scaled, svc)), [{ action: 'update', attributes: { replicas: '5', 'replicas.old': '3' } }]);
    const [removed] = clusterEvents(del(scaled), NOW);
    assert.equal(removed?.action, 'remove');
    assert.equal(removed?.time, NOW);
  });

  it("tells a service's update state, and nothing for a write that changes neither spec nor update state", () => {
    const updating: Service = stored({ ...svc, updateStatus: { state: 'updating', startedAt: NOW, message: 'update in progress' } }, 2);
    assert.deepEqual(summary(put(updating, svc)), [{ action: 'update', attributes: { updatestate: 'updating', 'updatestate.old': '', message: 'update in progress' } }]);
    assert.deepEqual(summary(put(stored(svc, 3), svc)), []);
  });

  it('tells task creation, state and desired-state changes with service, slot, node and error', () => {
    const t = stored(sampleTask('t1', 'web', '', 2));
    assert.deepEqual(summary(put(t)), [{ action: 'create', attributes: { service: 'web', serviceId: 'web', slot: '2', state: 'pending', desiredState: 'running' } }]);
    const failed: Task = stored({ ...t, nodeId: 'n1', status: { ...t.status, state: 'failed', error: 'exit code 3', exitCode: 3 } }, 2);
    const [ev] = clusterEvents(put(failed, t), NOW);
    assert.equal(ev?.name, 'web.2');
    assert.equal(ev?.action, 'state');
    assert.deepEqual(ev?.attributes, { service: 'web', serviceId: 'web', slot: '2', node: 'n1', state: 'failed', desiredState: 'running', error: 'exit code 3', exitCode: '3', 'state.old': 'pending' });
    const both: Task = stored({ ...t, desiredState: 'shutdown', status: { ...t.status, state: 'shutdown' } }, 2);
    assert.deepEqual(
      summary(put(both, t)).map((e) => [e.action, e.attributes['desiredState.old'] ?? e.attributes['state.old']]),
      [
        ['desired', 'running'],
        ['state', 'pending'],
      ],
    );
    assert.deepEqual(summary(put(stored({ ...t, status: { ...t.status, message: 'still waiting' } }, 2), t)), [], 'a message alone is no event');
    assert.equal(clusterEvents(del(t), NOW)[0]?.action, 'remove');
  });

  it("names a global service's task by its node", () => {
    const t = stored({ ...sampleTask('t2', 'agent', 'node-a', 0) });
    assert.equal(clusterEvents(put(t), NOW)[0]?.name, 'agent.node-a');
  });

  it('tells node up and down, spec updates, creation and removal, and nothing for a heartbeat', () => {
    const n = stored(sampleNode('n1'));
    assert.deepEqual(summary(put(n)), [{ action: 'create', attributes: { role: 'worker', address: '127.0.0.1:0', availability: 'active', state: 'ready' } }]);
    const beat: Node = stored({ ...n, status: { ...n.status, lastHeartbeat: NOW } }, 2);
    assert.deepEqual(summary(put(beat, n)), []);
    const down: Node = stored({ ...n, status: { state: 'down', message: 'missed 3 heartbeats' } }, 3);
    assert.deepEqual(summary(put(down, n)), [{ action: 'down', attributes: { role: 'worker', address: '127.0.0.1:0', state: 'down', 'state.old': 'ready', message: 'missed 3 heartbeats' } }]);
    assert.equal(clusterEvents(put(n, down), NOW)[0]?.action, 'up');
    const drained: Node = stored({ ...n, spec: { ...n.spec, availability: 'drain', labels: { zone: 'eu' } } }, 4);
    assert.deepEqual(summary(put(drained, n)), [
      { action: 'update', attributes: { role: 'worker', address: '127.0.0.1:0', availability: 'drain', 'availability.old': 'active', labels: '{"zone":"eu"}', 'labels.old': '{}' } },
    ]);
    assert.equal(clusterEvents(del(n), NOW)[0]?.name, 'n1');
  });

  it('makes no event of the cluster object', () => {
    const cluster: Cluster = {
      kind: 'cluster',
      id: 'c',
      meta: { version: 1, createdAt: NOW, updatedAt: NOW },
      spec: { name: 'c', heartbeatPeriodMs: 500, taskHistoryLimit: 5 },
      auth: { adminTokenDigests: [], joinSecrets: { worker: '', manager: '' }, removedNodeIds: [] },
    };
    assert.deepEqual(clusterEvents(put(cluster), NOW), []);
  });
});

describe('EventLog', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('keeps the last events of the store it follows, and says from when its history is complete', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-events-'));
    dirs.push(dir);
    const store = SqliteStore.open(join(dir, 'store.db'));
    const ctl = new AbortController();
    try {
      const cache = await Cache.start(store, { signal: ctl.signal });
      let now = Date.parse('2024-06-01T10:00:00.000Z');
      const log = new EventLog(cache, { now: () => now }, 3);
      const seen: string[] = [];
      const unsubscribe = log.subscribe((e) => seen.push(`${e.type} ${e.action}`));
      assert.equal(log.historyStart(), '2024-06-01T10:00:00.000Z');
      now += 60_000;
      const commit = async (o: StoredObject): Promise<StoredObject> => {
        const r = await store.commit([o.meta.version === 0 ? { op: 'create', object: o } : { op: 'update', object: o }]);
        await within(cache.waitFor(r.revision), 'the cache to apply the commit');
        return r.objects[0] as StoredObject;
      };
      const s = (await commit(sampleService('web', 1))) as Service;
      await commit({ ...s, spec: { ...s.spec, mode: { replicated: { replicas: 2 } } } });
      await commit(sampleTask('t1', 'web'));
      assert.equal(log.historyStart(), '2024-06-01T10:00:00.000Z', 'nothing dropped yet');
      unsubscribe();
      await commit(sampleNode('n1'));
      assert.deepEqual(seen, ['service create', 'service update', 'task create']);
      assert.deepEqual(
        log.history().map((e) => `${e.type} ${e.action}`),
        ['service update', 'task create', 'node create'],
      );
      assert.equal(log.historyStart(), log.history()[0]?.time, 'once events were dropped, the history starts at the oldest kept');
    } finally {
      ctl.abort();
      await store.close();
    }
  });
});

describe('event query parameters', () => {
  it('parses type filters and refuses others', () => {
    assert.deepEqual([...parseEventFilters(['type=service', 'type=node', 'type=service'])], ['service', 'node']);
    assert.deepEqual([...parseEventFilters([])], []);
    const invalid = (e: unknown): boolean => e instanceof ShoalError && e.code === 'invalid_argument';
    assert.throws(() => parseEventFilters(['name=web']), invalid);
    assert.throws(() => parseEventFilters(['type=container']), invalid);
  });

  it('parses times as RFC 3339, Unix seconds or a duration before now', () => {
    const now = Date.parse(NOW);
    assert.equal(parseTimeQuery(null, now, 'since'), undefined);
    assert.equal(parseTimeQuery('', now, 'since'), undefined);
    assert.equal(parseTimeQuery('2024-06-01T11:00:00Z', now, 'since'), now - 3_600_000);
    assert.equal(parseTimeQuery('2024-06-01T13:00:00+02:00', now, 'since'), now - 3_600_000);
    assert.equal(parseTimeQuery('1717243200', now, 'since'), now);
    assert.equal(parseTimeQuery('1717243200.5', now, 'since'), now + 500);
    assert.equal(parseTimeQuery('10m', now, 'since'), now - 600_000);
    assert.equal(parseTimeQuery('1h30m', now, 'since'), now - 5_400_000);
    const invalid = (e: unknown): boolean => e instanceof ShoalError && e.code === 'invalid_argument' && /since/.test(e.message);
    assert.throws(() => parseTimeQuery('yesterday', now, 'since'), invalid);
    assert.throws(() => parseTimeQuery('10 minutes', now, 'since'), invalid);
    assert.throws(() => parseTimeQuery('2024-13-45T99:00:00Z', now, 'since'), invalid);
  });
});
