// bench/scale's hollow nodes, in a process of their own (so their CPU and memory are not the bench's or the manager's):
// joins N hollow nodes, then answers the bench over IPC — kill K nodes at once (a crash: the manager finds them down),
// count the containers that run on the live nodes (the ground truth of what runs), stop.
//
// Started by bench/scale.ts with fork(): argv is MANAGER TOKEN COUNT [START_LATENCY_MS].

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startHollowNodes, type HollowNode } from '../src/cli/hollow-nodes.js';
import { createLogger } from '../src/lib/logger.js';

export type NodesRequest = { type: 'kill'; count: number } | { type: 'count' } | { type: 'stop' };
export type NodesReply =
  | { type: 'joined'; ms: number; nodeIds: string[] }
  | { type: 'killed'; nodeIds: string[] }
  /** `maxLoopDelayMs`: the longest this process's event loop (every node's heartbeats) was held up since the last count. */
  | { type: 'count'; running: number; maxLoopDelayMs: number }
  | { type: 'stopped' }
  | { type: 'error'; message: string };

const send = (m: NodesReply): void => void process.send?.(m);

const main = async (): Promise<void> => {
  const [manager = '', token = '', count = '0', latency = '0'] = process.argv.slice(2);
  const t0 = performance.now();
  const nodes = await startHollowNodes({
    manager,
    token,
    count: Number(count),
    joinConcurrency: 64,
    sim: { startLatencyMs: Number(latency) },
    logger: createLogger({ level: 'error' }),
  });
  await nodes.connected(300_000);
  send({ type: 'joined', ms: performance.now() - t0, nodeIds: nodes.nodes.map((n) => n.nodeId) });
  const live = new Set<HollowNode>(nodes.nodes);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  process.on('message', (m: NodesRequest) => {
    void (async () => {
      switch (m.type) {
        case 'kill': {
          // Spread over the list rather than the first K, so no one service's tasks are all on killed nodes.
          const step = Math.max(1, Math.floor(nodes.nodes.length / m.count));
          const victims = nodes.nodes.filter((_, i) => i % step === 0).slice(0, m.count);
          await Promise.all(victims.map((n) => n.kill()));
          for (const v of victims) live.delete(v);
          send({ type: 'killed', nodeIds: victims.map((n) => n.nodeId) });
          break;
        }
        case 'count': {
          // Straight from each simulated machine's containers: listing them (100,000 copies every ~100 ms) would take
          // CPU from the manager this process shares the machine with.
          let running = 0;
          for (const n of live) for (const c of n.runtime.host.containers.values()) if (c.state === 'running') running++;
          send({ type: 'count', running, maxLoopDelayMs: loop.max / 1e6 });
          loop.reset();
          break;
        }
        case 'stop':
          await nodes.stopAll();
          send({ type: 'stopped' });
          process.disconnect();
          break;
      }
    })().catch((e: unknown) => send({ type: 'error', message: e instanceof Error ? e.message : String(e) }));
  });
};

main().catch((e: unknown) => {
  send({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  process.exitCode = 1;
  process.disconnect();
});
