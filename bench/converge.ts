// bench/converge: time from `service create` of N busybox replicas to all running, beside the same N containers
// created and started directly through the Engine API with the same parallelism (all at once, as the agent does),
// in the same run. Prints each figure and the ratio Shoal / direct. Never passes or fails on a time.
//
// Usage: node dist/bench/converge.js [--replicas 50] [--runs 3]

import { parseArgs } from 'node:util';
import { rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { ShoalClient } from '../src/cli/client.js';
import { waitConverged, waitRemoved } from '../src/cli/converge.js';
import { silentLogger } from '../src/lib/logger.js';
import { startDaemon } from '../src/manager/daemon.js';
import { initDataDir, readDataDir, readNodeTls } from '../src/manager/data-dir.js';

const IMAGE = 'shoal-test/busybox';
const COMMAND = ['sleep', '3600'];
const BENCH_LABEL = 'shoal.bench';

const { values } = parseArgs({ options: { replicas: { type: 'string', default: '50' }, runs: { type: 'string', default: '3' } } });
const N = Number(values.replicas);
const RUNS = Number(values.runs);
const docker = new Docker({ socketPath: '/var/run/docker.sock' });

/** The baseline: N containers with the same config the Docker runtime uses, created and started all at once. */
const direct = async (run: number): Promise<number> => {
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const c = await docker.createContainer({
        name: `shoal-bench-direct-${run}-${i}`,
        Image: IMAGE,
        Cmd: COMMAND,
        Env: [],
        Labels: { [BENCH_LABEL]: 'direct', 'shoal.task.slot': String(i + 1) },
        HostConfig: { NanoCpus: 0, Memory: 0, RestartPolicy: { Name: 'no' }, Init: true },
      });
      await c.start();
    }),
  );
  const ms = performance.now() - t0;
  await cleanupDirect();
  return ms;
};

const cleanupDirect = async (): Promise<void> => {
  const list = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=direct`] } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true })));
};

const shoal = async (client: ShoalClient, run: number): Promise<number> => {
  const name = `bench-${run}`;
  const t0 = performance.now();
  await client.createService({ name, mode: { replicated: { replicas: N } }, task: { container: { image: IMAGE, command: COMMAND } } });
  await waitConverged(client, name, { desired: N, timeoutMs: 300_000, settleMs: 60_000 });
  const ms = performance.now() - t0;
  const removed = await client.removeService(name);
  await waitRemoved(client, removed.id, { timeoutMs: 300_000 });
  return ms;
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

const main = async (): Promise<void> => {
  await docker.ping();
  const dataDir = mkdtempSync(join(tmpdir(), 'shoal-bench-'));
  await initDataDir(dataDir, { listenAddr: '127.0.0.1:0', runtime: 'docker' });
  const daemon = await startDaemon({ dataDir, logger: silentLogger });
  const token = readDataDir(dataDir)?.credentials.adminToken ?? '';
  const client = new ShoalClient({ hosts: [daemon.manager.address], token, ca: readNodeTls(dataDir).ca });
  const results: { direct: number; shoal: number }[] = [];
  try {
    await cleanupDirect();
    // Warm-up: the first container start after an engine start pays one-off costs that are nobody's to measure.
    await direct(-1);
    for (let r = 0; r < RUNS; r++) {
      // Alternate the order so neither side always runs on a warmer (or more fragmented) engine.
      const first = r % 2 === 0 ? 'direct' : 'shoal';
      const d = first === 'direct' ? await direct(r) : 0;
      const s = await shoal(client, r);
      const d2 = first === 'shoal' ? await direct(r) : d;
      results.push({ direct: d2, shoal: s });
      process.stdout.write(`run ${r + 1}/${RUNS}: direct ${d2.toFixed(0)} ms, shoal ${s.toFixed(0)} ms, ratio ${(s / d2).toFixed(3)}\n`);
    }
  } finally {
    await daemon.close();
    await cleanupDirect();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const md = median(results.map((r) => r.direct));
  const ms = median(results.map((r) => r.shoal));
  process.stdout.write(`\nconverge N=${N} runs=${RUNS} (median)\n`);
  process.stdout.write(`  Engine API direct, all at once : ${md.toFixed(0)} ms\n`);
  process.stdout.write(`  Shoal create → all running     : ${ms.toFixed(0)} ms\n`);
  process.stdout.write(`  ratio shoal/direct             : ${(ms / md).toFixed(3)}  (target ≤ 1.10)\n`);
};

await main();
