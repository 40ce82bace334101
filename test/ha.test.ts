// High availability: three managers (each its own process and data dir) on a three-member etcd cluster, plus a
// worker, all on the exec runtime. The leading manager is SIGKILLed: another takes over, creates and failover keep
// working, nothing is lost or duplicated. An etcd member is SIGKILLed and restarted. Concurrent compare-and-set
// writers race a leader kill: every acknowledged write is there, none applied twice.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ShoalClient, ApiError } from '../src/cli/client.js';
import type { Service } from '../src/core/index.js';
import type { ClusterStatusResponse, TaskListItem } from '../src/protocol/index.js';
import { openStore } from '../src/store/index.js';
import { startEtcd, type EtcdCluster } from './etcd.js';
import { cliWith, eventually, freePort, killExecTasks, tempDir } from './helpers.js';

const MANAGERS = ['m1', 'm2', 'm3'] as const;

describe('managers on etcd: leader election, failover, no lost state', () => {
  let dir = '';
  let etcd: EtcdCluster | undefined;
  let env: Record<string, string> = {};
  const addr: Record<string, string> = {};
  const { run, ok, json } = cliWith(() => env);
  const config = (d: string): { nodeId: string } => JSON.parse(readFileSync(join(dir, d, 'node.json'), 'utf8')) as { nodeId: string };
  const pidOf = (d: string): number => Number(readFileSync(join(dir, d, 'shoal.pid'), 'utf8'));
  const status = (): ClusterStatusResponse => json<ClusterStatusResponse>('cluster', 'status', '--format', 'json');
  /** The data dir name of the manager that leads now (polled until one does). */
  const leaderDir = async (except?: string): Promise<string> =>
    eventually('a leader', () => {
      const leader = status().leader;
      const d = MANAGERS.find((m) => leader && config(m).nodeId === leader.nodeId);
      return d !== undefined && d !== except && d;
    });
  const tasks = (service: string): TaskListItem[] => json<TaskListItem[]>('service', 'ps', service, '--format', 'json');
  const live = (service: string): TaskListItem[] => tasks(service).filter((t) => t.desiredState === 'running');
  const killed = new Set<string>();

  before(async () => {
    dir = tempDir('shoal-ha-');
    env = { SHOAL_CONFIG: join(dir, 'config.json') };
    etcd = await startEtcd({ members: 3 });
    for (const m of MANAGERS) addr[m] = `127.0.0.1:${await freePort()}`;
    ok('init', '--detach', '--data-dir', join(dir, 'm1'), '--listen-addr', addr.m1 ?? '', '--runtime', 'exec', '--store', etcd.url);
  });

  after(async () => {
    for (const d of [...MANAGERS, 'w1', 'w2']) run('stop', '--data-dir', join(dir, d));
    if (dir) killExecTasks(dir);
    await etcd?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('joins two more managers with the manager token and a worker; node ls shows who leads', async () => {
    const token = ok('join-token', 'manager', '-q').trim();
    for (const m of ['m2', 'm3'] as const) {
      const out = ok('join', '--token', token, '--data-dir', join(dir, m), '--listen-addr', addr[m] ?? '', '--runtime', 'exec', '--detach', addr.m1 ?? '');
      assert.match(out, /joined cluster .* as manager/);
    }
    ok('join', '--token', ok('join-token', 'worker', '-q').trim(), '--data-dir', join(dir, 'w1'), '--runtime', 'exec', '--detach', addr.m2 ?? '');
    const nodes = await eventually('4 ready nodes, one leader', () => {
      const ns = json<{ id: string; role: string; status: string; managerStatus?: string }[]>('node', 'ls', '--format', 'json');
      return ns.length === 4 && ns.every((n) => n.status === 'ready') && ns.filter((n) => n.managerStatus === 'leader').length === 1 && ns;
    });
    assert.equal(nodes.filter((n) => n.role === 'manager').length, 3);
    assert.deepEqual(nodes.filter((n) => n.role === 'manager').map((n) => n.managerStatus).sort(), ['leader', 'reachable', 'reachable']);
    assert.match(ok('node', 'ls'), /Leader/);
    const st = status();
    assert.equal(st.store.backend, 'etcd');
    assert.equal(st.store.members.length, 3);
    assert.ok(st.store.members.every((m) => m.healthy));
    assert.equal(st.managers.length, 3);
    // The CLI context now knows every manager.
    const ctx = JSON.parse(readFileSync(env.SHOAL_CONFIG ?? '', 'utf8')) as { hosts: string[] };
    assert.deepEqual([...ctx.hosts].sort(), Object.values(addr).sort());
  });

  it('every manager serves the API: a service created through a follower runs', async () => {
    const leader = await leaderDir();
    const follower = MANAGERS.find((m) => m !== leader) ?? 'm2';
    ok('--host', addr[follower] ?? '', 'service', 'create', '--name', 'web', '--replicas', '6', '--restart-delay', '0s', '--detach', 'sh', '/bin/sleep', '3600');
    await eventually('6 replicas running', () => live('web').filter((t) => t.state === 'running').length === 6, 30_000);
    // Names are unique across managers: creating it again through another manager is refused.
    const again = run('--host', addr[leader] ?? '', 'service', 'create', '--name', 'web', 'sh', '/bin/sleep', '1');
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists/);
  });

  it('SIGKILL of the leading manager: another leads, creates and failover keep working, nothing lost or duplicated', async () => {
    const before = json<{ id: string; name: string }[]>('service', 'ls', '--format', 'json');
    const leader = await leaderDir();
    const leaderId = config(leader).nodeId;
    process.kill(pidOf(leader), 'SIGKILL');
    killed.add(leader);
    const t0 = Date.now();
    const next = await leaderDir(leader);
    assert.notEqual(next, leader);
    const took = Date.now() - t0;
    assert.ok(took < 15_000, `a new leader within 15 s (took ${took} ms)`);
    process.stdout.write(`new leader ${next} seen ${took} ms after the kill\n`);
    // The new leader replaces the tasks that ran on the dead manager's node; each slot has exactly one live task.
    await eventually('6 replicas of web running on live nodes', () => {
      const l = live('web');
      return l.length === 6 && l.every((t) => t.state === 'running' && t.nodeId !== leaderId) && new Set(l.map((t) => t.slot)).size === 6;
    }, 30_000);
    ok('service', 'create', '--name', 'after-failover', '--replicas', '2', '--restart-delay', '0s', '--detach', 'sh', '/bin/sleep', '3600');
    await eventually('after-failover running', () => live('after-failover').filter((t) => t.state === 'running').length === 2, 30_000);
    const now = json<{ id: string; name: string }[]>('service', 'ls', '--format', 'json');
    assert.deepEqual(now.map((s) => s.id).sort(), [...before.map((s) => s.id), now.find((s) => s.name === 'after-failover')?.id].sort(), 'no service lost or duplicated');
    // The dead manager restarts from its data dir and follows.
    ok('join', '--data-dir', join(dir, leader), '--detach');
    killed.delete(leader);
    await eventually('3 managers reachable again', () => status().managers.filter((m) => m.status === 'ready').length === 3, 30_000);
  });

  it('SIGKILL of one etcd member of three: the cluster keeps working; restarted, it catches up', async () => {
    const cluster = etcd;
    assert.ok(cluster);
    const victim = cluster.members[2];
    assert.ok(victim);
    await victim.kill('SIGKILL');
    // While the two left elect a leader (the victim may have led), all three can look unhealthy for a moment.
    await eventually('the killed member reported unhealthy, the other two healthy', () => {
      const healthy = status().store.members.map((m) => m.healthy);
      return healthy.length === 3 && healthy.filter(Boolean).length === 2;
    });
    ok('service', 'scale', 'web=8', '--detach');
    await eventually('8 replicas running', () => live('web').filter((t) => t.state === 'running').length === 8, 30_000);
    await victim.start();
    await eventually('all members healthy', () => status().store.members.every((m) => m.healthy), 30_000);
    // The restarted member serves the latest state on its own.
    const store = await openStore({ kind: 'etcd', endpoints: [victim.clientUrl] });
    try {
      const web = (await store.list('service')).items.find((s) => s.spec.name === 'web');
      assert.deepEqual(web?.spec.mode, { replicated: { replicas: 8 } });
    } finally {
      await store.close();
    }
  });

  it('concurrent compare-and-set writers while the leader is killed: every acknowledged write is there, none twice', async () => {
    const ctx = JSON.parse(readFileSync(env.SHOAL_CONFIG ?? '', 'utf8')) as { hosts: string[]; token: string; ca: string };
    // A service no node can run (its constraint matches nothing): scaling it only writes the store.
    ok('service', 'create', '--name', 'counter', '--replicas', '0', '--constraint', 'node.labels.nowhere==true', '--detach', 'sh', '/bin/true');
    const clients = Array.from({ length: 6 }, (_, i) => new ShoalClient({ hosts: [...ctx.hosts.slice(i % 3), ...ctx.hosts.slice(0, i % 3)], token: ctx.token, ca: ctx.ca }));
    const start = await clients[0]?.inspectService('counter');
    assert.ok(start);
    const acked: number[] = [];
    let unknown = 0;
    let conflicts = 0;
    const deadline = Date.now() + 8000;
    const writer = async (c: ShoalClient): Promise<void> => {
      for (let i = 0; i < 400 && Date.now() < deadline; i++) {
        try {
          const s = await c.inspectService('counter');
          const replicas = 'replicated' in s.spec.mode ? s.spec.mode.replicated.replicas : 0;
          const r = await c.scaleService('counter', replicas + 1, s.meta.version);
          acked.push(r.meta.version);
        } catch (e) {
          if (e instanceof ApiError && e.code === 'conflict') conflicts++;
          else if (e instanceof ApiError && e.code === 'unavailable') unknown++;
          else throw e;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const leader = await leaderDir();
    const writers = clients.map((c) => writer(c));
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(pidOf(leader), 'SIGKILL');
    killed.add(leader);
    await Promise.all(writers);
    for (const c of clients) c.close();
    const end = json<{ meta: { version: number }; spec: { mode: { replicated: { replicas: number } } } }[]>('service', 'inspect', 'counter')[0];
    assert.ok(end);
    const applied = end.spec.mode.replicated.replicas - ('replicated' in start.spec.mode ? start.spec.mode.replicated.replicas : 0);
    process.stdout.write(`CAS writers: ${acked.length} acknowledged, ${conflicts} conflicts, ${unknown} unknown outcome, ${applied} applied\n`);
    assert.ok(acked.length > 20, `writers made progress (${acked.length} acknowledged, ${conflicts} conflicts, ${unknown} unknown)`);
    assert.equal(new Set(acked).size, acked.length, 'no two acknowledged writes produced the same version');
    // Each applied write adds one replica and one version: nothing applied twice, nothing acknowledged lost.
    assert.equal(end.meta.version - start.meta.version, applied, 'one version per applied write');
    assert.ok(applied >= acked.length, `every acknowledged write is present (${applied} applied, ${acked.length} acknowledged)`);
    assert.ok(applied <= acked.length + unknown, `only acknowledged or unknown-outcome writes applied (${applied} applied, ${acked.length} acked, ${unknown} unknown)`);
    ok('join', '--data-dir', join(dir, leader), '--detach');
    killed.delete(leader);
  });

  it('a leader change in the middle of a rolling update: the next leader resumes and completes it', async () => {
    ok('service', 'create', '--name', 'rolling', '--replicas', '4', '--env', 'V=1', '--restart-delay', '0s', '--update-parallelism', '1', '--update-delay', '1s', '--update-monitor', '500ms', 'sh', '/bin/sleep', '3600');
    ok('service', 'update', '--env-add', 'V=2', '--detach', 'rolling');
    await eventually('the update under way', () => live('rolling').some((t) => t.upToDate && t.state === 'running'), 30_000);
    const leader = await leaderDir();
    process.kill(pidOf(leader), 'SIGKILL');
    await eventually('the update completed by the next leader', () => json<Service[]>('service', 'inspect', 'rolling')[0]?.updateStatus?.state === 'completed', 60_000);
    const tasks = live('rolling');
    assert.equal(tasks.length, 4);
    assert.ok(tasks.every((t) => t.upToDate && t.state === 'running'), JSON.stringify(tasks));
    ok('join', '--data-dir', join(dir, leader), '--detach');
    await eventually('3 managers reachable again', () => status().managers.filter((m) => m.status === 'ready').length === 3, 30_000);
  });

  it('promotes a worker to manager and demotes it back', async () => {
    // A worker that joined without an address has none to serve the API on.
    const noAddress = run('node', 'promote', config('w1').nodeId);
    assert.notEqual(noAddress.code, 0);
    assert.match(noAddress.stderr, /no HOST:PORT address to serve on/);
    addr.w2 = `127.0.0.1:${await freePort()}`;
    ok('join', '--token', ok('join-token', 'worker', '-q').trim(), '--data-dir', join(dir, 'w2'), '--listen-addr', addr.w2, '--runtime', 'exec', '--detach', addr.m1 ?? '');
    const w2 = config('w2').nodeId;
    type Row = { id: string; role: string; status: string; managerStatus?: string };
    const row = (): Row | undefined => json<Row[]>('node', 'ls', '--format', 'json').find((n) => n.id === w2);
    await eventually('w2 ready', () => row()?.status === 'ready');
    assert.match(ok('node', 'promote', w2), /is now a manager/);
    await eventually('w2 a reachable manager', () => {
      const r = row();
      return r?.role === 'manager' && r.status === 'ready' && (r.managerStatus === 'reachable' || r.managerStatus === 'leader');
    }, 30_000);
    assert.ok(existsSync(join(dir, 'w2', 'ca-key.pem')), 'the promoted node holds the CA key');
    const token = (JSON.parse(readFileSync(join(dir, 'w2', 'credentials.json'), 'utf8')) as { adminToken: string }).adminToken;
    const ca = readFileSync(join(dir, 'w2', 'ca.pem'), 'utf8');
    const own = new ShoalClient({ hosts: [addr.w2], token, ca });
    assert.equal((await own.info()).nodeId, w2, 'it serves the API with the admin token it made');
    own.close();
    assert.match(ok('node', 'demote', w2), /is now a worker/);
    await eventually('w2 a worker again', () => {
      const r = row();
      return r?.role === 'worker' && r.status === 'ready' && r.managerStatus === undefined && !existsSync(join(dir, 'w2', 'ca-key.pem'));
    }, 30_000);
    // Its admin token is revoked: refused by every manager.
    const revoked = new ShoalClient({ hosts: [addr.m1 ?? ''], token, ca });
    await assert.rejects(revoked.info(), (e: ApiError) => e.status === 401);
    revoked.close();
  });
});

describe('a manager on an etcd that requires TLS client certificates', () => {
  let dir = '';
  let etcd: EtcdCluster | undefined;
  let env: Record<string, string> = {};
  const { run, ok, json } = cliWith(() => env);

  before(async () => {
    dir = tempDir('shoal-ha-tls-');
    env = { SHOAL_CONFIG: join(dir, 'config.json') };
    etcd = await startEtcd({ members: 1, tls: true });
  });

  after(async () => {
    run('stop', '--data-dir', join(dir, 'm1'));
    if (dir) killExecTasks(dir);
    await etcd?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start without the client certificate, then runs with --store-ca/--store-cert/--store-key', async () => {
    const tls = etcd?.tls;
    assert.ok(etcd && tls);
    for (const f of ['ca', 'cert', 'key'] as const) writeFileSync(join(dir, `${f}.pem`), tls[f]);
    const addr = `127.0.0.1:${await freePort()}`;
    const bare = run('init', '--detach', '--data-dir', join(dir, 'bare'), '--listen-addr', addr, '--runtime', 'exec', '--store', etcd.url, '--store-ca', join(dir, 'ca.pem'));
    assert.notEqual(bare.code, 0, 'etcd requires a client certificate');
    assert.match(bare.stderr, /etcd|store|unavailable/i);
    const half = run('init', '--data-dir', join(dir, 'half'), '--store', etcd.url, '--store-ca', join(dir, 'ca.pem'), '--store-cert', join(dir, 'cert.pem'));
    assert.notEqual(half.code, 0);
    assert.match(half.stderr, /--store-cert and --store-key go together/);
    ok('init', '--detach', '--data-dir', join(dir, 'm1'), '--listen-addr', addr, '--runtime', 'exec', '--store', etcd.url, '--store-ca', join(dir, 'ca.pem'), '--store-cert', join(dir, 'cert.pem'), '--store-key', join(dir, 'key.pem'));
    assert.equal(json<ClusterStatusResponse>('cluster', 'status', '--format', 'json').store.members.filter((m) => m.healthy).length, 1);
    ok('service', 'create', '--name', 'tls', '--replicas', '2', '--restart-delay', '0s', 'sh', '/bin/sleep', '3600');
    await eventually('2 replicas running', () => json<TaskListItem[]>('service', 'ps', 'tls', '--format', 'json').filter((t) => t.state === 'running').length === 2);
  });
});
