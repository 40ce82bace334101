// bench/ha: three managers (each its own process and data dir) on a three-member etcd cluster, drained, and a worker
// (exec runtime) that runs the tasks, so that starting processes never competes with a manager's event loop.
//
// 1. Leader failover: each round SIGKILLs the leading manager and at once scales a service through a surviving
//    manager (the write is acknowledged by etcd); it times how long until that change is reconciled (the new slot's
//    task created and assigned by the next leader). The same change without a kill is the same-run baseline.
// 2. Scheduling throughput: time from creating a service of N replicas to all N assigned, on a one-manager cluster
//    with the embedded SQLite store and on the etcd cluster, as tasks/second and their ratio.
// Prints figures; never passes or fails on a time.
//
// Usage: node dist/bench/ha.js [--rounds 5] [--tasks 300]

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ShoalClient } from '../src/cli/client.js';
import type { TaskListItem } from '../src/protocol/index.js';
import { startEtcd, type EtcdCluster } from '../test/etcd.js';
import { freePort, killExecTasks } from '../test/helpers.js';
import { benchCluster, median } from './cluster-support.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, tasks: { type: 'string', default: '300' } } });
const ROUNDS = Number(values.rounds);
const TASKS = Number(values.tasks);
const { dir, shoal, stop, nodeIdOf, pidOf, context } = benchCluster('shoal-ha-bench-');
const MANAGERS = ['m1', 'm2', 'm3'];
const LIMIT_MS = 60_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 10 ms until it holds; fails after LIMIT_MS. */
const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
  const deadline = Date.now() + LIMIT_MS;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(10);
  }
  throw new Error(`gave up after ${LIMIT_MS} ms waiting for ${what}`);
};

const clientOf = (hosts: string[]): ShoalClient => new ShoalClient({ ...context(), hosts });

const assignedCount = (tasks: TaskListItem[]): number => tasks.filter((t) => t.desiredState === 'running' && t.nodeId !== '').length;

/** Scales `service` by one through `client` and returns ms until the new slot's task is assigned to a node. */
const scaleAndTime = async (client: ShoalClient, service: string, t0: number): Promise<number> => {
  const s = await client.inspectService(service);
  const next = ('replicated' in s.spec.mode ? s.spec.mode.replicated.replicas : 0) + 1;
  await client.scaleService(service, next);
  await until(`slot ${next} assigned`, async () => assignedCount(await client.serviceTasks(service)) >= next);
  return performance.now() - t0;
};

const leaderDir = async (client: ShoalClient, except?: string): Promise<string> => {
  let found = '';
  await until('a leader', async () => {
    const st = await client.clusterStatus();
    found = MANAGERS.find((m) => st.leader?.nodeId === nodeIdOf(m) && m !== except) ?? '';
    return found !== '';
  });
  return found;
};

/** Drains the managers of `managerDirs` (they run no tasks) and joins a worker that runs them all. */
const addWorker = async (client: ShoalClient, managerDirs: string[], d: string, managerAddr: string): Promise<void> => {
  for (const m of managerDirs) await client.updateNode(nodeIdOf(m), { availability: 'drain' });
  shoal('join', '--token', shoal('join-token', 'worker', '-q').trim(), '--data-dir', join(dir, d), '--runtime', 'exec', '--detach', managerAddr);
  dirs.push(d);
};

/** Tasks/second from creating a service of `n` replicas until all are assigned. */
const throughput = async (client: ShoalClient, name: string, n: number): Promise<number> => {
  const t0 = performance.now();
  await client.createService({ name, mode: { replicated: { replicas: n } }, task: { container: { image: 'sh', command: ['/bin/sleep', '3600'] }, restartPolicy: { delayMs: 0 } } });
  await until(`${n} tasks of ${name} assigned`, async () => assignedCount(await client.serviceTasks(name)) >= n);
  const s = (performance.now() - t0) / 1000;
  await client.removeService(name);
  await until(`${name} removed`, async () => (await client.listServices()).every((x) => x.name !== name));
  return n / s;
};

const dirs: string[] = [];

const main = async (): Promise<void> => {
  let etcd: EtcdCluster | undefined;
  try {
    // --- throughput on the embedded SQLite store (a one-manager cluster)
    const sqliteAddr = `127.0.0.1:${await freePort()}`;
    shoal('init', '--detach', '--data-dir', join(dir, 'sqlite'), '--listen-addr', sqliteAddr, '--runtime', 'exec');
    dirs.push('sqlite');
    const sqliteClient = clientOf([sqliteAddr]);
    await addWorker(sqliteClient, ['sqlite'], 'sqlite-w', sqliteAddr);
    const sqliteRate = await throughput(sqliteClient, 'tp', TASKS);
    sqliteClient.close();
    for (const d of ['sqlite-w', 'sqlite']) stop(d);

    // --- three managers on three etcd members
    etcd = await startEtcd({ members: 3 });
    const addr: Record<string, string> = {};
    for (const m of MANAGERS) addr[m] = `127.0.0.1:${await freePort()}`;
    shoal('init', '--detach', '--data-dir', join(dir, 'm1'), '--listen-addr', addr.m1 ?? '', '--runtime', 'exec', '--store', etcd.url);
    dirs.push('m1');
    const token = shoal('join-token', 'manager', '-q').trim();
    for (const m of ['m2', 'm3']) {
      shoal('join', '--token', token, '--data-dir', join(dir, m), '--listen-addr', addr[m] ?? '', '--runtime', 'exec', '--detach', addr.m1 ?? '');
      dirs.push(m);
    }
    const all = clientOf(Object.values(addr));
    await addWorker(all, MANAGERS, 'w1', addr.m1 ?? '');
    const etcdRate = await throughput(all, 'tp', TASKS);

    await all.createService({ name: 'probe', mode: { replicated: { replicas: 1 } }, task: { container: { image: 'sh', command: ['/bin/sleep', '3600'] }, restartPolicy: { delayMs: 0 } } });
    await until('probe assigned', async () => assignedCount(await all.serviceTasks('probe')) >= 1);
    const worker = nodeIdOf('w1');
    const baseline: number[] = [];
    const failover: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      baseline.push(await scaleAndTime(all, 'probe', performance.now()));
      const leader = await leaderDir(all);
      const survivors = clientOf(MANAGERS.filter((m) => m !== leader).map((m) => addr[m] ?? ''));
      const t0 = performance.now();
      process.kill(pidOf(leader), 'SIGKILL');
      const ms = await scaleAndTime(survivors, 'probe', t0);
      failover.push(ms);
      const next = await leaderDir(survivors, leader);
      if ((await survivors.serviceTasks('probe')).some((t) => t.desiredState === 'running' && t.nodeId !== worker)) throw new Error('a probe task ran off the worker');
      process.stdout.write(`round ${r + 1}/${ROUNDS}: killed leader ${leader}; ${next} leads; change reconciled ${ms.toFixed(0)} ms after the kill (no-kill baseline ${baseline[r]?.toFixed(0)} ms)\n`);
      survivors.close();
      // The killed manager restarts from its data dir and follows; wait until all three are back.
      shoal('join', '--data-dir', join(dir, leader), '--detach');
      await until('3 managers ready', async () => (await all.clusterStatus()).managers.filter((m) => m.status === 'ready').length === 3);
    }
    all.close();

    process.stdout.write(`\nHA, 3 drained managers on 3 etcd members, 1 worker (exec runtime), ${ROUNDS} rounds\n`);
    process.stdout.write(`  SIGKILL leader -> next change reconciled by another : median ${median(failover).toFixed(0)} ms, max ${Math.max(...failover).toFixed(0)} ms  (target median ≤ 3000 ms)\n`);
    process.stdout.write(`  same change with no kill (baseline, same run)       : median ${median(baseline).toFixed(0)} ms  (ratio ${(median(failover) / median(baseline)).toFixed(1)}x)\n`);
    process.stdout.write(`\nscheduling throughput, ${TASKS} tasks created to all assigned\n`);
    process.stdout.write(`  embedded SQLite, 1 manager, 1 worker  : ${sqliteRate.toFixed(0)} tasks/s\n`);
    process.stdout.write(`  etcd, 3 members, 3 managers, 1 worker : ${etcdRate.toFixed(0)} tasks/s  (etcd/SQLite ratio ${(etcdRate / sqliteRate).toFixed(2)})\n`);
  } finally {
    for (const d of dirs) stop(d);
    // exec tasks are process groups recorded under each data dir; kill what is left before removing the dirs.
    killExecTasks(dir);
    await etcd?.close();
    rmSync(dir, { recursive: true, force: true });
  }
};

await main();
