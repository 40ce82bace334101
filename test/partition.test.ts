// A network partition: a worker in a network namespace this test creates (bridge + veth), running tasks with the exec
// runtime; cutting its link makes the manager replace its tasks, and healing it makes the worker stop its stale ones,
// so the service never keeps more replicas than it asked for.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ExecRuntime } from '../src/runtime/index.js';
import { CLI, cliWith, eventually, killExecTasks, tempDir } from './helpers.js';

const NS = `shoalt${process.pid % 100000}`;
const BR = `shbr${process.pid % 100000}`;
const VETH_HOST = `shvh${process.pid % 100000}`;
const VETH_NS = `shvn${process.pid % 100000}`;
const SUBNET = '10.231.77';
const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });

describe('a worker cut off by a network partition', () => {
  let dir = '';
  let env: Record<string, string> = {};
  const { ok, json } = cliWith(() => env);
  let managerAddr = '';
  const ids = { manager: '', worker: '' };
  const nodeId = (d: string): string => (JSON.parse(readFileSync(join(dir, d, 'node.json'), 'utf8')) as { nodeId: string }).nodeId;
  /** Processes really running for the service on a node, read from that node's exec runtime state. */
  const runningOn = async (d: string, id: string): Promise<number> => {
    const rt = new ExecRuntime({ dir: join(dir, d, 'exec') });
    try {
      return (await rt.list({ nodeId: id })).filter((c) => c.state === 'running' && c.labels['shoal.service.name'] === 'svc').length;
    } finally {
      await rt.close();
    }
  };

  before(() => {
    dir = tempDir('shoal-partition-');
    env = { SHOAL_CONFIG: join(dir, 'config.json') };
    ip('netns', 'add', NS);
    ip('link', 'add', BR, 'type', 'bridge');
    ip('addr', 'add', `${SUBNET}.1/24`, 'dev', BR);
    ip('link', 'set', BR, 'up');
    ip('link', 'add', VETH_HOST, 'type', 'veth', 'peer', 'name', VETH_NS);
    ip('link', 'set', VETH_NS, 'netns', NS);
    ip('link', 'set', VETH_HOST, 'master', BR, 'up');
    ip('-n', NS, 'addr', 'add', `${SUBNET}.2/24`, 'dev', VETH_NS);
    ip('-n', NS, 'link', 'set', VETH_NS, 'up');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    managerAddr = `${SUBNET}.1:${7400 + (process.pid % 500)}`;
    ok('init', '--detach', '--data-dir', join(dir, 'manager'), '--listen-addr', managerAddr, '--runtime', 'exec');
    ids.manager = nodeId('manager');
    const token = ok('join-token', 'worker', '-q').trim();
    // The worker runs inside the namespace: its only way to the manager is the veth link.
    const r = spawnSync('nsenter', [`--net=/var/run/netns/${NS}`, process.execPath, CLI, 'join', '--token', token, '--data-dir', join(dir, 'worker'), '--runtime', 'exec', '--detach', managerAddr], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    ids.worker = nodeId('worker');
  });

  after(() => {
    for (const d of ['worker', 'manager']) spawnSync(process.execPath, [CLI, 'stop', '--data-dir', join(dir, d)], { env: { ...process.env, ...env } });
    killExecTasks(dir);
    spawnSync('ip', ['link', 'del', VETH_HOST]);
    spawnSync('ip', ['link', 'del', BR]);
    spawnSync('ip', ['netns', 'del', NS]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('replaces the tasks of the cut-off worker, and the healed worker stops its stale ones', async () => {
    await eventually('both nodes ready', () => json<{ status: string }[]>('node', 'ls', '--format', 'json').filter((n) => n.status === 'ready').length === 2);
    ok('service', 'create', '--name', 'svc', '--replicas', '4', '--restart-delay', '0s', 'sh', '/bin/sleep', '3600');
    assert.equal(await runningOn('worker', ids.worker), 2);
    assert.equal(await runningOn('manager', ids.manager), 2);

    ip('link', 'set', VETH_HOST, 'down');
    await eventually('4 replicas on the manager while the worker is cut off', async () => (await runningOn('manager', ids.manager)) === 4, 30_000);
    assert.equal(json<{ id: string; status: string }[]>('node', 'ls', '--format', 'json').find((n) => n.id === ids.worker)?.status, 'down');
    assert.equal(await runningOn('worker', ids.worker), 2, 'the cut-off worker keeps running what it has');

    ip('link', 'set', VETH_HOST, 'up');
    await eventually('the healed worker stopped its stale tasks', async () => (await runningOn('worker', ids.worker)) === 0, 40_000);
    await eventually('the worker ready again', () => json<{ id: string; status: string }[]>('node', 'ls', '--format', 'json').find((n) => n.id === ids.worker)?.status === 'ready', 40_000);
    assert.equal(await runningOn('manager', ids.manager), 4);
    const ls = json<{ replicas: { desired: number; running: number } }[]>('service', 'ls', '--format', 'json');
    assert.deepEqual(ls[0]?.replicas, { desired: 4, running: 4 });
  });
});
