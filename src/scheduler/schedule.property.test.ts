// Property tests of schedule() over random clusters: capacity, eligibility, completeness, explanations, spread, determinism.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { matchConstraint } from '../core/index.js';
import type { Node, NodeAvailability, NodeStatusState, Task } from '../core/index.js';
import { NodeLoads } from './loads.js';
import { schedule } from './schedule.js';
import type { Plan, ScheduleInput } from './schedule.js';
import { CPU, GiB, makeNode, makeTask } from './testing.js';

const RUNS = 200;

/** The inputs generated here list placed tasks (the loads form is derived from them). */
type Input = ScheduleInput & { placed: Task[] };

/** The scheduling-relevant template of one service version. */
interface Template {
  nanoCpus: number;
  memoryBytes: number;
  constraints: string[];
  preferences: string[];
}

const templateArb: fc.Arbitrary<Template> = fc.record({
  nanoCpus: fc.constantFrom(0, 0, CPU / 2, CPU, 2 * CPU),
  memoryBytes: fc.constantFrom(0, 0, GiB / 2, GiB, 3 * GiB),
  constraints: fc.subarray(['node.labels.zone==a', 'node.labels.zone!=b', 'node.role==worker', 'engine.labels.os!=windows']),
  preferences: fc.constantFrom([], ['node.labels.zone'], ['node.labels.zone', 'node.labels.rack']),
});

const nodeArb = fc.record({
  nanoCpus: fc.constantFrom(0, CPU, 2 * CPU, 4 * CPU),
  memoryBytes: fc.constantFrom(0, GiB, 2 * GiB, 8 * GiB),
  state: fc.constantFrom<NodeStatusState>('ready', 'ready', 'ready', 'down', 'unknown', 'disconnected'),
  availability: fc.constantFrom<NodeAvailability>('active', 'active', 'active', 'pause', 'drain'),
  zone: fc.constantFrom('a', 'b', 'c', undefined),
  rack: fc.constantFrom('r1', 'r2', undefined),
  role: fc.constantFrom('worker' as const, 'manager' as const),
  windows: fc.boolean(),
});

/** A random cluster: nodes of mixed health, services with 1–2 versions, placed tasks (maybe over-committing) and a batch. */
const inputArb: fc.Arbitrary<Input> = fc
  .record({
    nodes: fc.array(nodeArb, { maxLength: 8 }),
    services: fc.array(fc.array(templateArb, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 4 }),
    placed: fc.array(fc.record({ service: fc.nat(), version: fc.nat(), node: fc.nat() }), { maxLength: 12 }),
    pending: fc.array(
      // Mostly unpinned (replicated) tasks; one in four pinned (global), sometimes to a node that is not there.
      fc.record({ service: fc.nat(), version: fc.nat(), pin: fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: fc.nat(), weight: 1 }) }),
      { maxLength: 30 },
    ),
  })
  .map(({ nodes, services, placed, pending }) => {
    const nodeObjs = nodes.map((n, i) =>
      makeNode(`n${i}`, {
        nanoCpus: n.nanoCpus,
        memoryBytes: n.memoryBytes,
        state: n.state,
        availability: n.availability,
        role: n.role,
        labels: { ...(n.zone ? { zone: n.zone } : {}), ...(n.rack ? { rack: n.rack } : {}) },
        engineLabels: { os: n.windows ? 'windows' : 'linux' },
      }),
    );
    /** A task of service `s` version `v` (both taken modulo what exists) with that version's template. */
    const task = (id: string, s: number, v: number, nodeId: string, state: Task['status']['state']): Task => {
      const versions = services[s % services.length] ?? [];
      const version = v % versions.length;
      const t = versions[version] as Template;
      return makeTask(id, { serviceId: `s${s % services.length}`, serviceVersion: version + 1, nodeId, state, ...t });
    };
    // One node id past the end stands for a node the snapshot does not have.
    const nodeId = (i: number): string => `n${i % (nodes.length + 1)}`;
    return {
      nodes: nodeObjs,
      placed: placed.map((p, i) => task(`placed${i}`, p.service, p.version, nodeId(p.node), 'running')),
      pending: pending.map((p, i) => task(`task${i}`, p.service, p.version, p.pin === null ? '' : nodeId(p.pin), 'pending')),
    };
  });

const eligible = (node: Node, task: Task): boolean =>
  node.status.state === 'ready' &&
  node.spec.availability === 'active' &&
  (task.nodeId === '' || task.nodeId === node.id) &&
  task.spec.placement.constraints.every((c) => matchConstraint(node, c));

/** Capacity left per node after the placed tasks (tasks on unknown nodes hold nothing). */
const availableAfterPlaced = (input: Input): Map<string, { cpu: number; mem: number }> => {
  const avail = new Map(input.nodes.map((n) => [n.id, { cpu: n.description.resources.nanoCpus, mem: n.description.resources.memoryBytes }]));
  for (const t of input.placed) {
    const a = avail.get(t.nodeId);
    if (!a) continue;
    a.cpu -= t.spec.resources.reservations.nanoCpus;
    a.mem -= t.spec.resources.reservations.memoryBytes;
  }
  return avail;
};

const fitsIn = (task: Task, a: { cpu: number; mem: number }): boolean => {
  const r = task.spec.resources.reservations;
  return (r.nanoCpus === 0 || r.nanoCpus <= a.cpu) && (r.memoryBytes === 0 || r.memoryBytes <= a.mem);
};

/** Checks a plan against its input; returns the capacity left per node after the plan. */
const checkPlan = (input: Input, plan: Plan): Map<string, { cpu: number; mem: number }> => {
  const nodes = new Map(input.nodes.map((n) => [n.id, n]));
  const tasks = new Map(input.pending.map((t) => [t.id, t]));
  const order = new Map(input.pending.map((t, i) => [t.id, i]));

  // Every task is either assigned or unplaced, exactly once, and both lists keep the order of pending.
  const seen = [...plan.assignments.map((a) => a.taskId), ...plan.unplaced.map((u) => u.taskId)];
  assert.deepEqual([...seen].sort(), input.pending.map((t) => t.id).sort());
  for (const list of [plan.assignments, plan.unplaced]) {
    const idx = list.map((x) => order.get(x.taskId) ?? -1);
    assert.deepEqual(idx, [...idx].sort((a, b) => a - b));
  }

  // Replaying the assignments in order: each goes to an eligible node with room for its reservations.
  const avail = availableAfterPlaced(input);
  for (const { taskId, nodeId } of plan.assignments) {
    const task = tasks.get(taskId) as Task;
    const node = nodes.get(nodeId);
    assert.ok(node, `${taskId} assigned to unknown node ${nodeId}`);
    assert.ok(eligible(node, task), `${taskId} assigned to ineligible node ${nodeId}`);
    const a = avail.get(nodeId) as { cpu: number; mem: number };
    assert.ok(fitsIn(task, a), `${taskId} over-commits ${nodeId}`);
    a.cpu -= task.spec.resources.reservations.nanoCpus;
    a.mem -= task.spec.resources.reservations.memoryBytes;
  }

  // An unplaced task fits nowhere, even after the batch, and its reason accounts for every node it could have used once.
  for (const { taskId, reason } of plan.unplaced) {
    const task = tasks.get(taskId) as Task;
    assert.match(reason, /^no suitable node \(.+\)$/);
    const pool = task.nodeId === '' ? input.nodes : input.nodes.filter((n) => n.id === task.nodeId);
    for (const node of pool) {
      assert.ok(!eligible(node, task) || !fitsIn(task, avail.get(node.id) as { cpu: number; mem: number }), `${taskId} fits ${node.id}`);
    }
    if (task.nodeId !== '' && pool.length === 0) {
      assert.match(reason, /not in the cluster/);
    } else if (pool.length === 0) {
      assert.equal(reason, 'no suitable node (no nodes in the cluster)');
    } else {
      const counted = [...reason.matchAll(/(\d+) nodes?\b/g)].reduce((sum, m) => sum + Number(m[1]), 0);
      assert.equal(counted, pool.length, `reason '${reason}' counts ${counted} of ${pool.length} nodes`);
    }
  }
  return avail;
};

/** A deterministic shuffle driven by `seed`, so fast-check can shrink and replay it. */
const shuffle = <T>(items: readonly T[], seed: number): T[] => {
  const out = [...items];
  let s = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
};

describe('schedule: properties over random clusters', () => {
  it('assigns each task once, only to eligible nodes with room, and explains every unplaced task', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        checkPlan(input, schedule(input));
      }),
      { numRuns: RUNS },
    );
  });

  it('never over-commits a node whose placed tasks fit', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        // Keep only placed tasks that fit, as a store that never over-committed would have.
        const avail = availableAfterPlaced({ ...input, placed: [] });
        const placed = input.placed.filter((t) => {
          const a = avail.get(t.nodeId);
          if (!a || !fitsIn(t, a)) return false;
          a.cpu -= t.spec.resources.reservations.nanoCpus;
          a.mem -= t.spec.resources.reservations.memoryBytes;
          return true;
        });
        const fair = { ...input, placed };
        const left = checkPlan(fair, schedule(fair));
        for (const [id, a] of left) assert.ok(a.cpu >= 0 && a.mem >= 0, `node ${id} over-committed: ${JSON.stringify(a)}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('gives the same plan from loads kept task by task (NodeLoads) as from the placed tasks themselves', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const loads = new NodeLoads();
        // Every placed task added, and tasks that came and went (or never held anything) leave no trace.
        for (const t of input.pending) loads.add({ ...t, nodeId: t.nodeId || 'n0', status: { ...t.status, state: 'running' } });
        for (const t of input.placed) loads.add(t);
        for (const t of input.pending) loads.remove({ ...t, nodeId: t.nodeId || 'n0', status: { ...t.status, state: 'running' } });
        for (const t of input.pending) loads.add(t);
        assert.deepEqual(schedule({ nodes: input.nodes, loads: loads.view, pending: input.pending }), schedule(input));
      }),
      { numRuns: RUNS },
    );
  });

  it('gives the same plan whatever the order of nodes and placed tasks', () => {
    fc.assert(
      fc.property(inputArb, fc.integer(), fc.integer(), (input, s1, s2) => {
        const a = schedule(input);
        const b = schedule({ nodes: shuffle(input.nodes, s1), placed: shuffle(input.placed, s2), pending: input.pending });
        assert.deepEqual(b, a);
      }),
      { numRuns: RUNS },
    );
  });
});

/** Tasks of `serviceId` per node id: placed ones plus the plan's assignments. */
const countsAfter = (input: Input, plan: Plan, serviceId: string): Map<string, number> => {
  const counts = new Map(input.nodes.map((n) => [n.id, 0]));
  const service = new Map(input.pending.map((t) => [t.id, t.serviceId]));
  for (const t of input.placed) if (t.serviceId === serviceId) counts.set(t.nodeId, (counts.get(t.nodeId) ?? 0) + 1);
  for (const a of plan.assignments) if (service.get(a.taskId) === serviceId) counts.set(a.nodeId, (counts.get(a.nodeId) ?? 0) + 1);
  return counts;
};

/** Identical ready, active nodes; a few services with tasks already placed and a batch of tasks with no constraints or reservations. */
const spreadArb = (opts: { zones: boolean }) =>
  fc
    .record({
      zones: fc.array(fc.constantFrom('a', 'b', 'c', undefined), { minLength: 1, maxLength: 8 }),
      placed: fc.array(fc.record({ service: fc.nat(2), node: fc.nat() }), { maxLength: 15 }),
      pending: fc.array(fc.nat(2), { minLength: 1, maxLength: 40 }),
    })
    .map(({ zones, placed, pending }) => {
      const preferences = opts.zones ? ['node.labels.zone'] : [];
      const nodes = zones.map((zone, i) => makeNode(`n${i}`, { labels: opts.zones && zone ? { zone } : {} }));
      return {
        nodes,
        placed: placed.map((p, i) => makeTask(`p${i}`, { serviceId: `s${p.service}`, nodeId: `n${p.node % nodes.length}`, state: 'running', preferences })),
        pending: pending.map((s, i) => makeTask(`t${i}`, { serviceId: `s${s}`, preferences })),
      };
    });

describe('schedule: spread properties', () => {
  it('water-fills each service over identical nodes: a node gets a task only while it holds the fewest of that service', () => {
    fc.assert(
      fc.property(spreadArb({ zones: false }), (input) => {
        const plan = schedule(input);
        assert.equal(plan.unplaced.length, 0);
        for (const serviceId of new Set(input.pending.map((t) => t.serviceId))) {
          const counts = countsAfter(input, plan, serviceId);
          const min = Math.min(...counts.values());
          const service = new Map(input.pending.map((t) => [t.id, t.serviceId]));
          for (const a of plan.assignments) {
            if (service.get(a.taskId) !== serviceId) continue;
            assert.ok((counts.get(a.nodeId) ?? 0) <= min + 1, `${serviceId} piles up on ${a.nodeId}`);
          }
          // With nothing of the service placed before, the batch alone is even: max − min ≤ 1.
          if (!input.placed.some((t) => t.serviceId === serviceId)) assert.ok(Math.max(...counts.values()) - min <= 1);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('spreads one service evenly over identical empty nodes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 60 }), (n, k) => {
        const nodes = Array.from({ length: n }, (_, i) => makeNode(`n${i}`));
        const pending = Array.from({ length: k }, (_, i) => makeTask(`t${i}`, { slot: i + 1 }));
        const counts = countsAfter({ nodes, placed: [], pending }, schedule({ nodes, placed: [], pending }), 'svc');
        assert.ok(Math.max(...counts.values()) - Math.min(...counts.values()) <= 1);
      }),
      { numRuns: RUNS },
    );
  });

  it('with a spread preference, water-fills the label values, then the nodes within each value', () => {
    fc.assert(
      fc.property(spreadArb({ zones: true }), (input) => {
        const plan = schedule(input);
        assert.equal(plan.unplaced.length, 0);
        const zoneOf = new Map(input.nodes.map((n) => [n.id, n.spec.labels.zone ?? '(none)']));
        const service = new Map(input.pending.map((t) => [t.id, t.serviceId]));
        for (const serviceId of new Set(input.pending.map((t) => t.serviceId))) {
          const counts = countsAfter(input, plan, serviceId);
          const perZone = new Map<string, number>();
          for (const [id, c] of counts) perZone.set(zoneOf.get(id) ?? '', (perZone.get(zoneOf.get(id) ?? '') ?? 0) + c);
          const minZone = Math.min(...perZone.values());
          for (const a of plan.assignments) {
            if (service.get(a.taskId) !== serviceId) continue;
            const zone = zoneOf.get(a.nodeId) ?? '';
            assert.ok((perZone.get(zone) ?? 0) <= minZone + 1, `${serviceId} piles up in zone ${zone}`);
            const inZone = [...counts].filter(([id]) => zoneOf.get(id) === zone).map(([, c]) => c);
            assert.ok((counts.get(a.nodeId) ?? 0) <= Math.min(...inZone) + 1, `${serviceId} piles up on ${a.nodeId} in zone ${zone}`);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
});
