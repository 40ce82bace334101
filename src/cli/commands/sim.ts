// `shoal sim nodes`: runs N hollow nodes in this one process — each joins with its own identity and holds its own real
// session to the manager, with the sim runtime (which starts nothing) — until Ctrl-C or SIGTERM stops them all.

import type { Command } from 'commander';
import { parseDuration } from '../../core/index.js';
import { createLogger } from '../../lib/logger.js';
import { parseHostPort } from '../../protocol/index.js';
import type { SimDuration, SimRuntimeOptions } from '../../runtime/index.js';
import { startHollowNodes } from '../hollow-nodes.js';

const CONNECT_TIMEOUT_MS = 120_000;

interface SimNodesFlags {
  count: string;
  token?: string;
  startLatency?: string;
  failureRate?: string;
  exitAfter?: string;
  stateDir?: string;
  prefix?: string;
  joinConcurrency?: string;
}

/** A duration flag: `200ms`, or a range `50ms-300ms` drawn from uniformly. */
export const parseSimDuration = (text: string, flag: string): SimDuration => {
  const parts = text.split('-');
  if (parts.length > 2) throw new Error(`invalid ${flag} '${text}': use a duration (200ms) or a range (50ms-300ms)`);
  const [min, max] = parts.map((p) => parseDuration(p, flag));
  if (max === undefined) return min ?? 0;
  if ((min ?? 0) > max) throw new Error(`invalid ${flag} '${text}': the range's first end is above its second`);
  return [min ?? 0, max];
};

const positiveInt = (text: string, flag: string): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`invalid ${flag} '${text}': a whole number of at least 1`);
  return n;
};

export const simOptionsOf = (flags: Pick<SimNodesFlags, 'startLatency' | 'failureRate' | 'exitAfter'>): SimRuntimeOptions => {
  const rate = flags.failureRate === undefined ? undefined : Number(flags.failureRate);
  if (rate !== undefined && !(rate >= 0 && rate <= 1)) throw new Error(`invalid --failure-rate '${flags.failureRate}': a number from 0 to 1`);
  return {
    ...(flags.startLatency === undefined ? {} : { startLatencyMs: parseSimDuration(flags.startLatency, '--start-latency') }),
    ...(rate === undefined ? {} : { failureRate: rate }),
    ...(flags.exitAfter === undefined ? {} : { exitAfterMs: parseSimDuration(flags.exitAfter, '--exit-after') }),
  };
};

const simNodes = async (manager: string, flags: SimNodesFlags): Promise<void> => {
  parseHostPort(manager, 'manager address');
  const count = positiveInt(flags.count, '--count');
  const logger = createLogger({ level: process.env.SHOAL_LOG_LEVEL === 'debug' ? 'debug' : 'warn' });
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  process.stdout.write(`Joining ${count} hollow nodes to ${manager}…\n`);
  const t0 = performance.now();
  const nodes = await startHollowNodes({
    manager,
    count,
    ...(flags.token === undefined ? {} : { token: flags.token }),
    sim: simOptionsOf(flags),
    ...(flags.stateDir === undefined ? {} : { stateDir: flags.stateDir }),
    ...(flags.prefix === undefined ? {} : { prefix: flags.prefix }),
    ...(flags.joinConcurrency === undefined ? {} : { joinConcurrency: positiveInt(flags.joinConcurrency, '--join-concurrency') }),
    logger,
  });
  try {
    await Promise.race([nodes.connected(CONNECT_TIMEOUT_MS), new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }))]);
    if (!stop.signal.aborted) {
      const first = nodes.nodes[0]?.hostname ?? '';
      const last = nodes.nodes[nodes.nodes.length - 1]?.hostname ?? '';
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      process.stdout.write(`${count} hollow nodes (${first} … ${last}) joined and connected in ${secs}s. Ctrl-C stops them.\n`);
      await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
    }
  } finally {
    process.stdout.write(`Stopping ${count} hollow nodes…\n`);
    await nodes.stopAll();
  }
};

export const registerSimCommands = (program: Command): void => {
  const sim = program.command('sim').description('simulation: hollow nodes that behave like real ones to the manager but start nothing');
  sim
    .command('nodes')
    .description('run N hollow worker nodes in this process, each with its own identity and session, until interrupted')
    .argument('<manager>', 'HOST:PORT of a manager')
    .requiredOption('--count <n>', 'how many nodes')
    .option('--token <token>', 'worker join token (not needed when every node is already in --state-dir)')
    .option('--start-latency <duration>', 'how long a task start takes: 200ms, or a range 50ms-300ms (default 0)')
    .option('--failure-rate <r>', 'share of task starts that fail, 0 to 1 (default 0)')
    .option('--exit-after <duration>', 'tasks end by themselves (exit 0) this long after starting, or a range (default: never)')
    .option('--state-dir <dir>', 'keep each node\'s identity in DIR/<hostname>, so the same nodes come back next time')
    .option('--prefix <prefix>', 'hostname prefix (default sim-: sim-0001, sim-0002, …)')
    .option('--join-concurrency <n>', 'joins in flight at once (default 32)')
    .action((manager: string, flags: SimNodesFlags) => simNodes(manager, flags));
};
