// Tests of planService: replicas per slot, scaling, the restart supervisor, node failure, removal and the reaper.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_UPDATE_CONFIG, TASK_STATES, canonicalJson, isLive, isTerminal, sameJson } from '../core/index.js';
import type { DesiredState, Node, RestartPolicy, Service, Task, TaskState, UpdateConfig, UpdateStatus } from '../core/index.js';
import { makeNode } from '../scheduler/testing.js';
import { planService } from './service-plan.js';
import type { ServicePlan, ServicePlanInput } from './service-plan.js';

const NOW = Date.parse('2024-06-01T12:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

const NODES: ReadonlyMap<string, Node> = new Map(
  [
    makeNode('n1'),
    makeNode('n2'),
    makeNode('down', { state: 'down' }),
    makeNode('drained', { availability: 'drain' }),
    makeNode('paused', { availability: 'pause' }),
  ].map((n) => [n.id, n]),
);

const makeService = (opts: { replicas?: number; restart?: Partial<RestartPolicy>; version?: number } = {}): Service => ({
  kind: 'service',
  id: 'svc',
  meta: { version: opts.version ?? 3, createdAt: iso(0), updatedAt: iso(0) },
  spec: {
    name: 'web',
    labels: {},
    mode: { replicated: { replicas: opts.replicas ?? 1 } },
    task: {
      container: { image: 'busybox', command: [], env: [], labels: {}, stopGracePeriodMs: 1000 },
      resources: { reservations: { nanoCpus: 0, memoryBytes: 0 }, limits: { nanoCpus: 0, memoryBytes: 0 } },
      restartPolicy: { condition: 'any', delayMs: 0, maxAttempts: 0, windowMs: 0, ...opts.restart },
      placement: { constraints: [], preferences: [] },
    },
  },
});

interface TaskOpts {
  slot?: number;
  state?: TaskState;
  desired?: DesiredState;
  nodeId?: string;
  /** Creation time (ms); default one minute before NOW. */
  created?: number;
  /** Time of the last state change (ms), i.e. when a terminal task ended; default one second before NOW. */
  at?: number;
  containerId?: string;
  restartHistory?: number[];
  notBefore?: number;
}

/** A stored task of service 'svc' (version 1), running on n1 unless told otherwise. */
const task = (id: string, o: TaskOpts = {}): Task => {
  const service = makeService();
  return {
    kind: 'task',
    id,
    meta: { version: 2, createdAt: iso(o.created ?? NOW - 60_000), updatedAt: iso(o.at ?? NOW - 1000) },
    serviceId: 'svc',
    serviceName: 'web',
    slot: o.slot ?? 1,
    nodeId: o.nodeId ?? 'n1',
    spec: service.spec.task,
    serviceVersion: 1,
    desiredState: o.desired ?? 'running',
    status: { state: o.state ?? 'running', timestamp: iso(o.at ?? NOW - 1000), message: '', error: '', containerId: o.containerId ?? 'c-' + id },
    restartHistory: o.restartHistory ?? [],
    notBefore: o.notBefore ?? 0,
  };
};

/** planService with test defaults; ids of created tasks are new1, new2, … */
const plan = (input: Partial<ServicePlanInput> & { tasks: Task[] }): ServicePlan => {
  let n = 0;
  return planService({
    serviceId: 'svc',
    service: 'service' in input ? input.service : makeService(),
    nodes: NODES,
    now: NOW,
    historyLimit: 5,
    newId: () => `new${++n}`,
    ...input,
  });
};

/** The task set after the plan is written. */
const apply = (tasks: Task[], p: ServicePlan): Task[] => {
  const deleted = new Set(p.delete.map((t) => t.id));
  const updated = new Map(p.update.map((t) => [t.id, t]));
  return [...tasks.filter((t) => !deleted.has(t.id)).map((t) => updated.get(t.id) ?? t), ...p.create];
};

const ids = (ts: Task[]): string[] => ts.map((t) => t.id).sort();
const desiredOf = (p: ServicePlan): Record<string, DesiredState> => Object.fromEntries(p.update.map((t) => [t.id, t.desiredState]));
const EMPTY: ServicePlan = { create: [], update: [], delete: [] };

describe('planService: replicas and scaling', () => {
  it('creates one pending task per slot, from the current service spec', () => {
    const service = makeService({ replicas: 3, version: 7 });
    const p = plan({ service, tasks: [] });
    assert.deepEqual(
      p.create.map((t) => [t.id, t.slot]),
      [
        ['new1', 1],
        ['new2', 2],
        ['new3', 3],
      ],
    );
    for (const t of p.create) {
      assert.equal(t.desiredState, 'running');
      assert.equal(t.status.state, 'pending');
      assert.equal(t.nodeId, '');
      assert.equal(t.serviceVersion, 7);
      assert.equal(t.serviceName, 'web');
      assert.deepEqual(t.spec, service.spec.task);
      assert.equal(t.meta.createdAt, iso(NOW));
      assert.equal(t.meta.version, 0);
    }
    assert.deepEqual([p.update, p.delete, p.requeueAfterMs], [[], [], undefined]);
  });

  it('writes nothing for a converged service', () => {
    const tasks = [task('a', { slot: 1 }), task('b', { slot: 2, nodeId: 'n2' }), task('c', { slot: 3, state: 'pending', nodeId: '' })];
    assert.deepEqual(plan({ service: makeService({ replicas: 3 }), tasks }), EMPTY);
  });

  it('fills only the slots that have no live task', () => {
    const tasks = [task('a', { slot: 1 }), task('c', { slot: 3 }), task('old2', { slot: 2, state: 'shutdown', desired: 'shutdown' })];
    const p = plan({ service: makeService({ replicas: 3 }), tasks });
    assert.deepEqual(
      p.create.map((t) => t.slot),
      [2],
    );
    assert.deepEqual([p.update, p.delete], [[], []]);
  });

  it('creates nothing for zero replicas', () => {
    assert.deepEqual(plan({ service: makeService({ replicas: 0 }), tasks: [] }), EMPTY);
  });

  it('scales down by shutting down the live tasks of slots beyond the replica count', () => {
    const tasks = [task('a', { slot: 1 }), task('b', { slot: 2 }), task('c', { slot: 3, state: 'starting' })];
    const p = plan({ service: makeService({ replicas: 1 }), tasks });
    assert.deepEqual(desiredOf(p), { b: 'shutdown', c: 'shutdown' });
    assert.deepEqual([p.create, p.delete], [[], []]);
  });

  it('deletes at once a task beyond the replica count that never reached a node', () => {
    const tasks = [task('a', { slot: 1 }), task('b', { slot: 2, state: 'pending', nodeId: '' })];
    const p = plan({ service: makeService({ replicas: 1 }), tasks });
    assert.deepEqual(ids(p.delete), ['b']);
    assert.deepEqual([p.create, p.update], [[], []]);
  });

  it('deletes the stopped tasks of removed slots: no history beyond the replica count', () => {
    const tasks = [task('a', { slot: 1 }), task('b', { slot: 2, state: 'shutdown', desired: 'shutdown' }), task('c', { slot: 3, state: 'failed', desired: 'shutdown' })];
    const p = plan({ service: makeService({ replicas: 1 }), tasks });
    assert.deepEqual(ids(p.delete), ['b', 'c']);
    assert.deepEqual([p.create, p.update], [[], []]);
  });

  it('keeps the best of two live tasks in a slot: running first, then newest', () => {
    const running = task('running', { created: NOW - 5000 });
    const newer = task('newer', { created: NOW - 1000, state: 'pending', nodeId: 'n2' });
    assert.deepEqual(desiredOf(plan({ tasks: [newer, running] })), { newer: 'shutdown' });
    const older = task('older', { created: NOW - 9000 });
    assert.deepEqual(desiredOf(plan({ tasks: [older, running] })), { older: 'shutdown' });
  });
});

describe('planService: restart policy', () => {
  const ENDED = NOW - 1000;
  const failed = (o: TaskOpts = {}): Task => task('old', { state: 'failed', at: ENDED, ...o });

  it('condition any replaces a failed task in the same slot, recording the restart', () => {
    const p = plan({ service: makeService({ replicas: 2 }), tasks: [failed({ slot: 2 }), task('ok', { slot: 1 })] });
    assert.deepEqual(desiredOf(p), { old: 'shutdown' });
    assert.equal(p.create.length, 1);
    const [t] = p.create;
    assert.equal(t?.slot, 2);
    assert.equal(t?.desiredState, 'running');
    assert.deepEqual(t?.restartHistory, [ENDED]);
    assert.equal(p.requeueAfterMs, undefined);
    assert.deepEqual(p.delete, []);
  });

  it('condition any also restarts a task that completed', () => {
    assert.equal(plan({ tasks: [failed({ state: 'complete' })] }).create.length, 1);
  });

  it('condition on-failure restarts failed and rejected tasks but not completed ones', () => {
    const service = makeService({ restart: { condition: 'on-failure' } });
    assert.equal(plan({ service, tasks: [failed()] }).create.length, 1);
    assert.equal(plan({ service, tasks: [failed({ state: 'rejected' })] }).create.length, 1);
    assert.deepEqual(plan({ service, tasks: [failed({ state: 'complete' })] }), EMPTY);
  });

  it('condition none never restarts, and the slot keeps its ended task as the current one', () => {
    const service = makeService({ restart: { condition: 'none' } });
    const tasks = [failed()];
    assert.deepEqual(plan({ service, tasks }), EMPTY);
    assert.equal(isLive(tasks[0] as Task), true, 'the ended task still counts as the slot’s task, so none is created');
  });

  it('with a delay, the replacement waits in desired state ready until notBefore and the key is requeued', () => {
    const service = makeService({ restart: { delayMs: 5000 } });
    const p = plan({ service, tasks: [failed()] });
    const [t] = p.create;
    assert.equal(t?.desiredState, 'ready');
    assert.equal(t?.notBefore, ENDED + 5000);
    assert.equal(p.requeueAfterMs, ENDED + 5000 - NOW);
    assert.deepEqual(desiredOf(p), { old: 'shutdown' });
  });

  it('a delay that has already passed since the task ended starts the replacement at once', () => {
    const service = makeService({ restart: { delayMs: 5000 } });
    const p = plan({ service, tasks: [failed({ at: NOW - 10_000 })] });
    assert.equal(p.create[0]?.desiredState, 'running');
    assert.equal(p.requeueAfterMs, undefined);
  });

  it('a waiting replacement is told to run once notBefore has come, and requeued until then', () => {
    const waiting = (notBefore: number): Task => task('r', { state: 'assigned', desired: 'ready', notBefore });
    const early = plan({ tasks: [waiting(NOW + 2500)] });
    assert.deepEqual([early.create, early.update, early.delete], [[], [], []]);
    assert.equal(early.requeueAfterMs, 2500);
    assert.deepEqual(desiredOf(plan({ tasks: [waiting(NOW)] })), { r: 'running' });
    assert.equal(plan({ tasks: [waiting(NOW - 1)] }).requeueAfterMs, undefined);
  });

  it('a delayed replacement that is not yet on a node is told to run too once due', () => {
    const t = task('r', { state: 'pending', nodeId: '', desired: 'ready', notBefore: NOW - 1 });
    assert.deepEqual(desiredOf(plan({ tasks: [t] })), { r: 'running' });
  });

  it('gives up after maxAttempts restarts within the window', () => {
    const service = makeService({ restart: { maxAttempts: 2, windowMs: 60_000 } });
    const twoRecent = [ENDED - 50_000, ENDED - 40_000];
    assert.deepEqual(plan({ service, tasks: [failed({ restartHistory: twoRecent })] }), EMPTY);
    const oneRecent = [ENDED - 120_000, ENDED - 40_000];
    const p = plan({ service, tasks: [failed({ restartHistory: oneRecent })] });
    assert.equal(p.create.length, 1);
    assert.deepEqual(p.create[0]?.restartHistory, [ENDED - 40_000, ENDED], 'restarts outside the window are forgotten');
  });

  it('counts attempts in the window ending when the task ended, not now', () => {
    const service = makeService({ restart: { maxAttempts: 2, windowMs: 60_000 } });
    const endedLongAgo = NOW - 3_600_000;
    const t = failed({ at: endedLongAgo, restartHistory: [endedLongAgo - 50_000, endedLongAgo - 40_000] });
    assert.deepEqual(plan({ service, tasks: [t] }), EMPTY);
    assert.deepEqual(plan({ service, tasks: [t], now: NOW + 86_400_000 }), EMPTY, 'the decision does not change with time');
  });

  it('a window of 0 counts every restart ever made', () => {
    const history = [1000, 2000];
    assert.deepEqual(plan({ service: makeService({ restart: { maxAttempts: 2 } }), tasks: [failed({ restartHistory: history })] }), EMPTY);
    assert.equal(plan({ service: makeService({ restart: { maxAttempts: 3 } }), tasks: [failed({ restartHistory: history })] }).create.length, 1);
  });

  for (const maxAttempts of [1, 3, 150]) {
    it(`restarts a task that keeps failing exactly ${maxAttempts} time(s) when maxAttempts is ${maxAttempts}`, () => {
      const service = makeService({ restart: { maxAttempts } });
      let now = NOW;
      let tasks = apply([], plan({ service, tasks: [], now }));
      let restarts = 0;
      for (let i = 0; i < maxAttempts + 20; i++) {
        // The slot's live task fails a second after it was made.
        now += 1000;
        tasks = tasks.map((t) => (isLive(t) ? { ...t, nodeId: 'n1', status: { ...t.status, state: 'failed' as const, timestamp: iso(now) } } : t));
        now += 1;
        const p = plan({ service, tasks, now });
        restarts += p.create.length;
        tasks = apply(tasks, p);
      }
      assert.equal(restarts, maxAttempts);
    });
  }

  it('a slot that gave up keeps its ended task, desired running, and stays quiet', () => {
    const service = makeService({ restart: { maxAttempts: 1 } });
    const t = failed({ restartHistory: [NOW - 100_000] });
    assert.deepEqual(plan({ service, tasks: [t] }), EMPTY);
    assert.deepEqual(plan({ service, tasks: [t], now: NOW + 600_000 }), EMPTY);
  });

  it('history of an earlier restart is kept under the history limit, the shut-down task with it', () => {
    const p = plan({ tasks: [failed()], historyLimit: 1 });
    assert.deepEqual(p.delete, []);
    assert.deepEqual(desiredOf(p), { old: 'shutdown' });
  });
});

describe('planService: node failure', () => {
  for (const nodeId of ['down', 'drained', 'gone']) {
    it(`replaces at once, without the restart delay, a task on a ${nodeId === 'gone' ? 'removed' : nodeId} node`, () => {
      const service = makeService({ restart: { delayMs: 60_000 } });
      const t = task('t', { nodeId, restartHistory: [NOW - 5000] });
      const p = plan({ service, tasks: [t] });
      assert.deepEqual(desiredOf(p), { t: 'shutdown' });
      assert.equal(p.create.length, 1);
      const [r] = p.create;
      assert.equal(r?.desiredState, 'running');
      assert.equal(r?.nodeId, '');
      assert.deepEqual(r?.restartHistory, [NOW - 5000], 'a node failure is not a restart of the task');
      assert.equal(p.requeueAfterMs, undefined);
    });
  }

  it('leaves tasks on a paused node and pending tasks alone', () => {
    const tasks = [task('p', { slot: 1, nodeId: 'paused' }), task('q', { slot: 2, state: 'pending', nodeId: '' })];
    assert.deepEqual(plan({ service: makeService({ replicas: 2 }), tasks }), EMPTY);
  });

  it('keeps a replaced task that is still running on a down node until it reports, without counting it as history', () => {
    const stale = task('stale', { nodeId: 'down', desired: 'shutdown' });
    const dead = Array.from({ length: 5 }, (_, i) => task(`d${i}`, { state: 'failed', desired: 'shutdown', created: NOW - 100_000 + i }));
    const p = plan({ tasks: [task('cur', { nodeId: 'n2' }), stale, ...dead] });
    assert.deepEqual(p, EMPTY);
  });
});

describe('planService: removed service', () => {
  it('asks agents to remove containers, and deletes tasks that have none or whose node is gone', () => {
    const tasks = [
      task('running', { nodeId: 'n1' }),
      task('stopped-with-container', { nodeId: 'n2', state: 'shutdown', desired: 'shutdown' }),
      task('already', { nodeId: 'n1', desired: 'remove' }),
      task('no-container', { nodeId: 'n1', state: 'failed', containerId: '' }),
      task('pending', { nodeId: '', state: 'pending' }),
      task('on-down', { nodeId: 'down' }),
      task('on-gone', { nodeId: 'gone' }),
    ];
    const p = plan({ service: undefined, tasks });
    assert.deepEqual(desiredOf(p), { running: 'remove', 'stopped-with-container': 'remove' });
    assert.deepEqual(ids(p.delete), ['no-container', 'on-down', 'on-gone', 'pending']);
    assert.deepEqual(p.create, []);
  });

  it('writes nothing more once every task is being removed', () => {
    const tasks = [task('a', { desired: 'remove' }), task('b', { desired: 'remove', state: 'shutdown' })];
    assert.deepEqual(plan({ service: undefined, tasks }), EMPTY);
  });
});

describe('planService: reaper', () => {
  /** `n` dead tasks in `slot`, oldest first. */
  const dead = (n: number, slot = 1, o: TaskOpts = {}): Task[] =>
    Array.from({ length: n }, (_, i) => task(`s${slot}-d${i}`, { slot, state: i % 2 ? 'failed' : 'shutdown', desired: 'shutdown', created: NOW - 100_000 + i * 1000, ...o }));

  it('keeps the newest historyLimit dead tasks per slot and deletes the older ones', () => {
    const tasks = [task('cur1', { slot: 1 }), task('cur2', { slot: 2 }), ...dead(8, 1), ...dead(3, 2)];
    const p = plan({ service: makeService({ replicas: 2 }), tasks, historyLimit: 5 });
    assert.deepEqual(ids(p.delete), ['s1-d0', 's1-d1', 's1-d2']);
    assert.deepEqual([p.create, p.update], [[], []]);
  });

  it('keeps no history with a limit of 0', () => {
    const p = plan({ tasks: [task('cur'), ...dead(3)], historyLimit: 0 });
    assert.deepEqual(ids(p.delete), ['s1-d0', 's1-d1', 's1-d2']);
  });

  it('deletes dead tasks that never reached a node at once, without counting them', () => {
    // The never-placed tasks are the newest: were they counted, they would push 'kept' out of a history of one.
    const neverPlaced = dead(2, 1, { nodeId: '', state: 'pending', created: NOW - 1000 });
    const kept = task('kept', { state: 'shutdown', desired: 'shutdown', created: NOW - 200_000 });
    const p = plan({ tasks: [task('cur'), ...neverPlaced, kept], historyLimit: 1 });
    assert.deepEqual(ids(p.delete), ['s1-d0', 's1-d1']);
  });

  it('counts dead tasks of a removed node as history', () => {
    const p = plan({ tasks: [task('cur'), ...dead(3, 1, { nodeId: 'gone', state: 'running' })], historyLimit: 2 });
    assert.deepEqual(ids(p.delete), ['s1-d0']);
  });

  it('deletes a task it shuts down in the same plan when it falls beyond the limit', () => {
    // The failed task is replaced (and so becomes history) while the slot already holds a full, newer history.
    const tasks = [task('old', { state: 'failed', created: NOW - 500_000 }), ...dead(2)];
    const p = plan({ tasks, historyLimit: 2 });
    assert.equal(p.create.length, 1);
    assert.deepEqual(ids(p.delete), ['old']);
    assert.deepEqual(p.update, [], 'a deleted task is not also updated');
  });
});

// ---------------------------------------------------------------- properties

const taskArb = fc.record({
  slot: fc.integer({ min: 1, max: 6 }),
  state: fc.constantFrom(...TASK_STATES),
  desired: fc.constantFrom<DesiredState>('ready', 'running', 'shutdown', 'remove'),
  nodeId: fc.constantFrom('', 'n1', 'n2', 'down', 'drained', 'paused', 'gone'),
  created: fc.integer({ min: NOW - 600_000, max: NOW }),
  at: fc.integer({ min: NOW - 600_000, max: NOW }),
  containerId: fc.constantFrom('', 'c'),
  restartHistory: fc.array(fc.integer({ min: NOW - 900_000, max: NOW - 600_000 }), { maxLength: 3 }),
  notBefore: fc.constantFrom(0, NOW - 1000, NOW + 1000),
});

const inputArb = fc.record({
  removed: fc.boolean(),
  replicas: fc.nat(4),
  historyLimit: fc.nat(3),
  restart: fc.record({
    condition: fc.constantFrom('none' as const, 'on-failure' as const, 'any' as const),
    delayMs: fc.constantFrom(0, 5000),
    maxAttempts: fc.nat(3),
    windowMs: fc.constantFrom(0, 60_000, 3_600_000),
  }),
  tasks: fc.array(taskArb, { maxLength: 14 }),
});

/** A task counts against the history limit once it is dead and will not change any more. */
const finished = (t: Task): boolean => !isLive(t) && (isTerminal(t.status.state) || t.nodeId === '' || !NODES.has(t.nodeId));

describe('planService: properties', () => {
  it('converges in one plan: one live task per slot, bounded history, and nothing left to do', () => {
    fc.assert(
      fc.property(inputArb, ({ removed, replicas, historyLimit, restart, tasks: raw }) => {
        const service = removed ? undefined : makeService({ replicas, restart });
        const tasks = raw.map((o, i) => task(`t${i}`, o));
        const p = plan({ service, tasks, historyLimit });
        const after = apply(tasks, p);

        // The plan touches each task at most once.
        const touched = [...p.update, ...p.delete].map((t) => t.id);
        assert.equal(new Set(touched).size, touched.length);

        if (service) {
          for (let slot = 1; slot <= 6; slot++) {
            const inSlot = after.filter((t) => t.slot === slot);
            assert.equal(inSlot.filter(isLive).length, slot <= replicas ? 1 : 0, `live tasks in slot ${slot}`);
            assert.ok(inSlot.filter(finished).length <= (slot <= replicas ? historyLimit : 0), `history of slot ${slot}`);
            assert.ok(inSlot.every((t) => isLive(t) || t.nodeId !== ''), `slot ${slot} keeps a dead task that never had a node`);
          }
        } else {
          for (const t of after) assert.equal(t.desiredState, 'remove');
          assert.equal(p.create.length, 0);
        }

        // Level-triggered: planning again at the same time has nothing left to write, which is what a plan without
        // `again` promises (the controller then skips planning the service again for its own writes' events).
        assert.equal(p.again, undefined);
        const again = plan({ service, tasks: after, historyLimit });
        assert.deepEqual([again.create, again.update, again.delete], [[], [], []]);
      }),
      { numRuns: 200 },
    );
  });

  it('never disturbs a slot whose only live task is healthy', () => {
    fc.assert(
      fc.property(inputArb, ({ replicas, historyLimit, restart, tasks: raw }) => {
        const service = makeService({ replicas, restart });
        const tasks = raw.map((o, i) => task(`t${i}`, o));
        const p = plan({ service, tasks, historyLimit });
        const shutDown = new Set(p.update.filter((t) => !isLive(t)).map((t) => t.id));
        const deleted = new Set(p.delete.map((t) => t.id));
        for (let slot = 1; slot <= replicas; slot++) {
          const live = tasks.filter((t) => t.slot === slot && isLive(t));
          const [t] = live;
          if (live.length !== 1 || !t || isTerminal(t.status.state)) continue;
          if (t.nodeId !== '' && !['n1', 'n2', 'paused'].includes(t.nodeId)) continue;
          assert.ok(!shutDown.has(t.id) && !deleted.has(t.id), `healthy task ${t.id} disturbed`);
          assert.ok(!p.create.some((c) => c.slot === slot), `slot ${slot} got a second task`);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('planService: global services', () => {
  const globalService = (constraints: Service['spec']['task']['placement']['constraints'] = []): Service => {
    const s = makeService();
    return { ...s, spec: { ...s.spec, mode: { global: {} }, task: { ...s.spec.task, placement: { constraints, preferences: [] } } } };
  };

  it('creates one task pinned to each node that is not down, drained or paused', () => {
    const p = plan({ service: globalService(), tasks: [] });
    assert.deepEqual(p.create.map((t) => t.nodeId).sort(), ['n1', 'n2']);
    assert.ok(p.create.every((t) => t.slot === 0 && t.status.state === 'pending' && t.desiredState === 'running'));
  });

  it('honours constraints', () => {
    const p = plan({ service: globalService([{ key: 'node.id', op: '!=', value: 'n2' }]), tasks: [] });
    assert.deepEqual(p.create.map((t) => t.nodeId), ['n1']);
  });

  it('keeps the task of a paused node but does not add one; shuts down tasks of drained and down nodes', () => {
    const tasks = [
      task('a', { slot: 0, nodeId: 'n1' }),
      task('b', { slot: 0, nodeId: 'n2' }),
      task('p', { slot: 0, nodeId: 'paused' }),
      task('d', { slot: 0, nodeId: 'drained' }),
      task('x', { slot: 0, nodeId: 'down' }),
    ];
    const p = plan({ service: globalService(), tasks });
    assert.deepEqual(p.create, []);
    assert.deepEqual(p.update.map((t) => [t.id, t.desiredState]).sort(), [['d', 'shutdown'], ['x', 'shutdown']]);
  });

  it('follows a node that joins', () => {
    const nodes = new Map([...NODES, ['n3', makeNode('n3')]]);
    const p = plan({ service: globalService(), nodes, tasks: [task('a', { slot: 0, nodeId: 'n1' }), task('b', { slot: 0, nodeId: 'n2' })] });
    assert.deepEqual(p.create.map((t) => t.nodeId), ['n3']);
  });

  it('restarts a failed task on the same node, per the restart policy', () => {
    const p = plan({ service: globalService(), tasks: [task('a', { slot: 0, nodeId: 'n1', state: 'failed' }), task('b', { slot: 0, nodeId: 'n2' })] });
    assert.deepEqual(p.create.map((t) => t.nodeId), ['n1']);
    assert.deepEqual(p.update.map((t) => [t.id, t.desiredState]), [['a', 'shutdown']]);
  });
});

describe('planService: rolling updates', () => {
  const STARTED = NOW - 60_000;
  /** A service whose image changed (busybox → busybox:2) and that is updating with `config`. */
  const updating = (config: Partial<UpdateConfig> = {}, opts: { replicas?: number; state?: UpdateStatus['state'] } = {}): Service => {
    const old = makeService({ replicas: opts.replicas ?? 4 });
    const spec = { ...old.spec, task: { ...old.spec.task, container: { ...old.spec.task.container, image: 'busybox:2' } } };
    return {
      ...old,
      spec: { ...spec, updateConfig: { ...DEFAULT_UPDATE_CONFIG, monitorMs: 5000, ...config } },
      previousSpec: old.spec,
      updateStatus: { state: opts.state ?? 'updating', startedAt: iso(STARTED), message: '' },
    };
  };
  /** A task made from the updated spec. */
  const fresh = (service: Service, id: string, o: TaskOpts = {}): Task => ({ ...task(id, o), spec: service.spec.task });
  const olds = (n: number): Task[] => Array.from({ length: n }, (_, i) => task(`o${i + 1}`, { slot: i + 1 }));

  it('stop-first: replaces `parallelism` tasks at a time, the new ones prepared until the old ones have stopped', () => {
    const service = updating({ parallelism: 2 });
    const p = plan({ service, tasks: olds(4) });
    assert.deepEqual(desiredOf(p), { o1: 'shutdown', o2: 'shutdown' });
    assert.deepEqual(p.create.map((t) => [t.slot, t.desiredState, t.spec.container.image]), [[1, 'ready', 'busybox:2'], [2, 'ready', 'busybox:2']]);
    assert.equal(p.service, undefined, 'the update goes on');
    assert.equal(p.again, true, "an update's steps follow one another: its writes plan it again");
    // While the old task still runs, its replacement waits; once it has stopped, the replacement starts.
    const waiting = [task('o1', { slot: 1, desired: 'shutdown' }), { ...fresh(service, 'n1', { slot: 1, state: 'preparing' }), desiredState: 'ready' as const }, ...olds(4).slice(1)];
    assert.equal(desiredOf(plan({ service, tasks: waiting })).n1, undefined);
    const stopped = [task('o1', { slot: 1, desired: 'shutdown', state: 'shutdown' }), ...waiting.slice(1)];
    assert.equal(desiredOf(plan({ service, tasks: stopped })).n1, 'running');
  });

  it('starts the next batch once the new tasks have run for the monitor period, then after the delay', () => {
    const service = updating({ parallelism: 2, delayMs: 10_000 });
    const batch = (at: number): Task[] => [fresh(service, 'n1', { slot: 1, at }), fresh(service, 'n2', { slot: 2, at }), ...olds(4).slice(2)];
    const monitoring = plan({ service, tasks: batch(NOW - 1000) });
    assert.deepEqual(monitoring.create, [], 'the new tasks are still being watched');
    assert.equal(monitoring.requeueAfterMs, 4000);
    const delayed = plan({ service, tasks: batch(NOW - 8000) });
    assert.deepEqual(delayed.create, [], 'settled 3 s ago: the 10 s delay is not over');
    assert.equal(delayed.requeueAfterMs, 7000);
    const next = plan({ service, tasks: batch(NOW - 20_000) });
    assert.deepEqual(next.create.map((t) => t.slot), [3, 4]);
  });

  it('start-first: the new task starts beside the old one, which stops once the new one runs', () => {
    const service = updating({ parallelism: 1, order: 'start-first' }, { replicas: 2 });
    const p = plan({ service, tasks: olds(2) });
    assert.deepEqual(desiredOf(p), {}, 'nothing is stopped first');
    assert.deepEqual(p.create.map((t) => [t.slot, t.desiredState]), [[1, 'running']]);
    const starting = [...olds(2), fresh(service, 'n1', { slot: 1, state: 'starting', created: NOW - 1000 })];
    assert.deepEqual(desiredOf(plan({ service, tasks: starting })), {}, 'both run while the new one starts');
    const running = [...olds(2), fresh(service, 'n1', { slot: 1, state: 'running', created: NOW - 1000 })];
    assert.deepEqual(desiredOf(plan({ service, tasks: running })), { o1: 'shutdown' });
  });

  it('completes once every task runs the new spec and has been watched', () => {
    const service = updating();
    const tasks = [1, 2, 3, 4].map((slot) => fresh(service, `n${slot}`, { slot, at: NOW - 10_000 }));
    const p = plan({ service, tasks });
    assert.equal(p.service?.updateStatus?.state, 'completed');
    assert.equal(p.service?.updateStatus?.completedAt, iso(NOW));
  });

  it('pauses when a new task fails beyond the failure ratio, naming it; continue goes on', () => {
    const tasks = (service: Service): Task[] => [fresh(service, 'n1', { slot: 1, state: 'failed', at: NOW - 1000 }), ...olds(4).slice(1)];
    const paused = plan({ service: updating(), tasks: tasks(updating()) });
    assert.equal(paused.service?.updateStatus?.state, 'paused');
    assert.match(paused.service?.updateStatus?.message ?? '', /update paused: task n1 \(slot 1\) failed/);
    assert.deepEqual(plan({ service: updating({ maxFailureRatio: 0.5 }), tasks: tasks(updating()) }).service, undefined, 'one failure in four is within 50%');
    assert.equal(plan({ service: updating({ failureAction: 'continue' }), tasks: tasks(updating()) }).service, undefined);
  });

  it('rolls back to the previous spec when the failure action says so; a failing rollback pauses', () => {
    const service = updating({ failureAction: 'rollback' });
    const tasks = [fresh(service, 'n1', { slot: 1, state: 'failed', at: NOW - 1000 }), ...olds(4).slice(1)];
    const p = plan({ service, tasks });
    assert.equal(p.service?.updateStatus?.state, 'rollback_started');
    assert.equal(p.service?.spec.task.container.image, 'busybox');
    assert.equal(p.service?.previousSpec?.task.container.image, 'busybox:2');
    // Rolling back, the tasks of the failed spec are the outdated ones: they are replaced by tasks of the old spec.
    const back = p.service;
    assert.ok(back);
    const r = plan({ service: back, now: NOW + 5000, tasks: [...tasks.slice(1), task('n1b', { slot: 1, state: 'failed', at: NOW + 1000 })] });
    assert.equal(r.service?.updateStatus?.state, 'rollback_paused', 'a task of the restored spec failed too');
  });

  it('replaces nothing while paused, but still restarts a failed task with the current spec', () => {
    const service = updating({}, { state: 'paused' });
    const p = plan({ service, tasks: [task('o1', { slot: 1, state: 'failed' }), ...olds(4).slice(1)] });
    assert.deepEqual(p.create.map((t) => [t.slot, t.spec.container.image]), [[1, 'busybox:2']]);
    assert.deepEqual(desiredOf(p), { o1: 'shutdown' });
    assert.equal(p.service, undefined);
  });
});

describe('sameJson (how a task spec is compared with its service\'s template)', () => {
  it('says what comparing canonical JSON says: key order and undefined-valued keys do not matter', () => {
    assert.ok(sameJson({ a: 1, b: [1, { c: 'x', d: undefined }] }, { b: [1, { c: 'x' }], a: 1 }));
    assert.ok(!sameJson({ a: [1, 2] }, { a: [2, 1] }));
    assert.ok(!sameJson({ a: null }, { a: undefined }));
    // A JSON value and the same value with some keys reordered or set to undefined, or another value altogether.
    const json = fc.jsonValue({ maxDepth: 3 });
    fc.assert(
      fc.property(json, json, (a, b) => {
        assert.equal(sameJson(a, b), canonicalJson(a) === canonicalJson(b));
        const copy = JSON.parse(canonicalJson(a)) as unknown;
        assert.ok(sameJson(a, copy));
      }),
    );
  });
});
