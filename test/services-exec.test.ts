// A one-node cluster on the exec runtime (tasks as host processes, for hosts without Docker): replicas run,
// a killed process is replaced, an agent restart adopts the processes, and removal leaves nothing behind.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitConverged } from '../src/cli/converge.js';
import { ExecRuntime } from '../src/runtime/index.js';
import { eventually, startTestNode, type TestNode } from './helpers.js';

describe('services on the exec runtime', () => {
  let node: TestNode;
  let rt: ExecRuntime;
  const running = async (): Promise<string[]> => (await rt.list({ nodeId: node.nodeId })).filter((c) => c.state === 'running').map((c) => c.id).sort();

  before(async () => {
    node = await startTestNode({ runtime: 'exec' });
    rt = new ExecRuntime({ dir: join(node.dataDir, 'exec') });
  });
  after(async () => {
    await node?.stop();
    for (const c of (await rt?.list()) ?? []) await rt.remove(c.id);
    await rt?.close();
    await node?.destroy();
  });

  it('runs replicas as host processes and shows their logs', async () => {
    await node.client.createService({ name: 'procs', mode: { replicated: { replicas: 2 } }, task: { container: { image: 'sh', command: ['/bin/sh', '-c', 'echo started $GREETING; exec sleep 300'], env: ['GREETING=hi'] }, restartPolicy: { delayMs: 0 } } });
    await waitConverged(node.client, 'procs', { desired: 2, timeoutMs: 20_000 });
    assert.equal((await running()).length, 2);
    const lines = await eventually('both tasks logged', async () => {
      const out = [];
      for await (const l of node.client.serviceLogs('procs')) out.push(l.line);
      return out.length === 2 && out;
    });
    assert.deepEqual(lines, ['started hi', 'started hi']);
  });

  it('replaces a process killed from outside', async () => {
    const [victim] = await running();
    assert.ok(victim);
    const pid = Number(readFileSync(join(node.dataDir, 'exec', 'containers', victim, 'pid'), 'utf8').split(' ')[0]);
    process.kill(-pid, 'SIGKILL');
    await eventually('a replacement process', async () => {
      const now = await running();
      return now.length === 2 && !now.includes(victim);
    });
    const tasks = await node.client.serviceTasks('procs');
    assert.equal(tasks.filter((t) => t.state === 'failed').length, 1);
  });

  it('adopts its processes after an agent restart', async () => {
    const before = await running();
    await node.stop();
    assert.deepEqual(await running(), before, 'processes outlive the daemon');
    await node.restart();
    await waitConverged(node.client, 'procs', { desired: 2, timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(await running(), before);
  });

  it('removes every process and its state on service rm', async () => {
    await node.client.removeService('procs');
    await eventually('no process left', async () => (await rt.list({ nodeId: node.nodeId })).length === 0);
    assert.deepEqual(await node.client.listServices(), []);
  });
});
