// Tests of placement as tasks are made: the service controller with the scheduling loop as its placer, over a real
// SQLite store and cache. Tasks are created already assigned, placements not yet written count against their node,
// and what cannot be placed is left to the scheduling loop with its reason.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Service, StoredObject, Task } from '../core/index.js';
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

const CPU = 1e9;

/** A service whose tasks each reserve `nanoCpus`. */
const service = (id: string, replicas: number, nanoCpus = 0): Service => {
  const s = sampleService(id, replicas);
  return { ...s, spec: { ...s.spec, task: { ...s.spec.task, resources: { ...s.spec.task.resources, reservations: { nanoCpus, memoryBytes: 0 } } } } };
};

/** Runs the controller and the loop (the loop as the controller's placer) over a fresh store holding `objects`. */
const withControllers = async (objects: StoredObject[], body: (ctx: ControllerContext, done: (n: number) => Promise<Task[]>) => Promise<void>): Promise<void> => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-placing-'));
  dirs.push(dir);
  const store = SqliteStore.open(join(dir, 'store.db'));
  const ctl = new AbortController();
  try {
    await store.commit(objects.map((object) => ({ op: 'create', object })));
    const cache = await Cache.start(store, { signal: ctl.signal });
    const ctx: ControllerContext = { store, cache, clock: systemClock, logger: silentLogger, newId: () => newId() };
    const scheduling = new SchedulingLoop(ctx);
    const services = new ServiceController(ctx, { placer: scheduling });
    void scheduling.run(ctl.signal);
    void services.run(ctl.signal);
    /** The tasks once there are `n` of them and none is pending without a reason (bounded wait). */
    const done = async (n: number): Promise<Task[]> => {
      for (let i = 0; i < 200; i++) {
        const tasks = cache.list('task');
        if (tasks.length === n && tasks.every((t) => t.status.state !== 'pending' || (t.schedulingMessage ?? '') !== '')) return tasks;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`timed out waiting for ${n} settled tasks; have ${cache.list('task').length}`);
    };
    await body(ctx, done);
  } finally {
    ctl.abort();
    await store.close();
  }
};

const perNode = (tasks: Task[]): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const t of tasks) if (t.nodeId) counts[t.nodeId] = (counts[t.nodeId] ?? 0) + 1;
  return counts;
};

describe('placement as tasks are made', () => {
  it('creates the tasks of a new service already assigned (one write each), spread over the nodes', () =>
    withControllers([sampleNode('a'), sampleNode('b'), sampleNode('c'), sampleNode('d'), service('web', 8)], async (_ctx, done) => {
      const tasks = await done(8);
      for (const t of tasks) {
        assert.equal(t.status.state, 'assigned', `task ${t.id} is ${t.status.state}`);
        assert.equal(t.meta.version, 1, 'assigned in the write that created it');
        assert.match(t.status.message, /^assigned to [abcd]$/);
      }
      assert.deepEqual(perNode(tasks), { a: 2, b: 2, c: 2, d: 2 });
    }));

  it('counts placements not yet written: services made at once never over-commit a node', () =>
    // Four 1-CPU nodes, four services of one 1-CPU task each, reconciled concurrently: one task per node.
    withControllers(
      [sampleNode('a'), sampleNode('b'), sampleNode('c'), sampleNode('d'), service('s1', 1, CPU), service('s2', 1, CPU), service('s3', 1, CPU), service('s4', 1, CPU)],
      async (_ctx, done) => {
        const tasks = await done(4);
        assert.deepEqual(perNode(tasks), { a: 1, b: 1, c: 1, d: 1 });
        assert.ok(tasks.every((t) => t.status.state === 'assigned'));
      },
    ));

  it('leaves what fits nowhere pending, with the reason the scheduling loop gives', () =>
    withControllers([sampleNode('a'), service('small', 1, CPU), service('big', 1, 2 * CPU)], async (_ctx, done) => {
      const tasks = await done(2);
      const big = tasks.find((t) => t.serviceId === 'big');
      const small = tasks.find((t) => t.serviceId === 'small');
      assert.equal(small?.status.state, 'assigned');
      assert.equal(big?.status.state, 'pending');
      assert.match(big?.schedulingMessage ?? '', /no suitable node \(insufficient/);
    }));
});
