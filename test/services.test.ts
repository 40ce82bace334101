// Services on a one-node cluster with the Docker runtime: replicas become containers, failures are restarted per
// policy, scaling converges both ways, removal leaves no container, and an agent restart adopts what runs.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ApiError } from '../src/cli/client.js';
import { waitConverged } from '../src/cli/converge.js';
import { TEST_IMAGE, containersOfNode, docker, eventually, runningContainersOfService, startTestNode, type TestNode } from './helpers.js';

describe('services on a one-node Docker cluster', () => {
  let node: TestNode;
  before(async () => {
    node = await startTestNode();
  });
  after(async () => {
    await node?.destroy();
  });

  it('runs 3 replicas as 3 labelled running containers, one per slot', async () => {
    const s = await node.client.createService({ name: 'web', mode: { replicated: { replicas: 3 } }, task: { container: { image: TEST_IMAGE, command: ['httpd', '-f', '-p', '8080'] } } });
    await waitConverged(node.client, 'web', { desired: 3, timeoutMs: 30_000 });
    const containers = await runningContainersOfService(s.id);
    assert.equal(containers.length, 3);
    assert.deepEqual(containers.map((c) => c.Labels['shoal.task.slot']).sort(), ['1', '2', '3']);
    for (const c of containers) {
      assert.equal(c.Labels['shoal.node.id'], node.nodeId);
      assert.equal(c.Labels['shoal.service.name'], 'web');
    }
    const tasks = await node.client.serviceTasks('web');
    assert.equal(tasks.length, 3);
    for (const t of tasks) {
      assert.equal(t.state, 'running');
      assert.equal(t.nodeId, node.nodeId);
      assert.ok(containers.some((c) => c.Id === t.containerId), `task ${t.id} names a running container`);
    }
    const [row] = (await node.client.listServices()).filter((x) => x.name === 'web');
    assert.deepEqual(row, { id: s.id, name: 'web', project: 'default', mode: 'replicated', image: TEST_IMAGE, replicas: { desired: 3, running: 3 } });
  });

  it('scales up and down, and the containers follow', async () => {
    const s = await node.client.scaleService('web', 5);
    await waitConverged(node.client, 'web', { desired: 5, timeoutMs: 30_000 });
    assert.equal((await runningContainersOfService(s.id)).length, 5);
    await node.client.scaleService('web', 2);
    await waitConverged(node.client, 'web', { desired: 2, timeoutMs: 30_000 });
    const running = await eventually('2 running containers', async () => {
      const r = await runningContainersOfService(s.id);
      return r.length === 2 && r;
    });
    assert.deepEqual(running.map((c) => c.Labels['shoal.task.slot']).sort(), ['1', '2']);
    const tasks = await node.client.serviceTasks('web');
    assert.ok(tasks.filter((t) => t.slot > 2).every((t) => t.desiredState === 'shutdown' && t.state === 'shutdown'));
  });

  it('replaces a container killed from outside, per the restart policy (any, delay 0)', async () => {
    const s = await node.client.createService({
      name: 'phoenix',
      task: { container: { image: TEST_IMAGE, command: ['sleep', '3600'] }, restartPolicy: { condition: 'any', delayMs: 0 } },
    });
    await waitConverged(node.client, 'phoenix', { desired: 1, timeoutMs: 30_000 });
    const [first] = await runningContainersOfService(s.id);
    assert.ok(first);
    await docker.getContainer(first.Id).kill();
    const replacement = await eventually('a new running container for slot 1', async () => {
      const r = await runningContainersOfService(s.id);
      return r.length === 1 && r[0]?.Id !== first.Id && r[0];
    });
    assert.equal(replacement.Labels['shoal.task.slot'], '1');
    const tasks = await node.client.serviceTasks('phoenix');
    const dead = tasks.find((t) => t.containerId === first.Id);
    assert.equal(dead?.state, 'failed');
    assert.match(dead?.error ?? '', /exited with code 137/);
    assert.equal(dead?.desiredState, 'shutdown');
    assert.equal(tasks.filter((t) => t.desiredState === 'running').length, 1);
  });

  it('does not restart a task whose policy is condition none', async () => {
    const s = await node.client.createService({
      name: 'once',
      task: { container: { image: TEST_IMAGE, command: ['sh', '-c', 'sleep 0.3; exit 3'] }, restartPolicy: { condition: 'none' } },
    });
    const t = await eventually('the task to fail', async () => (await node.client.serviceTasks('once')).find((x) => x.state === 'failed'));
    assert.match(t.error, /exited with code 3/);
    // Give a wrongly-restarting orchestrator time to show itself.
    await new Promise((r) => setTimeout(r, 1000));
    const tasks = await node.client.serviceTasks('once');
    assert.equal(tasks.length, 1, 'no replacement task');
    assert.equal((await runningContainersOfService(s.id)).length, 0);
  });

  it('stops restarting after max attempts within the window', async () => {
    await node.client.createService({
      name: 'flaky',
      task: { container: { image: TEST_IMAGE, command: ['sh', '-c', 'exit 1'] }, restartPolicy: { condition: 'on-failure', delayMs: 100, maxAttempts: 2, windowMs: 60_000 } },
    });
    // The original run plus 2 restarts = 3 failed tasks, then the slot gives up.
    await eventually('3 failed tasks', async () => (await node.client.serviceTasks('flaky')).filter((t) => t.state === 'failed').length === 3);
    await new Promise((r) => setTimeout(r, 800));
    const tasks = await node.client.serviceTasks('flaky');
    assert.equal(tasks.length, 3);
    assert.ok(tasks.every((t) => t.state === 'failed'));
    // The slot's current task is the last failed one: still desired running (gave up), the others shut down.
    assert.equal(tasks.filter((t) => t.desiredState === 'running').length, 1);
  });

  it('rejects a task whose image does not exist, with the reason', async () => {
    await node.client.createService({ name: 'ghost', task: { container: { image: 'shoal-test/no-such-image' } } });
    const t = await eventually('the task to be rejected', async () => (await node.client.serviceTasks('ghost')).find((x) => x.state === 'rejected'));
    assert.match(t.error, /no-such-image/);
  });

  it('shows task logs, prefixed by task', async () => {
    await node.client.createService({ name: 'talker', mode: { replicated: { replicas: 2 } }, task: { container: { image: TEST_IMAGE, command: ['sh', '-c', 'echo hello from $HOSTNAME; echo oops >&2; sleep 3600'] } } });
    await waitConverged(node.client, 'talker', { desired: 2, timeoutMs: 30_000 });
    const lines = await eventually('log lines of both tasks', async () => {
      const out = [];
      for await (const l of node.client.serviceLogs('talker')) out.push(l);
      return out.length >= 4 && out;
    });
    const slots = new Set(lines.map((l) => l.slot));
    assert.deepEqual([...slots].sort(), [1, 2]);
    assert.ok(lines.some((l) => l.stream === 'stdout' && l.line.startsWith('hello from')));
    assert.ok(lines.some((l) => l.stream === 'stderr' && l.line === 'oops'));
    assert.ok(lines.every((l) => l.serviceName === 'talker' && l.taskId.length > 0 && l.node.length > 0));
  });

  it('adopts running containers after an agent restart: no task duplicated or lost', async () => {
    const before = (await containersOfNode(node.nodeId)).filter((c) => c.State === 'running').map((c) => c.Id).sort();
    const tasksBefore = (await node.client.serviceTasks('web')).map((t) => `${t.id}:${t.state}`).sort();
    await node.stop();
    // The containers keep running while the node is stopped.
    assert.deepEqual((await containersOfNode(node.nodeId)).filter((c) => c.State === 'running').map((c) => c.Id).sort(), before);
    await node.restart();
    await waitConverged(node.client, 'web', { desired: 2, timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual((await containersOfNode(node.nodeId)).filter((c) => c.State === 'running').map((c) => c.Id).sort(), before);
    assert.deepEqual((await node.client.serviceTasks('web')).map((t) => `${t.id}:${t.state}`).sort(), tasksBefore);
  });

  it('removes a service and every container it made', async () => {
    const services = await node.client.listServices();
    for (const s of services) await node.client.removeService(s.id);
    await eventually('no container left on the node', async () => (await containersOfNode(node.nodeId)).length === 0, 30_000);
    assert.deepEqual(await node.client.listServices(), []);
  });
});

describe('global services and node availability on one node', () => {
  let node: TestNode;
  before(async () => {
    node = await startTestNode();
  });
  after(async () => {
    await node?.destroy();
  });

  it('runs one task per node, removes it on drain and brings it back when active', async () => {
    const s = await node.client.createService({ name: 'agent', mode: { global: {} }, task: { container: { image: TEST_IMAGE, command: ['sleep', '3600'] } } });
    await waitConverged(node.client, 'agent', { desired: 'global', timeoutMs: 30_000 });
    const [first] = await runningContainersOfService(s.id);
    assert.equal(first?.Labels['shoal.node.id'], node.nodeId);
    assert.equal(first?.Labels['shoal.task.slot'], '0');

    await node.client.updateNode(node.nodeId, { availability: 'drain' });
    await eventually('the task to be stopped on the drained node', async () => (await runningContainersOfService(s.id)).length === 0);
    const [row] = await node.client.listNodes();
    assert.equal(row?.availability, 'drain');

    await node.client.updateNode(node.nodeId, { availability: 'active', labelAdd: { zone: 'eu' } });
    await eventually('a new task once active again', async () => (await runningContainersOfService(s.id)).length === 1);
    assert.deepEqual((await node.client.inspectNode(node.nodeId)).spec.labels, { zone: 'eu' });
  });

  it('keeps replicated tasks pending with the reason while no node is eligible', async () => {
    await node.client.createService({ name: 'picky', task: { container: { image: TEST_IMAGE, command: ['sleep', '3600'] }, placement: { constraints: ['node.labels.zone==us'] } } });
    const t = await eventually('the pending task to explain itself', async () => (await node.client.serviceTasks('picky')).find((x) => x.state === 'pending' && /no suitable node/.test(x.message)));
    assert.match(t.message, /constraint node\.labels\.zone==us/);
    await node.client.updateNode(node.nodeId, { labelAdd: { zone: 'us' } });
    await waitConverged(node.client, 'picky', { desired: 1, timeoutMs: 30_000 });
  });

  it('changes the heartbeat period and validates node and cluster updates', async () => {
    const c = await node.client.updateCluster({ heartbeatPeriodMs: 300 });
    assert.equal(c.spec.heartbeatPeriodMs, 300);
    assert.ok(!('auth' in c), 'credential digests are not shown');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await node.client.listNodes())[0]?.status, 'ready', 'the node keeps up with the new period');
    await assert.rejects(node.client.raw('POST', `/nodes/${node.nodeId}/update`, { availability: 'sleepy' }), (e: ApiError) => e.status === 400 && e.violations[0]?.field === 'availability');
    await assert.rejects(node.client.updateCluster({ heartbeatPeriodMs: 1 }), (e: ApiError) => e.status === 400 && e.violations[0]?.field === 'heartbeatPeriodMs');
  });
});
