// Hollow nodes (sim runtime, many agents in one process) behave like real nodes to the manager: each joins with its own
// certificate and is ready, a service spreads over them, their status reports are written together (and stand for
// their heartbeats), each node's set is checked with a digest, killed ones are
// found down one heartbeat period after their sessions break and their tasks are rescheduled on the others, a rolling
// update completes on them, and they come back with the same identities from their state dir.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { startHollowNodes, type HollowNodes } from '../src/cli/hollow-nodes.js';
import { silentLogger } from '../src/lib/logger.js';
import { verifyNodeCertificate } from '../src/pki/index.js';
import type { TaskListItem } from '../src/protocol/index.js';
import { eventually, startTestNode, tempDir, type TestNode } from './helpers.js';

const N = 8;
const REPLICAS = 3 * N;

describe('hollow nodes', () => {
  let manager: TestNode;
  let hollow: HollowNodes | undefined;
  let stateDir = '';
  const start = async (token?: string): Promise<HollowNodes> => {
    const nodes = await startHollowNodes({ manager: manager.daemon.manager.address, count: N, ...(token ? { token } : {}), stateDir, joinConcurrency: 4, logger: silentLogger });
    await nodes.connected(20_000);
    return nodes;
  };
  /** Live (desired running) tasks of a service, once all of them run. */
  const allRunning = async (service: string, n: number): Promise<TaskListItem[] | undefined> => {
    const live = (await manager.client.serviceTasks(service)).filter((t) => t.desiredState === 'running');
    return live.length === n && live.every((t) => t.state === 'running') ? live : undefined;
  };
  const perNode = (tasks: TaskListItem[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const t of tasks) m.set(t.node, (m.get(t.node) ?? 0) + 1);
    return m;
  };

  before(async () => {
    stateDir = tempDir('shoal-sim-');
    manager = await startTestNode({ runtime: 'sim' });
    // The manager's own node runs nothing, so every task lands on a hollow node.
    await manager.client.updateNode(manager.nodeId, { availability: 'drain' });
    hollow = await start((await manager.client.joinTokens()).worker);
  });
  after(async () => {
    await hollow?.stopAll();
    // Not destroy(): that removes Docker containers, and a sim node has none.
    manager?.client.close();
    await manager?.stop();
    if (manager) rmSync(manager.dataDir, { recursive: true, force: true });
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('joins every hollow node with its own certificate; node ls shows them all ready', async () => {
    const ids = hollow?.nodes.map((n) => n.nodeId) ?? [];
    assert.equal(new Set(ids).size, N, 'distinct node ids');
    const nodes = await eventually('all nodes ready', async () => {
      const ls = await manager.client.listNodes();
      return ls.length === N + 1 && ls.every((n) => n.status === 'ready') && ls;
    });
    const workers = nodes.filter((n) => n.id !== manager.nodeId);
    // Joining, a node goes from registered to ready, never through down.
    const downs: string[] = [];
    for await (const e of manager.client.events({ filters: ['type=node'] })) if (e.action === 'down') downs.push(e.name);
    assert.deepEqual(downs, [], 'nodes found down while they joined');
    assert.deepEqual(workers.map((n) => n.hostname).sort(), Array.from({ length: N }, (_, i) => `sim-000${i + 1}`));
    assert.deepEqual(workers.map((n) => n.id).sort(), [...ids].sort());
    assert.ok(workers.every((n) => n.role === 'worker'));
    for (const n of hollow?.nodes ?? []) {
      const pem = readFileSync(join(stateDir, n.hostname, 'node.pem'), 'utf8');
      const identity = verifyNodeCertificate(pem, { ca: manager.tls.ca, now: new Date() });
      assert.deepEqual([identity.nodeId, identity.role], [n.nodeId, 'worker'], `the certificate of ${n.hostname} names it`);
    }
  });

  it('spreads a service evenly over the hollow nodes, every task running', async () => {
    await manager.client.createService({ name: 'spread', mode: { replicated: { replicas: REPLICAS } }, task: { container: { image: 'sim', command: [] }, restartPolicy: { delayMs: 0 } } });
    const live = await eventually('all tasks running', () => allRunning('spread', REPLICAS));
    const counts = perNode(live);
    assert.equal(counts.size, N, 'every hollow node runs some');
    assert.deepEqual([...new Set(counts.values())], [REPLICAS / N]);
    assert.ok(!live.some((t) => t.nodeId === manager.nodeId), 'none on the drained manager');
  });

  it('writes the status reports of many nodes together, not one commit per node', async () => {
    // Each hollow node reports its own tasks running; the manager gathers reports that arrive together into one
    // commit, so the events of those tasks share few store revisions.
    const revisions = new Set<number>();
    for await (const e of manager.client.events({ filters: ['type=task'] })) {
      if (e.name.startsWith('spread.') && e.action === 'state' && e.attributes.state === 'running') revisions.add(e.revision);
    }
    assert.ok(revisions.size > 0, 'the tasks were seen running');
    assert.ok(revisions.size < N, `${N} nodes' reports in ${revisions.size} revisions`);
  });

  it('takes any message as a sign of life: a node busy reporting status sends no heartbeat and stays ready', async () => {
    const period = 1000;
    const [busy, idle] = [hollow?.nodes[2], hollow?.nodes[3]];
    assert.ok(busy && idle);
    await manager.client.updateCluster({ heartbeatPeriodMs: period });
    try {
      // Welcomed again with the new period, the agents restart their heartbeat timers.
      await sleep(period);
      const before = { busy: { ...busy.agent.sent }, idle: { ...idle.agent.sent } };
      // For 5.5 periods (a node is down after 5 silent ones), one of the busy node's containers is stopped out of band
      // every 200 ms: the node reports the exit and then the restarted task's start, and has no heartbeat to send.
      const until = Date.now() + 5.5 * period;
      while (Date.now() < until) {
        const running = [...busy.runtime.host.containers.values()].find((c) => c.state === 'running');
        if (running) await busy.runtime.stop(running.id);
        await sleep(200);
      }
      const statuses = busy.agent.sent.status - before.busy.status;
      const heartbeats = busy.agent.sent.heartbeat - before.busy.heartbeat;
      assert.ok(statuses >= 10, `the busy node reported ${statuses} times`);
      // At most the first tick's, when the stops had not started.
      assert.ok(heartbeats <= 1, `the busy node sent ${heartbeats} heartbeats while it reported ${statuses} times`);
      assert.ok(idle.agent.sent.heartbeat - before.idle.heartbeat >= 5, 'an idle node heartbeats every period');
      const nodes = await manager.client.listNodes();
      assert.equal(nodes.find((n) => n.id === busy.nodeId)?.status, 'ready', 'the busy node is ready: its reports were its heartbeats');
      assert.ok(nodes.filter((n) => n.id !== manager.nodeId).every((n) => n.status === 'ready'));
    } finally {
      await manager.client.updateCluster({ heartbeatPeriodMs: 500 });
    }
    await eventually('every task running again', () => allRunning('spread', REPLICAS), 30_000);
  });

  it('heartbeats one period after its last message, so a node is never silent for longer than a period', async () => {
    const period = 1000;
    const node = hollow?.nodes[5];
    assert.ok(node);
    const messages = (): number => Object.values(node.agent.sent).reduce((a, b) => a + b, 0);
    await manager.client.updateCluster({ heartbeatPeriodMs: period });
    try {
      await sleep(period);
      // Right after a heartbeat, a report (one of its containers stopped out of band, and what follows from it): a
      // heartbeat due at the next tick would be skipped for it, leaving nearly two periods without a message.
      const beats = node.agent.sent.heartbeat;
      for (const end = performance.now() + 3 * period; node.agent.sent.heartbeat === beats && performance.now() < end; ) await sleep(2);
      assert.ok(node.agent.sent.heartbeat > beats, 'an idle node heartbeats');
      const running = [...node.runtime.host.containers.values()].find((c) => c.state === 'running');
      assert.ok(running, 'the node runs a container');
      await node.runtime.stop(running.id);
      // The longest silence over the next three periods, from the agent's own count of what it sent.
      let count = messages();
      let last = performance.now();
      let longest = 0;
      for (const end = last + 3 * period; performance.now() < end; await sleep(5)) {
        const now = performance.now();
        if (messages() === count) continue;
        count = messages();
        longest = Math.max(longest, now - last);
        last = now;
      }
      longest = Math.max(longest, performance.now() - last);
      assert.ok(longest < 1.3 * period, `the node was silent for ${Math.round(longest)} ms with a heartbeat period of ${period} ms`);
    } finally {
      await manager.client.updateCluster({ heartbeatPeriodMs: 500 });
    }
    await eventually('every task running again', () => allRunning('spread', REPLICAS), 30_000);
  });

  it("checks each node's set with a digest: an intact set asks for nothing, one with a task too many gets the whole set", async () => {
    const nodes = hollow?.nodes ?? [];
    const odd = nodes[4];
    assert.ok(odd);
    // Every node is checked within 30 s; with 8 nodes, one a second. Wait for two rounds of checks.
    const before = nodes.map((n) => n.agent.received['assignments-check']);
    await eventually('every node checked twice', () => nodes.every((n, i) => n.agent.received['assignments-check'] >= (before[i] ?? 0) + 2), 30_000);
    assert.deepEqual(nodes.map((n) => n.agent.sent['assignments-request']), nodes.map(() => 0), 'intact sets ask for nothing');
    const wholeSets = odd.agent.received.assignments;
    // The node takes on a task the manager never gave it (as a lost removal would leave it): it runs it.
    const stray = { id: 'stray-task', serviceId: 'stray', serviceName: 'stray', slot: 1, nodeId: odd.nodeId, serviceVersion: 1, desiredState: 'running' as const, state: 'assigned' as const, containerId: '', spec: (await manager.client.inspectService('spread')).spec.task };
    odd.agent.runner.updateAssignments([stray], []);
    const strayRunning = (): boolean => [...odd.runtime.host.containers.values()].some((c) => c.taskId === stray.id && c.state === 'running');
    await eventually('the stray task running', strayRunning);
    // At its next check the node finds its set differs, asks for the whole set, and stops and removes the stray.
    await eventually('the stray task gone', () => ![...odd.runtime.host.containers.values()].some((c) => c.taskId === stray.id), 30_000);
    assert.equal(odd.agent.sent['assignments-request'], 1);
    assert.equal(odd.agent.received.assignments, wholeSets + 1, 'the whole set, once');
    await eventually('every task running', () => allRunning('spread', REPLICAS));
  });

  it('finds killed hollow nodes down once their broken sessions stay closed for a period, and runs their tasks on the others', async () => {
    // A long heartbeat period: missed heartbeats alone would find the killed nodes down only after 5 × 3 s.
    const period = 3000;
    await manager.client.updateCluster({ heartbeatPeriodMs: period });
    const killed = hollow?.nodes.slice(0, 2) ?? [];
    const t0 = Date.now();
    await Promise.all(killed.map((n) => n.kill()));
    const gone = new Set(killed.map((n) => n.nodeId));
    try {
      await eventually('the killed nodes down', async () => (await manager.client.listNodes()).filter((n) => gone.has(n.id)).every((n) => n.status === 'down'), 20_000);
    } finally {
      await manager.client.updateCluster({ heartbeatPeriodMs: 500 });
    }
    const foundDownMs = Date.now() - t0;
    assert.ok(foundDownMs >= period && foundDownMs < 2 * period, `found down after ${foundDownMs}ms: one period (${period}ms) after the sessions broke`);
    const others = (await manager.client.listNodes()).filter((n) => !gone.has(n.id) && n.id !== manager.nodeId);
    assert.ok(others.every((n) => n.status === 'ready'), 'the live nodes stay ready');
    const live = await eventually('every task running again', () => allRunning('spread', REPLICAS), 30_000);
    assert.ok(!live.some((t) => gone.has(t.nodeId)), 'nothing left on a killed node');
    assert.equal(perNode(live).size, N - 2);
  });

  it('completes a rolling update on hollow nodes', async () => {
    const s = await manager.client.inspectService('spread');
    await manager.client.updateService('spread', {
      ...s.spec,
      task: { ...s.spec.task, container: { ...s.spec.task.container, image: 'sim:v2' } },
      updateConfig: { parallelism: 4, delayMs: 0, monitorMs: 200, failureAction: 'pause', maxFailureRatio: 0, order: 'stop-first' },
    });
    await eventually('the update completed', async () => (await manager.client.inspectService('spread')).updateStatus?.state === 'completed', 60_000);
    const live = await eventually('all tasks running', () => allRunning('spread', REPLICAS));
    assert.deepEqual([...new Set(live.map((t) => t.image))], ['sim:v2']);
  });

  it('come back from their state dir with the same identities, without a token', async () => {
    const before = hollow?.nodes.map((n) => n.nodeId).sort();
    await hollow?.stopAll();
    hollow = await start();
    assert.deepEqual(hollow.nodes.map((n) => n.nodeId).sort(), before);
    await eventually('all nodes ready again', async () => {
      const ls = await manager.client.listNodes();
      return ls.length === N + 1 && ls.every((n) => n.status === 'ready');
    });
  });
});
