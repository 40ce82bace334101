// Example tests of schedule(): filters and their explanations, constraints, pinned tasks, spread ranking, determinism.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node, Task } from '../core/index.js';
import { schedule } from './schedule.js';
import type { Plan } from './schedule.js';
import { CPU, GiB, MiB, makeNode, makeTask, makeTasks } from './testing.js';
import type { TaskOptions } from './testing.js';

/** Node id of each assigned task. */
const placement = (plan: Plan): Record<string, string> => Object.fromEntries(plan.assignments.map((a) => [a.taskId, a.nodeId]));

/** How many of the plan's assignments went to each node. */
const perNode = (plan: Plan): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const a of plan.assignments) out[a.nodeId] = (out[a.nodeId] ?? 0) + 1;
  return out;
};

/** A task already running on `nodeId`. */
const placedTask = (id: string, nodeId: string, opts: TaskOptions = {}): Task =>
  makeTask(id, { state: 'running', ...opts, nodeId });

describe('schedule: basics', () => {
  it('places every task when the cluster has room, in the order of pending', () => {
    const plan = schedule({ nodes: [makeNode('n1'), makeNode('n2')], placed: [], pending: makeTasks(3) });
    assert.deepEqual(
      plan.assignments.map((a) => a.taskId),
      ['svc.1', 'svc.2', 'svc.3'],
    );
    assert.deepEqual(plan.unplaced, []);
  });

  it('explains an empty cluster', () => {
    const plan = schedule({ nodes: [], placed: [], pending: [makeTask('t1')] });
    assert.deepEqual(plan.unplaced, [{ taskId: 't1', reason: 'no suitable node (no nodes in the cluster)' }]);
  });

  it('returns an empty plan for an empty batch', () => {
    assert.deepEqual(schedule({ nodes: [makeNode('n1')], placed: [], pending: [] }), { assignments: [], unplaced: [] });
  });

  it('reports unplaced tasks in the order of pending, interleaved with placed ones', () => {
    const nodes = [makeNode('n1', { labels: { zone: 'eu' } })];
    const pending = [
      makeTask('a', { serviceId: 'web' }),
      makeTask('b', { serviceId: 'db', constraints: ['node.labels.zone==us'] }),
      makeTask('c', { serviceId: 'web', slot: 2 }),
      makeTask('d', { serviceId: 'db', slot: 2, constraints: ['node.labels.zone==us'] }),
    ];
    const plan = schedule({ nodes, placed: [], pending });
    assert.deepEqual(
      plan.assignments.map((a) => a.taskId),
      ['a', 'c'],
    );
    assert.deepEqual(
      plan.unplaced.map((u) => u.taskId),
      ['b', 'd'],
    );
  });
});

describe('schedule: explanations', () => {
  it('says per filter how many nodes failed, biggest count first', () => {
    const nodes = [
      makeNode('eu1', { labels: { zone: 'eu' }, memoryBytes: GiB }),
      makeNode('eu2', { labels: { zone: 'eu' }, memoryBytes: GiB }),
      makeNode('eu3', { labels: { zone: 'eu' }, memoryBytes: GiB }),
      makeNode('us1', { labels: { zone: 'us' } }),
      makeNode('us2', { labels: { zone: 'us' } }),
    ];
    const task = makeTask('t1', { memoryBytes: 2 * GiB, constraints: ['node.labels.zone==eu'] });
    const plan = schedule({ nodes, placed: [], pending: [task] });
    assert.deepEqual(plan.assignments, []);
    assert.deepEqual(plan.unplaced, [
      {
        taskId: 't1',
        reason: 'no suitable node (insufficient memory on 3 nodes; constraint node.labels.zone==eu fails on 2 nodes)',
      },
    ]);
  });

  it('names unready, drained and paused nodes, each counted against the first filter it fails', () => {
    const nodes = [
      makeNode('down', { state: 'down', memoryBytes: MiB }),
      makeNode('unknown', { state: 'unknown' }),
      makeNode('gone', { state: 'disconnected' }),
      makeNode('drained1', { availability: 'drain' }),
      makeNode('drained2', { availability: 'drain', labels: { zone: 'eu' } }),
      makeNode('paused', { availability: 'pause' }),
      makeNode('small', { labels: { zone: 'eu' }, nanoCpus: CPU, memoryBytes: MiB }),
    ];
    const task = makeTask('t1', { nanoCpus: 2 * CPU, memoryBytes: GiB, constraints: ['node.labels.zone==eu'] });
    const plan = schedule({ nodes, placed: [], pending: [task] });
    assert.equal(
      plan.unplaced[0]?.reason,
      'no suitable node (3 nodes not ready; 2 nodes drained; 1 node paused; insufficient cpu and memory on 1 node)',
    );
  });

  it('counts a node as not ready before looking at its availability', () => {
    const plan = schedule({ nodes: [makeNode('n1', { state: 'down', availability: 'drain' })], placed: [], pending: [makeTask('t')] });
    assert.equal(plan.unplaced[0]?.reason, 'no suitable node (1 node not ready)');
  });

  it('explains a node filled up by earlier tasks of the same batch', () => {
    const nodes = [makeNode('n1', { nanoCpus: 4 * CPU })];
    const plan = schedule({ nodes, placed: [], pending: makeTasks(3, { nanoCpus: 1.5 * CPU }) });
    assert.deepEqual(placement(plan), { 'svc.1': 'n1', 'svc.2': 'n1' });
    assert.deepEqual(plan.unplaced, [{ taskId: 'svc.3', reason: 'no suitable node (insufficient cpu on 1 node)' }]);
  });

  it('gives every unplaced task of a group the same reason', () => {
    const nodes = [makeNode('n1', { memoryBytes: GiB }), makeNode('n2', { memoryBytes: GiB })];
    const plan = schedule({ nodes, placed: [], pending: makeTasks(5, { memoryBytes: 600 * MiB }) });
    assert.equal(plan.assignments.length, 2);
    assert.deepEqual(
      plan.unplaced.map((u) => u.reason),
      Array(3).fill('no suitable node (insufficient memory on 2 nodes)'),
    );
  });
});

describe('schedule: resources', () => {
  it('counts the reservations of already placed tasks', () => {
    const nodes = [makeNode('n1', { nanoCpus: 4 * CPU, memoryBytes: 4 * GiB }), makeNode('n2', { nanoCpus: 4 * CPU, memoryBytes: 4 * GiB })];
    const placed = [placedTask('old1', 'n1', { serviceId: 'other', nanoCpus: 3 * CPU }), placedTask('old2', 'n2', { serviceId: 'other', memoryBytes: 3 * GiB })];
    const plan = schedule({ nodes, placed, pending: [makeTask('t', { nanoCpus: 2 * CPU, memoryBytes: 2 * GiB })] });
    assert.deepEqual(plan.unplaced, [{ taskId: 't', reason: 'no suitable node (insufficient cpu on 1 node; insufficient memory on 1 node)' }]);
  });

  it('fills a node exactly to its capacity', () => {
    const plan = schedule({ nodes: [makeNode('n1', { nanoCpus: 2 * CPU })], placed: [], pending: makeTasks(2, { nanoCpus: CPU }) });
    assert.equal(plan.assignments.length, 2);
  });

  it('places a task that reserves nothing even on an over-committed node', () => {
    const placed = [placedTask('hog', 'n1', { serviceId: 'hog', nanoCpus: 8 * CPU, memoryBytes: 16 * GiB })];
    const plan = schedule({ nodes: [makeNode('n1')], placed, pending: [makeTask('t')] });
    assert.deepEqual(placement(plan), { t: 'n1' });
  });

  it('ignores placed tasks of nodes that are not in the snapshot', () => {
    const placed = [placedTask('ghost', 'gone', { nanoCpus: 4 * CPU })];
    const plan = schedule({ nodes: [makeNode('n1', { nanoCpus: 4 * CPU })], placed, pending: [makeTask('t', { nanoCpus: 4 * CPU })] });
    assert.deepEqual(placement(plan), { t: 'n1' });
  });

  it('is greedy: an earlier task may take the room a later, bigger one needed', () => {
    const nodes = [makeNode('big', { memoryBytes: 4 * GiB }), makeNode('small', { memoryBytes: GiB })];
    const pending = [makeTask('small-task', { serviceId: 'a', memoryBytes: GiB }), makeTask('big-task', { serviceId: 'b', memoryBytes: 4 * GiB })];
    const plan = schedule({ nodes, placed: [], pending });
    // 'small-task' ties on load and goes to 'big' by id; 'big-task' then no longer fits anywhere.
    assert.deepEqual(placement(plan), { 'small-task': 'big' });
    assert.deepEqual(plan.unplaced, [{ taskId: 'big-task', reason: 'no suitable node (insufficient memory on 2 nodes)' }]);
  });

  it('never over-commits when tasks of one service version carry different reservations', () => {
    // Same service and version but different reservations breaks the grouping precondition; the scheduler
    // must still never over-commit the node.
    const pending = [makeTask('a', { nanoCpus: CPU }), makeTask('b', { nanoCpus: 3 * CPU, slot: 2 }), makeTask('c', { nanoCpus: 3 * CPU, slot: 3 })];
    const plan = schedule({ nodes: [makeNode('n1', { nanoCpus: 4 * CPU })], placed: [], pending });
    assert.deepEqual(placement(plan), { a: 'n1', b: 'n1' });
    assert.deepEqual(plan.unplaced, [{ taskId: 'c', reason: 'no suitable node (insufficient cpu on 1 node)' }]);
  });
});

describe('schedule: constraints', () => {
  const nodes = [
    makeNode('n1', { labels: { zone: 'eu', disk: 'ssd' }, role: 'manager', hostname: 'alpha' }),
    makeNode('n2', { labels: { zone: 'us' }, engineLabels: { os: 'linux' } }),
    makeNode('n3', {}),
  ];
  const where = (constraints: string[]): string[] => {
    const plan = schedule({ nodes, placed: [], pending: makeTasks(3, { constraints }) });
    return [...new Set(plan.assignments.map((a) => a.nodeId))].sort();
  };

  it('== keeps only nodes whose attribute equals the value', () => {
    assert.deepEqual(where(['node.labels.zone==eu']), ['n1']);
    assert.deepEqual(where(['node.role==manager']), ['n1']);
    assert.deepEqual(where(['node.hostname==alpha']), ['n1']);
    assert.deepEqual(where(['node.id==n2']), ['n2']);
    assert.deepEqual(where(['engine.labels.os==linux']), ['n2']);
  });

  it('!= keeps nodes whose attribute differs, including nodes without the label', () => {
    assert.deepEqual(where(['node.labels.zone!=eu']), ['n2', 'n3']);
    assert.deepEqual(where(['node.role!=manager']), ['n2', 'n3']);
  });

  it('all constraints must hold', () => {
    assert.deepEqual(where(['node.labels.zone!=us', 'node.labels.disk==ssd']), ['n1']);
    assert.deepEqual(where(['node.labels.zone!=eu', 'node.labels.zone!=us']), ['n3']);
  });

  it('names the first failing constraint of each node', () => {
    const plan = schedule({ nodes, placed: [], pending: [makeTask('t', { constraints: ['node.labels.zone!=us', 'node.labels.disk==hdd'] })] });
    assert.equal(
      plan.unplaced[0]?.reason,
      'no suitable node (constraint node.labels.disk==hdd fails on 2 nodes; constraint node.labels.zone!=us fails on 1 node)',
    );
  });
});

describe('schedule: pinned (global) tasks', () => {
  it('places a pinned task on its node even when another node is emptier', () => {
    const nodes = [makeNode('n1'), makeNode('n2')];
    const placed = [placedTask('x', 'n2', { serviceId: 'other' }), placedTask('y', 'n2', { serviceId: 'other', slot: 2 })];
    const plan = schedule({ nodes, placed, pending: [makeTask('g', { serviceId: 'glob', slot: 0, nodeId: 'n2' })] });
    assert.deepEqual(placement(plan), { g: 'n2' });
  });

  it('places one task per node for a global service', () => {
    const nodes = ['n1', 'n2', 'n3'].map((id) => makeNode(id));
    const pending = nodes.map((n) => makeTask(`g.${n.id}`, { serviceId: 'glob', slot: 0, nodeId: n.id }));
    const plan = schedule({ nodes, placed: [], pending });
    assert.deepEqual(placement(plan), { 'g.n1': 'n1', 'g.n2': 'n2', 'g.n3': 'n3' });
  });

  it('explains why its node cannot take it, counting only that node', () => {
    const nodes = [makeNode('n1'), makeNode('n2', { memoryBytes: GiB }), makeNode('n3', { state: 'down' })];
    const pending = [
      makeTask('mem', { serviceId: 'g', slot: 0, nodeId: 'n2', memoryBytes: 2 * GiB }),
      makeTask('down', { serviceId: 'g', slot: 0, nodeId: 'n3', memoryBytes: 2 * GiB }),
      makeTask('ghost', { serviceId: 'g', slot: 0, nodeId: 'n9', memoryBytes: 2 * GiB }),
    ];
    const plan = schedule({ nodes, placed: [], pending });
    assert.deepEqual(plan.assignments, []);
    assert.deepEqual(plan.unplaced, [
      { taskId: 'mem', reason: 'no suitable node (insufficient memory on 1 node)' },
      { taskId: 'down', reason: 'no suitable node (1 node not ready)' },
      { taskId: 'ghost', reason: 'no suitable node (task is pinned to node n9, which is not in the cluster)' },
    ]);
  });

  it('honours constraints on the pinned node', () => {
    const nodes = [makeNode('n1', { labels: { zone: 'eu' } })];
    const plan = schedule({ nodes, placed: [], pending: [makeTask('g', { slot: 0, nodeId: 'n1', constraints: ['node.labels.zone==us'] })] });
    assert.deepEqual(plan.unplaced, [{ taskId: 'g', reason: 'no suitable node (constraint node.labels.zone==us fails on 1 node)' }]);
  });

  it('shares capacity with unpinned tasks of the same batch', () => {
    const nodes = [makeNode('n1', { nanoCpus: 2 * CPU })];
    const pending = [makeTask('r', { serviceId: 'rep', nanoCpus: 2 * CPU }), makeTask('g', { serviceId: 'glob', slot: 0, nodeId: 'n1', nanoCpus: CPU })];
    const plan = schedule({ nodes, placed: [], pending });
    assert.deepEqual(placement(plan), { r: 'n1' });
    assert.deepEqual(plan.unplaced, [{ taskId: 'g', reason: 'no suitable node (insufficient cpu on 1 node)' }]);
  });
});

describe('schedule: spreading', () => {
  it('spreads a service over nodes, one task per node before any gets a second', () => {
    const nodes = ['n1', 'n2', 'n3'].map((id) => makeNode(id));
    const plan = schedule({ nodes, placed: [], pending: makeTasks(7) });
    assert.deepEqual(perNode(plan), { n1: 3, n2: 2, n3: 2 });
  });

  it('counts already placed tasks of the service first, then all tasks on the node', () => {
    const nodes = ['n1', 'n2', 'n3'].map((id) => makeNode(id));
    const placed = [
      placedTask('s1', 'n1'),
      placedTask('s2', 'n1', { slot: 2 }),
      placedTask('o1', 'n2', { serviceId: 'other' }),
      placedTask('o2', 'n2', { serviceId: 'other', slot: 2 }),
      placedTask('o3', 'n2', { serviceId: 'other', slot: 3 }),
    ];
    // n2 and n3 have no task of svc; n3 is emptier so it goes first, then n2, then n3 again (svc 1 each, n3 has fewer
    // tasks), then n2; then all three hold 2 of svc, n1 and n3 hold the fewest tasks, and n1 wins on id.
    const plan = schedule({ nodes, placed, pending: makeTasks(5, { idPrefix: 'new.' }) });
    assert.deepEqual(
      plan.assignments.map((a) => a.nodeId),
      ['n3', 'n2', 'n3', 'n2', 'n1'],
    );
  });

  it('spreads two versions of one service as one service', () => {
    const nodes = [makeNode('n1'), makeNode('n2')];
    const placed = [placedTask('v1', 'n1', { serviceVersion: 1 })];
    const plan = schedule({ nodes, placed, pending: [makeTask('v2', { serviceVersion: 2, slot: 2 })] });
    assert.deepEqual(placement(plan), { v2: 'n2' });
  });

  it('spreads over the values of a node label first, then over the nodes of each value', () => {
    const nodes = [
      makeNode('a1', { labels: { zone: 'a' } }),
      makeNode('a2', { labels: { zone: 'a' } }),
      makeNode('a3', { labels: { zone: 'a' } }),
      makeNode('b1', { labels: { zone: 'b' } }),
    ];
    const prefs = { preferences: ['node.labels.zone'] };
    assert.deepEqual(perNode(schedule({ nodes, placed: [], pending: makeTasks(4, prefs) })), { a1: 1, a2: 1, b1: 2 });
    // Without the preference every node gets one.
    assert.deepEqual(perNode(schedule({ nodes, placed: [], pending: makeTasks(4) })), { a1: 1, a2: 1, a3: 1, b1: 1 });
  });

  it('treats nodes without the label as one more group, after the valued ones on a tie', () => {
    const nodes = [makeNode('x1'), makeNode('x2'), makeNode('a1', { labels: { zone: 'a' } }), makeNode('b1', { labels: { zone: 'b' } })];
    const plan = schedule({ nodes, placed: [], pending: makeTasks(6, { preferences: ['node.labels.zone'] }) });
    assert.deepEqual(
      plan.assignments.map((a) => a.nodeId),
      ['a1', 'b1', 'x1', 'a1', 'b1', 'x2'],
    );
  });

  it('counts placed tasks of the service toward their group, even on nodes that cannot take more', () => {
    const nodes = [
      makeNode('a1', { labels: { zone: 'a' }, state: 'down' }),
      makeNode('a2', { labels: { zone: 'a' } }),
      makeNode('b1', { labels: { zone: 'b' } }),
    ];
    const placed = [placedTask('old1', 'a1'), placedTask('old2', 'a1', { slot: 2 })];
    const plan = schedule({ nodes, placed, pending: makeTasks(3, { idPrefix: 'new.', preferences: ['node.labels.zone'] }) });
    // Zone a holds 2 already: b gets two before a gets its third.
    assert.deepEqual(
      plan.assignments.map((a) => a.nodeId),
      ['b1', 'b1', 'a2'],
    );
  });

  it('nests preferences in order', () => {
    const nodes = [
      makeNode('eu-r1-a', { labels: { zone: 'eu', rack: 'r1' } }),
      makeNode('eu-r1-b', { labels: { zone: 'eu', rack: 'r1' } }),
      makeNode('eu-r2-a', { labels: { zone: 'eu', rack: 'r2' } }),
      makeNode('us-r1-a', { labels: { zone: 'us', rack: 'r1' } }),
    ];
    const plan = schedule({ nodes, placed: [], pending: makeTasks(4, { preferences: ['node.labels.zone', 'node.labels.rack'] }) });
    assert.deepEqual(
      plan.assignments.map((a) => a.nodeId),
      ['eu-r1-a', 'us-r1-a', 'eu-r2-a', 'us-r1-a'],
    );
  });

  it('skips a group whose nodes are full and keeps spreading over the rest', () => {
    const nodes = [
      makeNode('a1', { labels: { zone: 'a' }, nanoCpus: CPU }),
      makeNode('b1', { labels: { zone: 'b' }, nanoCpus: 4 * CPU }),
      makeNode('c1', { labels: { zone: 'c' }, nanoCpus: 4 * CPU }),
    ];
    const plan = schedule({ nodes, placed: [], pending: makeTasks(6, { nanoCpus: CPU, preferences: ['node.labels.zone'] }) });
    assert.deepEqual(perNode(plan), { a1: 1, b1: 3, c1: 2 });
    assert.deepEqual(plan.unplaced, []);
  });
});

describe('schedule: determinism', () => {
  const nodes: Node[] = [
    makeNode('n1', { labels: { zone: 'a' } }),
    makeNode('n2', { labels: { zone: 'b' }, memoryBytes: 2 * GiB }),
    makeNode('n3', { labels: { zone: 'a' } }),
    makeNode('n4', { state: 'down' }),
    makeNode('n5', {}),
  ];
  const placed = [placedTask('p1', 'n1'), placedTask('p2', 'n3', { serviceId: 'db', memoryBytes: GiB }), placedTask('p3', 'n2', { serviceId: 'db', memoryBytes: GiB })];
  const pending = [
    ...makeTasks(5, { serviceId: 'web', preferences: ['node.labels.zone'] }),
    ...makeTasks(6, { serviceId: 'db', memoryBytes: 4 * GiB, idPrefix: 'db.new.' }),
  ];

  it('gives the same plan whatever the order of nodes and placed tasks', () => {
    const expected = schedule({ nodes, placed, pending });
    const reversed = schedule({ nodes: [...nodes].reverse(), placed: [...placed].reverse(), pending });
    const rotated = schedule({ nodes: [...nodes.slice(2), ...nodes.slice(0, 2)], placed: [...placed.slice(1), placed[0] as Task], pending });
    assert.deepEqual(reversed, expected);
    assert.deepEqual(rotated, expected);
    assert.ok(expected.assignments.length > 0 && expected.unplaced.length > 0, 'the example exercises both outcomes');
  });

  it('does not modify its input', () => {
    const snapshot = JSON.stringify({ nodes, placed, pending });
    schedule({ nodes, placed, pending });
    assert.equal(JSON.stringify({ nodes, placed, pending }), snapshot);
  });
});
