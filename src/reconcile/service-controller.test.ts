// Tests of the service controller over a real SQLite store and cache: a large service is placed evenly, a service is
// planned again for others' writes and not for its own, a stop-first update goes on without an agent's report when no
// node has the old task, and a failed task is replaced.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Service, Task } from '../core/index.js';
import { systemClock } from '../lib/clock.js';
import { newId } from '../lib/ids.js';
import { silentLogger } from '../lib/logger.js';
import { Cache } from '../store/cache.js';
import { sampleNode, sampleService } from '../store/contract.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { ControllerContext } from './context.js';
import { SchedulingLoop } from './scheduling.js';
import { ServiceController } from './service-controller.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Polls `check` every 20 ms until it returns a value; fails after `ms`. */
const until = async <T>(what: string, check: () => T | undefined, ms = 3000): Promise<T> => {
  for (let waited = 0; waited < ms; waited += 20) {
    const v = check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
};

/**
 * A controller (no periodic resync within a test) over a fresh store holding `service`. Without `nodes` there are none,
 * so tasks stay pending; with them, the scheduling loop places tasks as the controller makes them.
 */
const withController = async (service: Service, body: (ctx: ControllerContext, plans: () => number) => Promise<void>, nodes: string[] = []): Promise<void> => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-services-'));
  dirs.push(dir);
  const store = SqliteStore.open(join(dir, 'store.db'));
  const abort = new AbortController();
  try {
    await store.commit([...nodes.map((id) => ({ op: 'create' as const, object: sampleNode(id) })), { op: 'create', object: service }]);
    const cache = await Cache.start(store, { signal: abort.signal });
    const ctx: ControllerContext = { store, cache, clock: systemClock, logger: silentLogger, newId: () => newId() };
    const placer = nodes.length > 0 ? new SchedulingLoop(ctx) : undefined;
    void placer?.run(abort.signal);
    const controller = new ServiceController(ctx, { resyncMs: 600_000, ...(placer ? { placer } : {}) });
    let plans = 0;
    const reconcile = controller.reconcile.bind(controller);
    controller.reconcile = (key, signal) => {
      plans++;
      return reconcile(key, signal);
    };
    void controller.run(abort.signal);
    await body(ctx, () => plans);
  } finally {
    abort.abort();
    await store.close();
  }
};

describe('ServiceController', () => {
  it('places a large service evenly: it places in pieces, and each piece sees the placements of those before it', () =>
    withController(
      sampleService('big', 700),
      async (ctx) => {
        const tasks = await until('700 tasks assigned', () => {
          const ts = ctx.cache.tasksOfService('big');
          return ts.length === 700 && ts.every((t) => t.status.state === 'assigned') ? ts : undefined;
        }, 10_000);
        const perNode = ['n1', 'n2', 'n3'].map((n) => tasks.filter((t) => t.nodeId === n).length);
        // Pieces of 250 placed without the others' placements would put 84 + 84 + 67 on one node and 83 + 83 + 66 on another.
        assert.ok(Math.max(...perNode) - Math.min(...perNode) <= 1, `spread evenly: ${perNode.join(', ')}`);
        assert.deepEqual([...new Set(tasks.map((t) => t.slot))].length, 700, 'one task per slot');
      },
      ['n1', 'n2', 'n3'],
    ));

  it('plans a service again for writes of others, not for its own', () =>
    withController(sampleService('web', 3), async (ctx, plans) => {
      const tasks = await until('3 tasks', () => (ctx.cache.tasksOfService('web').length === 3 ? ctx.cache.tasksOfService('web') : undefined));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(plans(), 1, 'the tasks it made leave nothing to plan');
      const t = tasks[0] as Task;
      await ctx.store.commit([{ op: 'update', object: { ...t, desiredState: 'shutdown' } }]);
      await until('a second plan', () => (plans() === 2 ? true : undefined));
    }));

  it('replaces a task its node reports failed', () =>
    withController(sampleService('web', 3), async (ctx) => {
      const tasks = await until('3 tasks', () => (ctx.cache.tasksOfService('web').length === 3 ? ctx.cache.tasksOfService('web') : undefined));
      // An agent reports a task failed: the service is planned again and the slot gets a new task.
      const failed = tasks[0] as Task;
      await ctx.store.commit([{ op: 'update', object: { ...failed, status: { ...failed.status, state: 'failed', error: 'exit 1' } } }]);
      const replacement = await until('a replacement', () => ctx.cache.tasksOfService('web').find((t) => t.slot === failed.slot && t.id !== failed.id));
      assert.equal(replacement.desiredState, 'running');
      // It never reached a node (there are none): deleted, not kept as history.
      assert.equal(ctx.cache.get('task', failed.id), undefined);
    }));

  it('starts a stop-first replacement at once when no node has the old task to stop', () =>
    withController(sampleService('api', 1), async (ctx) => {
      const [old] = await until('the first task', () => (ctx.cache.tasksOfService('api').length === 1 ? ctx.cache.tasksOfService('api') : undefined));
      assert.equal(old?.status.state, 'pending', 'no nodes: never placed');
      // An update (what `service update` writes): a new image, stop-first by default.
      const s = ctx.cache.get('service', 'api') as Service;
      const spec = { ...s.spec, task: { ...s.spec.task, container: { ...s.spec.task.container, image: 'shoal-test/busybox:2' } } };
      await ctx.store.commit([{ op: 'update', object: { ...s, spec, previousSpec: s.spec, updateStatus: { state: 'updating', startedAt: new Date().toISOString(), message: 'update in progress' } } }]);
      // The first plan shuts the old task down and prepares the new one; nothing will report the old one stopped, and
      // the next plan starts the new task (the periodic resync is ten minutes away).
      const fresh = await until('the new task desired running', () =>
        ctx.cache.tasksOfService('api').find((t) => t.spec.container.image === 'shoal-test/busybox:2' && t.desiredState === 'running'),
      );
      assert.equal(fresh.slot, old?.slot);
      // The old task never reached a node: deleted, not kept as history.
      assert.equal(ctx.cache.get('task', old?.id ?? ''), undefined);
    }));
});
