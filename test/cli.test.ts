// The user's path through the real `shoal` command: init --detach, services, listings as JSON, stop, restart,
// and a manager killed with SIGKILL that comes back with its state and without duplicate containers.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TEST_IMAGE, containersOfNode, eventually, freePort, removeNodeContainers, cliWith, tempDir } from './helpers.js';

describe('shoal CLI against a detached daemon', () => {
  let dir: string;
  let env: Record<string, string>;
  let nodeId = '';
  const { run, ok, json } = cliWith(() => env);
  const daemonPid = (): number => Number(readFileSync(join(dir, 'data', 'shoal.pid'), 'utf8'));

  before(async () => {
    dir = tempDir('shoal-cli-');
    env = { SHOAL_CONFIG: join(dir, 'config.json'), SHOAL_HOST: '' };
    delete env.SHOAL_HOST;
    const port = await freePort();
    const out = ok('init', '--detach', '--data-dir', join(dir, 'data'), '--listen-addr', `127.0.0.1:${port}`);
    assert.match(out, /initialized/);
    nodeId = (JSON.parse(readFileSync(join(dir, 'data', 'node.json'), 'utf8')) as { nodeId: string }).nodeId;
  });

  after(async () => {
    if (dir) {
      run('stop', '--data-dir', join(dir, 'data'));
      if (nodeId) await removeNodeContainers(nodeId);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes a private context file and a log', () => {
    const ctx = JSON.parse(readFileSync(env.SHOAL_CONFIG ?? '', 'utf8')) as { hosts: string[]; token: string; clusterId: string };
    assert.match(ctx.hosts[0] ?? '', /^127\.0\.0\.1:\d+$/);
    assert.ok(ctx.token.length >= 32);
    assert.equal(statSync(env.SHOAL_CONFIG ?? '').mode & 0o077, 0, 'context file is not readable by others');
    assert.ok(existsSync(join(dir, 'data', 'shoal.log')));
    assert.ok(!readFileSync(join(dir, 'data', 'shoal.log'), 'utf8').includes(ctx.token), 'the token never appears in the log');
  });

  it('creates a service and waits until it runs, showing progress', () => {
    const r = run('service', 'create', '--name', 'web', '--replicas', '3', '--env', 'GREETING=hi', '--label', 'team=a', TEST_IMAGE, 'httpd', '-f', '-p', '8080');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /3\/3 running/);
    const ls = json<{ id: string; name: string; mode: string; image: string; replicas: { desired: number; running: number } }[]>('service', 'ls', '--format', 'json');
    assert.equal(ls.length, 1);
    assert.deepEqual(ls[0], { id: ls[0]?.id, name: 'web', project: 'default', mode: 'replicated', image: TEST_IMAGE, replicas: { desired: 3, running: 3 } });
    const table = ok('service', 'ls');
    assert.match(table, /NAME\s+PROJECT\s+MODE\s+REPLICAS\s+IMAGE/);
    assert.match(table, /web\s+default\s+replicated\s+3\/3\s+shoal-test\/busybox/);
  });

  it('lists tasks with the stable JSON fields', () => {
    const ps = json<Record<string, unknown>[]>('service', 'ps', 'web', '--format', 'json');
    assert.equal(ps.length, 3);
    for (const t of ps) {
      assert.deepEqual(Object.keys(t).sort(), ['containerId', 'createdAt', 'desiredState', 'error', 'id', 'image', 'nodeId', 'serviceName', 'slot', 'state', 'stateSince', 'upToDate']);
      assert.equal(t.upToDate, true);
      // When it started running, as its node saw it: after the task was made (its container took time to start).
      assert.ok(Date.parse(String(t.stateSince)) > Date.parse(String(t.createdAt)), `running since ${String(t.stateSince)}, made ${String(t.createdAt)}`);
      assert.equal(t.state, 'running');
      assert.equal(t.nodeId, nodeId);
    }
    assert.match(ok('service', 'ps', 'web'), /web\.1\s+\S+\s+\S+\s+running\s+running/);
  });

  it('inspects a service as JSON with its full spec', () => {
    const [s] = json<{ spec: { name: string; labels: Record<string, string>; task: { container: { env: string[]; command: string[] } } } }[]>('service', 'inspect', 'web');
    assert.equal(s?.spec.name, 'web');
    assert.deepEqual(s?.spec.labels, { team: 'a' });
    assert.deepEqual(s?.spec.task.container.env, ['GREETING=hi']);
    assert.deepEqual(s?.spec.task.container.command, ['httpd', '-f', '-p', '8080']);
  });

  it('scales and shows the nodes', () => {
    const r = run('service', 'scale', 'web=5');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /5\/5 running/);
    const nodes = json<{ id: string; hostname: string; role: string; availability: string; status: string; address: string }[]>('node', 'ls', '--format', 'json');
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0]?.id, nodeId);
    assert.equal(nodes[0]?.status, 'ready');
  });

  it('shows logs prefixed by task', () => {
    ok('service', 'create', '--name', 'echo', '--replicas', '2', TEST_IMAGE, 'sh', '-c', 'echo line-from-task; sleep 3600');
    const out = eventuallySync(() => {
      const o = ok('service', 'logs', 'echo');
      return o.split('\n').filter((l) => l.endsWith('| line-from-task')).length === 2 ? o : undefined;
    });
    assert.match(out, /^echo\.[12]\.\w+@\S+\s+\| line-from-task$/m);
  });

  it('refuses bad input with a clear message and a non-zero exit', () => {
    const unknown = run('service', 'create', '--name', 'x', '--bogus', TEST_IMAGE);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /unknown option '--bogus'/);
    const replicas = run('service', 'create', '--name', 'x', '--replicas', 'lots', TEST_IMAGE);
    assert.notEqual(replicas.code, 0);
    assert.match(replicas.stderr, /--replicas.*'lots' is not a whole number/);
    const constraint = run('service', 'create', '--name', 'x', '--constraint', 'node.labels.zone=eu', TEST_IMAGE);
    assert.notEqual(constraint.code, 0);
    assert.match(constraint.stderr, /--constraint.*KEY==VALUE/);
    const dup = run('service', 'create', '--name', 'web', TEST_IMAGE);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /'web' already exists/);
    const ghost = run('service', 'create', '--name', 'ghost', 'shoal-test/no-such-image');
    assert.notEqual(ghost.code, 0);
    assert.match(ghost.stderr, /did not converge: task ghost\.1 was rejected: .*no-such-image/);
    assert.deepEqual(json<{ name: string }[]>('service', 'ls', '--format', 'json').map((s) => s.name).sort(), ['echo', 'ghost', 'web']);
    ok('service', 'rm', 'ghost');
  });

  it('survives SIGKILL of the daemon: same services, same containers, no duplicates', async () => {
    const before = (await containersOfNode(nodeId)).filter((c) => c.State === 'running').map((c) => c.Id).sort();
    assert.equal(before.length, 7);
    process.kill(daemonPid(), 'SIGKILL');
    await eventually('the daemon to die', () => {
      try {
        process.kill(daemonPid(), 0);
        return false;
      } catch {
        return true;
      }
    });
    const r = run('init', '--detach', '--data-dir', join(dir, 'data'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Restarting node/);
    const ls = json<{ name: string; replicas: { desired: number; running: number } }[]>('service', 'ls', '--format', 'json');
    assert.deepEqual(ls.map((s) => [s.name, s.replicas.desired]), [['echo', 2], ['web', 5]]);
    await eventually('all replicas running again', () => {
      const rows = json<{ replicas: { desired: number; running: number } }[]>('service', 'ls', '--format', 'json');
      return rows.every((s) => s.replicas.running === s.replicas.desired);
    });
    await new Promise((res) => setTimeout(res, 1500));
    const afterIds = (await containersOfNode(nodeId)).filter((c) => c.State === 'running').map((c) => c.Id).sort();
    assert.deepEqual(afterIds, before, 'the same containers run: none lost, none duplicated');
    assert.equal((await containersOfNode(nodeId)).length, 7, 'no extra container was created');
  });

  it('stop leaves containers running; rm removes them all', async () => {
    const out = ok('stop', '--data-dir', join(dir, 'data'));
    assert.match(out, /Stopped/);
    assert.equal((await containersOfNode(nodeId)).filter((c) => c.State === 'running').length, 7);
    assert.notEqual(run('service', 'ls').code, 0, 'the API is down after stop');
    ok('init', '--detach', '--data-dir', join(dir, 'data'));
    const rm = run('service', 'rm', 'web', 'echo');
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(await containersOfNode(nodeId), [], 'rm returned only once no container was left');
    assert.deepEqual(json('service', 'ls', '--format', 'json'), []);
  });
});

/** Retries a synchronous check (each try runs a CLI process) for up to 20 s. */
const eventuallySync = <T>(check: () => T | undefined): T => {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  }
};
