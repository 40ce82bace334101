// bench/failover: a drained manager and 3 workers (each its own process and data dir), a service of 30 replicas;
// each round SIGKILLs one worker and times how long until 30 replicas run again on the live workers. Prints every
// round, the median and the max, and Docker Swarm mode's default detection time beside them for context.
// Never passes or fails on a time.
//
// Usage: node dist/bench/failover.js [--rounds 5] [--replicas 30] [--runtime docker|exec]

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Docker from 'dockerode';
import { ShoalClient } from '../src/cli/client.js';
import { waitConverged } from '../src/cli/converge.js';
import { freePort, killExecTasks } from '../test/helpers.js';
import { benchCluster, median } from './cluster-support.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, replicas: { type: 'string', default: '30' }, runtime: { type: 'string', default: 'docker' } } });
const ROUNDS = Number(values.rounds);
const REPLICAS = Number(values.replicas);
const RUNTIME = values.runtime === 'exec' ? 'exec' : 'docker';
const WORKERS = 3;
const { dir, shoal, stop, nodeIdOf, pidOf, context } = benchCluster('shoal-failover-');

/** Waits until `count` replicas run on nodes other than `dead`, following the task list as it changes. */
const runningElsewhere = async (client: ShoalClient, dead: string, count: number, signal: AbortSignal): Promise<void> => {
  for await (const tasks of client.watchServiceTasks('bench', signal)) {
    const n = tasks.filter((t) => t.desiredState === 'running' && t.state === 'running' && t.nodeId !== dead).length;
    if (n >= count) return;
  }
  throw new Error('task stream ended');
};

/** Milliseconds from `t0` until the manager marks the node down (polled every 50 ms). */
const markedDown = async (client: ShoalClient, nodeId: string, t0: number): Promise<number> => {
  for (let i = 0; i < 6000; i++) {
    if ((await client.listNodes()).find((n) => n.id === nodeId)?.status === 'down') return performance.now() - t0;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`node ${nodeId} never marked down`);
};

const main = async (): Promise<void> => {
  const managerAddr = `127.0.0.1:${await freePort()}`;
  const nodeIds: string[] = [];
  try {
    shoal('init', '--detach', '--data-dir', join(dir, 'manager'), '--listen-addr', managerAddr, '--runtime', RUNTIME);
    nodeIds.push(nodeIdOf('manager'));
    const client = new ShoalClient(context());
    // The manager takes no tasks: the replicas live on the workers, as in the setup.
    await client.updateNode(nodeIdOf('manager'), { availability: 'drain' });
    const token = shoal('join-token', 'worker', '-q').trim();
    for (let i = 0; i < WORKERS; i++) {
      shoal('join', '--token', token, '--data-dir', join(dir, `w${i}`), '--runtime', RUNTIME, '--detach', managerAddr);
      nodeIds.push(nodeIdOf(`w${i}`));
    }
    const command = RUNTIME === 'exec' ? ['/bin/sleep', '3600'] : ['sleep', '3600'];
    await client.createService({ name: 'bench', mode: { replicated: { replicas: REPLICAS } }, task: { container: { image: 'shoal-test/busybox', command }, restartPolicy: { delayMs: 0 } } });
    await waitConverged(client, 'bench', { desired: REPLICAS, timeoutMs: 300_000, settleMs: 60_000 });
    const times: number[] = [];
    const detections: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const victim = `w${r % WORKERS}`;
      const victimId = nodeIdOf(victim);
      const onVictim = (await client.serviceTasks('bench')).filter((t) => t.desiredState === 'running' && t.nodeId === victimId).length;
      const t0 = performance.now();
      process.kill(pidOf(victim), 'SIGKILL');
      const [detected] = await Promise.all([markedDown(client, victimId, t0), runningElsewhere(client, victimId, REPLICAS, AbortSignal.timeout(300_000))]);
      const ms = performance.now() - t0;
      times.push(ms);
      detections.push(detected);
      process.stdout.write(`round ${r + 1}/${ROUNDS}: killed ${victim} (${onVictim} replicas): marked down after ${detected.toFixed(0)} ms, all ${REPLICAS} running again after ${ms.toFixed(0)} ms\n`);
      // Bring the worker back (it rejoins with its certificate) and let its stale tasks be shut down.
      shoal('join', '--data-dir', join(dir, victim), '--detach');
      await waitConverged(client, 'bench', { desired: REPLICAS, timeoutMs: 300_000, settleMs: 60_000 });
      await new Promise((res) => setTimeout(res, 2000));
    }
    client.close();
    process.stdout.write(`\nfailover, ${WORKERS} workers, ${REPLICAS} replicas, runtime ${RUNTIME}, ${ROUNDS} rounds\n`);
    process.stdout.write(`  Shoal (heartbeat 500 ms, down after 3 missed) : median ${median(times).toFixed(0)} ms, max ${Math.max(...times).toFixed(0)} ms  (target median ≤ 3000 ms)\n`);
    process.stdout.write(`  of which detection (node marked down)        : median ${median(detections).toFixed(0)} ms; the rest is starting the replacements\n`);
    process.stdout.write(`  Docker Swarm mode defaults, for context      : detection alone ≈ 15000 ms (5 s heartbeat × 3), before any rescheduling\n`);
  } finally {
    for (const d of ['manager', ...Array.from({ length: WORKERS }, (_, i) => `w${i}`)]) stop(d);
    if (RUNTIME === 'docker') {
      const docker = new Docker({ socketPath: '/var/run/docker.sock' });
      for (const id of nodeIds) {
        for (const c of await docker.listContainers({ all: true, filters: { label: [`shoal.node.id=${id}`] } })) await docker.getContainer(c.Id).remove({ force: true });
      }
    } else {
      // exec tasks are process groups recorded under each data dir; kill what is left before removing the dirs.
      killExecTasks(dir);
    }
    rmSync(dir, { recursive: true, force: true });
  }
};

await main();
