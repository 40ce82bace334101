// The Docker runtime against the real Docker Engine passes the runtime contract, and sets up containers as Shoal needs.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { DockerRuntime, RuntimeError, type ContainerConfig } from '../src/runtime/index.js';
import { runtimeContract } from '../src/runtime/contract.js';
import { TEST_IMAGE, docker } from './helpers.js';

const RUN_LABEL = 'shoal-test.run';
const run = randomBytes(6).toString('hex');

// Whatever a test left behind (a failed assertion before its own cleanup), nothing of this run outlives the file.
after(async () => {
  const left = await docker.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${run}`] } });
  for (const c of left) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
});

runtimeContract('docker', {
  open: () => new DockerRuntime(),
  shell: (script) => ({ image: TEST_IMAGE, command: ['sh', '-c', script] }),
  missing: { image: 'shoal-test/nope', command: [], name: 'shoal-test/nope' },
  labels: { [RUN_LABEL]: run },
});

describe('docker runtime: container set-up', () => {
  const rt = new DockerRuntime({ socketPath: '/var/run/docker.sock' });
  after(() => rt.close());
  const config = (over: Partial<ContainerConfig> = {}): ContainerConfig => ({
    taskId: `t${randomBytes(8).toString('hex')}`,
    serviceId: 'svc1',
    serviceName: 'web/api',
    slot: 3,
    nodeId: `n${run}`,
    image: TEST_IMAGE,
    command: ['sleep', '30'],
    env: [],
    labels: { [RUN_LABEL]: run },
    limits: { nanoCpus: 500_000_000, memoryBytes: 64 * 1024 * 1024 },
    ...over,
  });

  it('names the container per task, runs an init as PID 1, and passes the limits to the Engine', async () => {
    const cfg = config();
    const id = await rt.create(cfg);
    const raw = await docker.getContainer(id).inspect();
    assert.equal(raw.Name, `/shoal-web-api.3.${cfg.taskId}`);
    assert.equal(raw.HostConfig.Init, true);
    assert.equal(raw.HostConfig.NanoCpus, 500_000_000);
    assert.equal(raw.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(raw.HostConfig.RestartPolicy?.Name, 'no');
    // A second task of the same slot gets its own container: names never collide across a slot's history.
    const next = await rt.create(config({ slot: 3 }));
    assert.notEqual(next, id);
    await rt.remove(next);
    await rt.remove(id);
  });

  it('stops a PID-1 sleep at once instead of waiting out the grace period', async () => {
    const id = await rt.create(config());
    await rt.start(id);
    const t0 = Date.now();
    await rt.stop(id, 10_000);
    assert.ok(Date.now() - t0 < 3000, `stopped in ${Date.now() - t0}ms`);
    await rt.remove(id);
  });

  it('says that a missing image is not pulled', async () => {
    await assert.rejects(rt.create(config({ image: 'shoal-test/nope' })), (e: unknown) => {
      assert.ok(e instanceof RuntimeError && e.permanent);
      assert.match(e.message, /image shoal-test\/nope not found on this node; Shoal does not pull/);
      return true;
    });
  });

  it('reports the Engine host capacity', async () => {
    const info = (await docker.info()) as { NCPU: number; MemTotal: number };
    assert.deepEqual(await rt.capacity(), { nanoCpus: info.NCPU * 1e9, memoryBytes: info.MemTotal });
  });
});
