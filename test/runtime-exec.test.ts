// The exec runtime (tasks as host processes) passes the runtime contract, and keeps its own promises: pid identity,
// process-group clean-up, the image as program, and its state directory layout.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ExecRuntime, LABELS, type ContainerConfig } from '../src/runtime/index.js';
import { runtimeContract } from '../src/runtime/contract.js';
import { readStat } from '../src/runtime/exec/proc.js';
import { eventually, tempDir } from './helpers.js';

const dir = tempDir('shoal-exec-');
after(() => rmSync(dir, { recursive: true, force: true }));

runtimeContract('exec', {
  open: () => new ExecRuntime({ dir, pollMs: 50 }),
  shell: (script) => ({ image: 'sh', command: ['/bin/sh', '-c', script] }),
  missing: { image: 'none', command: ['/no/such/program'], name: '/no/such/program' },
  labels: { 'shoal-test.run': randomBytes(6).toString('hex') },
});

/** Whether a process runs; a killed process that waits to be reaped (a zombie) does not. */
const alive = async (pid: number): Promise<boolean> => {
  const st = await readStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
};

describe('exec runtime: host processes', () => {
  const own = tempDir('shoal-exec-own-');
  const rt = new ExecRuntime({ dir: own, pollMs: 50 });
  after(async () => {
    for (const c of await rt.list()) await rt.remove(c.id);
    await rt.close();
    rmSync(own, { recursive: true, force: true });
  });
  const config = (over: Partial<ContainerConfig> = {}): ContainerConfig => ({
    taskId: `t${randomBytes(8).toString('hex')}`,
    serviceId: 'svc1',
    serviceName: 'exec',
    slot: 1,
    nodeId: 'n1',
    image: 'sh',
    command: ['/bin/sh', '-c', 'sleep 30'],
    env: [],
    labels: {},
    limits: { nanoCpus: 0, memoryBytes: 0 },
    ...over,
  });

  it('keeps config, logs, pid and exit code in one directory per container', async () => {
    const cfg = config({ command: ['/bin/sh', '-c', 'echo out; echo err >&2; exit 4'] });
    const id = await rt.create(cfg);
    await rt.start(id);
    await eventually('exit', async () => (await rt.inspect(id)).state === 'exited', 5000);
    const at = join(own, 'containers', id);
    assert.deepEqual(readdirSync(at).sort(), ['config.json', 'exit', 'pid', 'stderr.log', 'stdout.log']);
    const stored = JSON.parse(readFileSync(join(at, 'config.json'), 'utf8')) as { labels: Record<string, string>; argv: string[] };
    assert.equal(stored.labels[LABELS.taskId], cfg.taskId);
    assert.deepEqual(stored.argv, cfg.command);
    assert.equal(readFileSync(join(at, 'exit'), 'utf8'), '4\n');
    assert.equal(readFileSync(join(at, 'stdout.log'), 'utf8'), 'out\n');
    assert.equal(readFileSync(join(at, 'stderr.log'), 'utf8'), 'err\n');
  });

  it('runs the image as the program when there is no command', async () => {
    const id = await rt.create(config({ image: '/bin/true', command: [] }));
    await rt.start(id);
    await eventually('exit', async () => (await rt.inspect(id)).state === 'exited', 5000);
    assert.equal((await rt.inspect(id)).exitCode, 0);
  });

  it('ends the rest of the process group when the main process exits', async () => {
    const id = await rt.create(config({ command: ['/bin/sh', '-c', 'sleep 30 & echo $!; exit 0'] }));
    await rt.start(id);
    await eventually('exit', async () => (await rt.inspect(id)).state === 'exited', 5000);
    const bg = Number(readFileSync(join(own, 'containers', id, 'stdout.log'), 'utf8').trim());
    assert.ok(bg > 0);
    await eventually('the background sleep to end', async () => !(await alive(bg)), 5000);
  });

  it('does not take a reused pid for its process: such a container is not running and stop leaves the pid alone', async () => {
    const id = await rt.create(config());
    await rt.start(id);
    await rt.stop(id, 0);
    // Another process now holds "the" pid: simulated by pointing the record at an unrelated process, start time wrong.
    const stranger = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    const pid = stranger.pid ?? 0;
    try {
      writeFileSync(join(own, 'containers', id, 'pid'), `${pid} 1\n`);
      rmSync(join(own, 'containers', id, 'exit'), { force: true });
      const info = await rt.inspect(id);
      assert.deepEqual([info.state, info.exitCode], ['exited', 137]);
      await rt.stop(id, 0);
      await rt.remove(id);
      assert.ok(await alive(pid), 'the unrelated process survived stop and remove');
    } finally {
      stranger.kill('SIGKILL');
    }
  });
});
