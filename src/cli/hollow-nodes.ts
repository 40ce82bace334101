// Hollow nodes: many simulated workers in one process, each a real node to the manager — its own key and certificate
// (joined through /v1/join like `shoal join`), its own mutual-TLS session, heartbeats, assignments and status reports,
// all from the real Agent — whose runtime (sim) starts nothing. `shoal sim nodes` runs them; bench/scale runs them
// in-process so it can kill some.
//
// Limits: a hollow node does not renew its certificate (runs are far shorter than its lifetime), and does not take up
// another role when promoted.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../agent/index.js';
import { ShoalError } from '../core/index.js';
import { newSecret } from '../lib/ids.js';
import type { Logger } from '../lib/logger.js';
import { secretDigest } from '../lib/secrets.js';
import { DEFAULT_LISTEN_ADDR, dataPaths, readNodeConfig, readNodeTls, writeFileAtomic, writeJoinedDataDir, type NodeConfig, type NodeTls } from '../manager/data-dir.js';
import { SimRuntime, type SimRuntimeOptions } from '../runtime/index.js';
import { joinCluster } from './join.js';

export interface HollowNodesOptions {
  /** HOST:PORT of a manager. */
  manager: string;
  /** A worker join token; not needed when every node's identity is already in `stateDir`. */
  token?: string;
  count: number;
  /** How each node's sim runtime behaves (start latency, failure rate, …). */
  sim?: SimRuntimeOptions;
  /**
   * Where each node keeps its identity (DIR/<hostname>/: node.json, ca.pem, node.pem, node-key.pem), so the same
   * nodes come back on the next run without a token; without it identities live in memory only.
   */
  stateDir?: string;
  /** Hostname prefix (default 'sim-'): nodes are <prefix>0001, <prefix>0002, … */
  prefix?: string;
  /** Joins in flight at once (default 32): the manager signs every certificate. */
  joinConcurrency?: number;
  logger: Logger;
  /** Called after each node joined (or found its identity), with how many have so far. */
  onJoined?: (done: number) => void;
}

export interface HollowNode {
  nodeId: string;
  hostname: string;
  agent: Agent;
  runtime: SimRuntime;
  /** Stops the node as a clean stop does: the manager sees it leave (disconnected). */
  stop(): Promise<void>;
  /** Stops the node as a crash does: its connection drops, the manager finds it down. */
  kill(): Promise<void>;
}

export interface HollowNodes {
  nodes: HollowNode[];
  /** Resolves once every node has had its first session (or rejects after `timeoutMs`). */
  connected(timeoutMs: number): Promise<void>;
  stopAll(): Promise<void>;
}

const DEFAULT_JOIN_CONCURRENCY = 32;

interface Identity {
  config: NodeConfig;
  tls: NodeTls;
}

const hostnameOf = (prefix: string, i: number, count: number): string => `${prefix}${String(i + 1).padStart(Math.max(4, String(count).length), '0')}`;

/** A node's identity: the one kept in its state dir, or a new one from joining with the token. */
const identityOf = async (opts: HollowNodesOptions, hostname: string): Promise<Identity> => {
  const dir = opts.stateDir === undefined ? undefined : join(opts.stateDir, hostname);
  const kept = dir === undefined ? undefined : readNodeConfig(dir);
  if (dir !== undefined && kept) return { config: kept, tls: readNodeTls(dir) };
  if (!opts.token) throw new ShoalError('invalid_argument', `--token is required: node ${hostname} has not joined yet${dir ? ` (nothing in ${dir})` : ''}`);
  // What a node would be as a manager, sent as `shoal join` sends it; a worker token, the one hollow nodes take,
  // makes the manager ignore it.
  const joined = await joinCluster(opts.manager, opts.token, { adminTokenDigest: secretDigest(newSecret()), address: DEFAULT_LISTEN_ADDR });
  if (joined.role !== 'worker') throw new ShoalError('invalid_argument', 'hollow nodes join as workers: use a worker token (shoal join-token worker)');
  const config: NodeConfig = {
    clusterId: joined.clusterId,
    nodeId: joined.nodeId,
    runtime: 'sim',
    role: 'worker',
    listenAddr: '',
    managers: joined.managers.length > 0 ? joined.managers : [opts.manager],
  };
  const tls = { ca: joined.ca, cert: joined.cert, key: joined.key };
  if (dir !== undefined) writeJoinedDataDir(dir, { config, tls });
  return { config, tls };
};

/** Runs `work` over `items` with at most `limit` in flight; fails with the first failure once the rest settled. */
const pool = async <T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> => {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failure: Error | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const i = next++;
      try {
        out[i] = await work(items[i] as T);
      } catch (e) {
        failure ??= e instanceof Error ? e : new Error(String(e));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
  return out;
};

const startNode = (opts: HollowNodesOptions, hostname: string, id: Identity): HollowNode => {
  const dir = opts.stateDir === undefined ? undefined : join(opts.stateDir, hostname);
  const runtime = new SimRuntime(opts.sim);
  const agent = new Agent({
    nodeId: id.config.nodeId,
    managers: id.config.managers ?? [opts.manager],
    ...(dir === undefined ? {} : { onManagers: (managers: string[]) => writeFileAtomic(dataPaths(dir).node, JSON.stringify({ ...id.config, managers }, null, 2) + '\n') }),
    role: 'worker',
    tls: id.tls,
    // The manager records the address the session comes from.
    address: '',
    hostname,
    runtime,
    logger: opts.logger.child({ node: hostname }),
  });
  const ctl = new AbortController();
  const running = agent.run(ctl.signal).catch((e: unknown) => opts.logger.error('hollow node stopped', { node: hostname, error: e }));
  let stopped: Promise<void> | undefined;
  const end = (how: () => void): Promise<void> =>
    (stopped ??= (async () => {
      how();
      await running;
      await runtime.close();
    })());
  return {
    nodeId: id.config.nodeId,
    hostname,
    agent,
    runtime,
    stop: () => end(() => ctl.abort()),
    kill: () => end(() => agent.kill()),
  };
};

/**
 * Joins (or finds the identities of) `count` hollow nodes, `joinConcurrency` at a time, and starts each node's agent
 * as soon as it has its identity. Nodes already started are stopped if a later join fails.
 */
export const startHollowNodes = async (opts: HollowNodesOptions): Promise<HollowNodes> => {
  if (!Number.isInteger(opts.count) || opts.count < 1) throw new ShoalError('invalid_argument', `invalid count ${opts.count}: at least one node`);
  if (opts.stateDir !== undefined) mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  const prefix = opts.prefix ?? 'sim-';
  const names = Array.from({ length: opts.count }, (_, i) => hostnameOf(prefix, i, opts.count));
  const started: HollowNode[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(started.map((n) => n.stop()));
  };
  try {
    await pool(names, opts.joinConcurrency ?? DEFAULT_JOIN_CONCURRENCY, async (hostname) => {
      const node = startNode(opts, hostname, await identityOf(opts, hostname));
      started.push(node);
      opts.onJoined?.(started.length);
    });
  } catch (e) {
    await stopAll();
    throw e;
  }
  const order = new Map(names.map((h, i) => [h, i]));
  const nodes = [...started].sort((a, b) => (order.get(a.hostname) ?? 0) - (order.get(b.hostname) ?? 0));
  return {
    nodes,
    stopAll,
    connected: async (timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ShoalError('deadline_exceeded', `not every hollow node had a session within ${timeoutMs / 1000}s`)), timeoutMs);
      });
      try {
        await Promise.race([Promise.all(nodes.map((n) => n.agent.connected)), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
};
