// Health checks end to end on a one-node cluster: a task counts as running only once its check passes, an unhealthy
// task is stopped, failed and replaced per the restart policy, and the image's own HEALTHCHECK is honoured (or turned
// off with ['NONE']). On the Docker Engine, and on the exec runtime (checks run by the agent).

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServiceSpecInput, TaskListItem } from '../src/protocol/index.js';
import { ExecRuntime } from '../src/runtime/index.js';
import { TEST_IMAGE, buildTestImage, docker, eventually, startTestNode, type TestNode } from './helpers.js';

const fast = { intervalMs: 200, timeoutMs: 5000, startPeriodMs: 0 };

/** The one live (desired running) task of a service, once there is exactly one. */
const liveTask = async (node: TestNode, service: string): Promise<TaskListItem | undefined> => {
  const live = (await node.client.serviceTasks(service)).filter((t) => t.desiredState === 'running');
  return live.length === 1 ? live[0] : undefined;
};

/** Waits until the service's task that ran `failedContainer` failed and a new task runs; returns both. */
const replaced = async (node: TestNode, service: string, failedContainer: string): Promise<{ old: TaskListItem; next: TaskListItem }> =>
  eventually(`${service}: the failed task replaced by a running one`, async () => {
    const tasks = await node.client.serviceTasks(service);
    const old = tasks.find((t) => t.containerId === failedContainer && t.state === 'failed');
    const next = tasks.find((t) => t.containerId !== failedContainer && t.state === 'running');
    return old && next && { old, next };
  }, 30_000);

describe('health checks on a one-node Docker cluster', () => {
  let node: TestNode;
  let image = '';
  const create = (spec: ServiceSpecInput): Promise<unknown> => node.client.createService(spec);

  before(async () => {
    node = await startTestNode();
    // A check that always fails, run often: a task of this image never gets healthy unless checks are off.
    image = buildTestImage('busybox-health', `FROM ${TEST_IMAGE}\nHEALTHCHECK --interval=200ms --timeout=5s --retries=1 CMD echo image check ran; exit 1\n`);
  });
  after(async () => {
    await node?.destroy();
    if (image) await docker.getImage(image).remove({ force: true }).catch(() => undefined);
  });

  it('keeps a task starting until its first check passes, then counts it running', async () => {
    // The check passes once the process has made /ready, two seconds after it started.
    await create({
      name: 'slowstart',
      task: { container: { image: TEST_IMAGE, command: ['sh', '-c', 'sleep 2; echo > /ready; exec sleep 3600'], healthcheck: { test: ['CMD-SHELL', 'test -f /ready'], retries: 100, ...fast } } },
    });
    const starting = await eventually('a starting task whose container runs', async () => {
      const t = await liveTask(node, 'slowstart');
      if (t?.state !== 'starting' || !t.containerId) return undefined;
      const raw = await docker.getContainer(t.containerId).inspect();
      return raw.State.Running && raw.State.Health?.Status === 'starting' && t;
    });
    const [row] = (await node.client.listServices()).filter((s) => s.name === 'slowstart');
    assert.equal(row?.replicas.running, 0, 'a starting task is not counted as running');
    const running = await eventually('the task running', async () => {
      const t = await liveTask(node, 'slowstart');
      return t?.state === 'running' && t;
    });
    const runningAt = Date.now();
    assert.equal(running.id, starting.id, 'the same task, not a replacement');
    const raw = await docker.getContainer(running.containerId).inspect();
    assert.equal(raw.State.Health?.Status, 'healthy', 'running only once the Engine says healthy');
    const sinceStart = runningAt - Date.parse(raw.State.StartedAt);
    assert.ok(sinceStart >= 2000, `running only after /ready was made, 2 s after the start (${sinceStart}ms)`);
    assert.equal((await node.client.listServices()).find((s) => s.name === 'slowstart')?.replicas.running, 1);
    await node.client.removeService('slowstart');
  });

  it('stops and fails a task whose check starts failing, with the check output, and the restart policy replaces it', async () => {
    await create({
      name: 'sickly',
      task: {
        container: { image: TEST_IMAGE, command: ['sleep', '3600'], healthcheck: { test: ['CMD-SHELL', 'if [ -f /bad ]; then echo found /bad; exit 1; fi'], retries: 2, ...fast } },
        restartPolicy: { condition: 'any', delayMs: 0 },
      },
    });
    const healthy = await eventually('the task running', async () => {
      const t = await liveTask(node, 'sickly');
      return t?.state === 'running' && t;
    });
    const exec = await docker.getContainer(healthy.containerId).exec({ Cmd: ['sh', '-c', 'echo > /bad'] });
    await exec.start({});
    const { old, next } = await replaced(node, 'sickly', healthy.containerId);
    assert.equal(old.error, 'container unhealthy: found /bad');
    assert.equal((await docker.getContainer(old.containerId).inspect()).State.Running, false, 'the unhealthy container was stopped');
    assert.equal((await docker.getContainer(next.containerId).inspect()).State.Health?.Status, 'healthy');
    await node.client.removeService('sickly');
  });

  it("honours the image's own HEALTHCHECK (alone, or with the service's timings) and turns it off with ['NONE']", async () => {
    const once = { condition: 'none' as const };
    await create({ name: 'imagecheck', task: { container: { image, command: ['sleep', '3600'] }, restartPolicy: once } });
    // An empty test keeps the image's command; the service's timings apply to it.
    await create({ name: 'imagetimings', task: { container: { image, command: ['sleep', '3600'], healthcheck: { test: [], retries: 1, ...fast } }, restartPolicy: once } });
    await create({ name: 'nocheck', task: { container: { image, command: ['sleep', '3600'], healthcheck: { test: ['NONE'] } } } });
    for (const name of ['imagecheck', 'imagetimings']) {
      const failed = await eventually(`${name}: the task failed on the image's check`, async () => (await node.client.serviceTasks(name)).find((t) => t.state === 'failed'));
      assert.equal(failed.error, 'container unhealthy: image check ran');
    }
    const off = await eventually('nocheck: the task running', async () => {
      const t = await liveTask(node, 'nocheck');
      return t?.state === 'running' && t;
    });
    // Several image-check intervals later it still runs, with no health at all.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await liveTask(node, 'nocheck'))?.id, off.id);
    assert.equal((await liveTask(node, 'nocheck'))?.state, 'running');
    assert.equal((await docker.getContainer(off.containerId).inspect()).State.Health, undefined);
    for (const name of ['imagecheck', 'imagetimings', 'nocheck']) await node.client.removeService(name);
  });
});

describe('health checks on the exec runtime', () => {
  let node: TestNode;
  before(async () => {
    node = await startTestNode({ runtime: 'exec' });
  });
  after(async () => {
    // Task processes outlive the daemon by design: remove whatever a failed test left.
    await node?.stop();
    const rt = new ExecRuntime({ dir: join(node.dataDir, 'exec') });
    for (const c of await rt.list()) await rt.remove(c.id);
    await rt.close();
    await node?.destroy();
  });

  it('runs the check from the agent: starting until it passes, then running; failing checks replace the task', async () => {
    // The check runs in the container's directory, so the test can break it by writing a file there.
    await node.client.createService({
      name: 'procs',
      task: {
        container: { image: 'sh', command: ['/bin/sh', '-c', 'exec sleep 300'], healthcheck: { test: ['CMD-SHELL', 'if [ -f bad ]; then cat bad; exit 1; fi'], retries: 2, ...fast } },
        restartPolicy: { condition: 'any', delayMs: 0 },
      },
    });
    const seen = new Set<string>();
    const running = await eventually('the task running', async () => {
      const t = await liveTask(node, 'procs');
      if (t) seen.add(t.state);
      return t?.state === 'running' && t;
    });
    assert.ok(seen.has('starting'), `seen ${[...seen].join(', ')}: starting before the first check passed`);
    writeFileSync(join(node.dataDir, 'exec', 'containers', running.containerId, 'bad'), 'broken on purpose\n');
    const { old } = await replaced(node, 'procs', running.containerId);
    assert.equal(old.error, 'container unhealthy: broken on purpose');
    await node.client.removeService('procs');
  });
});
