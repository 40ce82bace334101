// Rolling updates on a real Docker Engine, through the CLI against a daemon process: the running count never drops
// below what the update order allows (checked continuously on the Engine), a failing update pauses or rolls back per
// its failure action, `service rollback` returns to the previous spec, and an update whose manager is SIGKILLed
// half-way resumes and completes after the restart.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Service } from '../src/core/index.js';
import type { TaskListItem } from '../src/protocol/index.js';
import { TEST_IMAGE, buildTestImage, cliWith, docker, eventually, freePort, removeNodeContainers, runningContainersOfService, shoalAsync, tempDir } from './helpers.js';

/** Whether a process runs (a zombie does not). */
const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
};

describe('rolling updates', () => {
  let dir = '';
  let env: Record<string, string> = {};
  let nodeId = '';
  const { run, ok, json } = cliWith(() => env);
  const inspect = (name: string): Service => {
    const [s] = json<Service[]>('service', 'inspect', name);
    assert.ok(s);
    return s;
  };
  const live = (name: string): TaskListItem[] => json<TaskListItem[]>('service', 'ps', name, '--format', 'json').filter((t) => t.desiredState === 'running');
  /** Env of the running containers of a service, as the Engine has them. */
  const runningEnv = async (serviceId: string): Promise<string[][]> =>
    Promise.all((await runningContainersOfService(serviceId)).map(async (c) => ((await docker.getContainer(c.Id).inspect()).Config.Env ?? []).filter((e) => e.startsWith('V='))));

  /** Runs `fn` while sampling the service's running containers on the Engine every 50 ms; returns the lowest count. */
  const lowestRunningDuring = async (serviceId: string, fn: () => Promise<void>): Promise<number> => {
    let lowest = Number.MAX_SAFE_INTEGER;
    let done = false;
    const sampler = (async () => {
      while (!done) {
        lowest = Math.min(lowest, (await runningContainersOfService(serviceId)).length);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await fn();
    } finally {
      done = true;
      await sampler;
    }
    return lowest;
  };

  const create = (name: string, ...flags: string[]): Service => {
    ok('service', 'create', '--name', name, '--replicas', '6', '--env', 'V=1', '--restart-delay', '0s', '--stop-grace-period', '1s', ...flags, TEST_IMAGE, 'sleep', '3600');
    return inspect(name);
  };

  before(async () => {
    dir = tempDir('shoal-update-');
    env = { SHOAL_CONFIG: join(dir, 'config.json') };
    ok('init', '--detach', '--data-dir', join(dir, 'node'), '--listen-addr', `127.0.0.1:${await freePort()}`);
    nodeId = (JSON.parse(readFileSync(join(dir, 'node', 'node.json'), 'utf8')) as { nodeId: string }).nodeId;
  });

  after(async () => {
    if (!dir) return;
    run('stop', '--data-dir', join(dir, 'node'));
    if (nodeId) await removeNodeContainers(nodeId);
    rmSync(dir, { recursive: true, force: true });
  });

  it('stop-first, parallelism 2: never fewer than 4 of 6 running; every task ends on the new spec', async () => {
    const s = create('sf', '--update-parallelism', '2', '--update-monitor', '500ms');
    const lowest = await lowestRunningDuring(s.id, async () => {
      const out = await shoalAsync(['service', 'update', '--env-add', 'V=2', 'sf'], env);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stderr, /sf: update completed/);
      assert.match(out.stderr, /6\/6 tasks updated/);
      assert.match(out.stderr, /replacing sf\.\d sf\.\d/, 'progress names the two tasks being replaced');
    });
    assert.ok(lowest >= 4, `at least 4 running throughout (lowest ${lowest})`);
    assert.ok(lowest < 6, `stop-first stops before it starts (lowest ${lowest})`);
    assert.equal(inspect('sf').updateStatus?.state, 'completed');
    const envs = await runningEnv(s.id);
    assert.equal(envs.length, 6);
    assert.ok(envs.every((e) => e.join() === 'V=2'), JSON.stringify(envs));
  });

  it('start-first, parallelism 2: never fewer than 6 running', async () => {
    const s = create('stf', '--update-parallelism', '2', '--update-order', 'start-first', '--update-monitor', '500ms');
    const lowest = await lowestRunningDuring(s.id, async () => {
      const out = await shoalAsync(['service', 'update', '--env-add', 'V=2', 'stf'], env);
      assert.equal(out.code, 0, out.stderr);
    });
    assert.ok(lowest >= 6, `6 running throughout (lowest ${lowest})`);
    await eventually('6 containers on the new spec', async () => (await runningEnv(s.id)).filter((e) => e.join() === 'V=2').length === 6);
  });

  it('an update to a task that exits at once pauses with the reason (failure action pause)', () => {
    create('bad', '--update-monitor', '2s');
    const out = run('service', 'update', '--args', 'sh -c "exit 3"', 'bad');
    assert.notEqual(out.code, 0, 'the CLI reports the failed update');
    assert.match(out.stderr, /update paused: task \S+ \(slot \d\) failed: .*exit(ed)? .*3/);
    const st = inspect('bad').updateStatus;
    assert.equal(st?.state, 'paused');
    // Paused: the slots not yet reached keep their old tasks.
    assert.ok(live('bad').filter((t) => t.state === 'running' && t.upToDate === false).length >= 5);
    // `service rollback` returns to the previous spec and all six run it.
    const back = run('service', 'rollback', 'bad');
    assert.equal(back.code, 0, back.stderr);
    const s = inspect('bad');
    assert.equal(s.updateStatus?.state, 'rollback_completed');
    assert.deepEqual(s.spec.task.container.command, ['sleep', '3600']);
    assert.equal(live('bad').filter((t) => t.state === 'running' && t.upToDate).length, 6);
  });

  it('failure action rollback: an update to an image whose task exits at once is rolled back; all replicas run the old image', async () => {
    // The new image's entrypoint exits at once, whatever the command.
    const exits = buildTestImage('exits', `FROM ${TEST_IMAGE}\nENTRYPOINT ["sh", "-c", "exit 3"]\n`);
    try {
      const s = create('rb', '--update-failure-action', 'rollback', '--update-monitor', '2s', '--rollback-parallelism', '0');
      const out = run('service', 'update', '--image', exits, 'rb');
      assert.notEqual(out.code, 0);
      assert.match(out.stderr, /rolled back/);
      const after = inspect('rb');
      assert.equal(after.updateStatus?.state, 'rollback_completed');
      assert.equal(after.spec.task.container.image, TEST_IMAGE);
      await eventually('6 containers of the old image running', async () => {
        const cs = await runningContainersOfService(s.id);
        return cs.length === 6 && cs.every((c) => c.Image === TEST_IMAGE);
      });
      assert.ok(live('rb').every((t) => t.image === TEST_IMAGE && t.state === 'running'));
    } finally {
      run('service', 'rm', 'rb');
      await docker.getImage(exits).remove({ force: true }).catch(() => undefined);
    }
  });

  it('a manager SIGKILLed in the middle of an update resumes it after the restart and completes it', async () => {
    create('resume', '--update-parallelism', '1', '--update-delay', '1s', '--update-monitor', '500ms');
    ok('service', 'update', '--env-add', 'V=2', '--detach', 'resume');
    await eventually('the update half-way', () => {
      const n = live('resume').filter((t) => t.upToDate && t.state === 'running').length;
      return n >= 2 && n < 6;
    }, 60_000);
    const pid = Number(readFileSync(join(dir, 'node', 'shoal.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await eventually('the killed daemon gone', () => !isAlive(pid));
    ok('init', '--detach', '--data-dir', join(dir, 'node'));
    await eventually('the update completed', () => inspect('resume').updateStatus?.state === 'completed', 90_000);
    const tasks = live('resume');
    assert.equal(tasks.length, 6);
    assert.ok(tasks.every((t) => t.upToDate && t.state === 'running'));
    // It resumed rather than starting over: no slot was replaced twice.
    const all = json<TaskListItem[]>('service', 'ps', 'resume', '--format', 'json');
    for (let slot = 1; slot <= 6; slot++) assert.ok(all.filter((t) => t.slot === slot && t.upToDate).length === 1, `slot ${slot} has one task of the new spec`);
  });
});
