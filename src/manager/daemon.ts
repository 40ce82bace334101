// The node daemon: a manager plus the node's own worker agent, which reaches the manager over the same session
// protocol (a loopback WebSocket) a remote worker uses. Owns the pidfile of its data directory.

import { readFileSync, rmSync } from 'node:fs';
import { Agent } from '../agent/index.js';
import { ShoalError } from '../core/index.js';
import type { Logger } from '../lib/logger.js';
import { createRuntime } from '../runtime/index.js';
import type { Runtime } from '../runtime/runtime.js';
import { dataPaths, issueManagerCert, readDataDir, readNodeConfig, readNodeTls, writeFileAtomic, type NodeConfig } from './data-dir.js';
import { renewThroughManager, runRenewer, type RenewerOptions } from './renewal.js';
import { startManager, type Manager } from './manager.js';

const AGENT_CONNECT_TIMEOUT_MS = 30_000;

export interface DaemonOptions {
  dataDir: string;
  logger: Logger;
  /** Overrides the stored listen address (tests use 127.0.0.1:0). */
  listenAddr?: string;
  dockerSocket?: string;
}

export interface Daemon {
  readonly manager: Manager;
  readonly agent: Agent;
  readonly runtime: Runtime;
  /** Stops the agent (its containers keep running), then the manager; removes the pidfile. */
  close(): Promise<void>;
}

/** The pid of the daemon running on a data dir, if one is alive. */
export const runningPid = (dataDir: string): number | undefined => {
  let pid: number;
  try {
    pid = Number(readFileSync(dataPaths(dataDir).pid, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
};

/** Where a local client reaches a listen address: a wildcard address is reached over loopback. */
export const connectAddress = (listen: string): string =>
  listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '127.0.0.1:');

/** Claims the data dir's pidfile for this process; refuses when another live daemon holds it. */
const claimPidfile = (dataDir: string): void => {
  const other = runningPid(dataDir);
  if (other !== undefined && other !== process.pid) {
    throw new ShoalError('failed_precondition', `a Shoal daemon (pid ${other}) already runs on ${dataDir}; stop it with 'shoal stop --data-dir ${dataDir}'`);
  }
  writeFileAtomic(dataPaths(dataDir).pid, `${process.pid}\n`, 0o644);
};

const releasePidfile = (dataDir: string): void => {
  const paths = dataPaths(dataDir);
  rmSync(paths.ready, { force: true });
  if (runningPid(dataDir) === process.pid) rmSync(paths.pid, { force: true });
};

/**
 * The node's agent, with the node's certificate, going to the managers in order (and on to whichever leads); keeps the
 * list of managers in node.json current; marks the data dir ready once connected.
 */
const startAgent = (
  dataDir: string,
  config: NodeConfig,
  where: { managers: string[]; address: string },
  opts: DaemonOptions,
  signal: AbortSignal,
): { agent: Agent; runtime: Runtime; running: Promise<void> } => {
  const runtime = createRuntime(config.runtime, { dataDir, ...(opts.dockerSocket ? { dockerSocket: opts.dockerSocket } : {}) });
  const agent = new Agent({
    nodeId: config.nodeId,
    managers: where.managers,
    onManagers: (managers) => {
      const current = readNodeConfig(dataDir);
      if (current) writeFileAtomic(dataPaths(dataDir).node, JSON.stringify({ ...current, managers }, null, 2) + '\n');
    },
    tls: readNodeTls(dataDir),
    address: where.address,
    runtime,
    logger: opts.logger.child({ component: 'agent' }),
  });
  const running = agent.run(signal);
  void agent.connected.then(() => {
    if (!signal.aborted) writeFileAtomic(dataPaths(dataDir).ready, `${process.pid}\n`, 0o644);
  });
  return { agent, runtime, running };
};

/**
 * Stops a node in order: the agent (its containers keep running) and the renewer, the runtime, then whatever else the
 * node runs (a manager), and releases the pidfile.
 */
const stopNode = async (
  dataDir: string,
  parts: { ctl: AbortController; renewing: Promise<void>; running: Promise<void>; runtime: Runtime },
  afterAgent: () => Promise<void> = async () => undefined,
): Promise<void> => {
  parts.ctl.abort();
  await parts.renewing;
  await parts.running.catch(() => undefined);
  await parts.runtime.close();
  await afterAgent();
  releasePidfile(dataDir);
};

/** Keeps this node's certificate renewed until the signal aborts. */
const renewCertificates = (opts: DaemonOptions, how: Pick<RenewerOptions, 'renew' | 'onRenewed'>, signal: AbortSignal): Promise<void> =>
  runRenewer({ dataDir: opts.dataDir, logger: opts.logger.child({ component: 'renewal' }), ...how }, signal);

/** A manager node: the manager and the node's own agent, which reaches it over loopback like any other node. */
export const startDaemon = async (opts: DaemonOptions): Promise<Daemon> => {
  const dd = readDataDir(opts.dataDir);
  if (!dd) throw new ShoalError('failed_precondition', `${opts.dataDir} holds no Shoal manager node; run 'shoal init --data-dir ${opts.dataDir}' first`);
  claimPidfile(opts.dataDir);
  let manager: Manager | undefined;
  const ctl = new AbortController();
  let running: Promise<void> | undefined;
  try {
    manager = await startManager({ dataDir: opts.dataDir, logger: opts.logger.child({ component: 'manager' }), ...(opts.listenAddr ? { listenAddr: opts.listenAddr } : {}) });
    // The node's own agent tries its own manager first; a follower sends it on to the leader. The node is known by
    // the address it really listens on (a test's port 0 is resolved by now).
    const self = connectAddress(manager.address);
    const started = startAgent(
      opts.dataDir,
      dd.config,
      { managers: [self, ...(dd.config.managers ?? []).filter((m) => m !== self)], address: dd.config.advertiseAddr ?? manager.address },
      opts,
      ctl.signal,
    );
    const { agent, runtime } = started;
    const run = started.running;
    running = run;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      agent.connected,
      run.then(() => Promise.reject(new Error('the agent stopped before it connected'))),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`the local agent could not open its session within ${AGENT_CONNECT_TIMEOUT_MS / 1000}s`)), AGENT_CONNECT_TIMEOUT_MS))),
    ]).finally(() => clearTimeout(timer));
    const m = manager;
    // The manager signs its own renewals with the cluster CA it holds.
    const renewing = renewCertificates(opts, {
      renew: (csrPem) => {
        const expiry = m.cache.list('cluster')[0]?.spec.nodeCertExpiryMs;
        return issueManagerCert(m.ca, csrPem, { config: dd.config, now: new Date(), ...(expiry === undefined ? {} : { validityMs: expiry }) });
      },
      onRenewed: (tls) => {
        m.setServerTls(tls);
        agent.updateTls(tls);
      },
    }, ctl.signal);
    let closed: Promise<void> | undefined;
    return {
      manager: m,
      agent,
      runtime,
      close: () => (closed ??= stopNode(opts.dataDir, { ctl, renewing, running: run, runtime }, () => m.close())),
    };
  } catch (e) {
    ctl.abort();
    await running?.catch(() => undefined);
    await manager?.close();
    releasePidfile(opts.dataDir);
    throw e;
  }
};

export interface Worker {
  readonly agent: Agent;
  readonly runtime: Runtime;
  close(): Promise<void>;
}

/**
 * A worker node: only its agent, connected to the manager it joined. It starts even while the manager is
 * unreachable (its containers keep running; the agent reconnects when it can).
 */
export const startWorker = (opts: DaemonOptions): Worker => {
  const config = readNodeConfig(opts.dataDir);
  if (config?.role !== 'worker' || !config.managers?.length) throw new ShoalError('failed_precondition', `${opts.dataDir} holds no Shoal worker node; join one with 'shoal join'`);
  claimPidfile(opts.dataDir);
  const ctl = new AbortController();
  const { agent, runtime, running } = startAgent(opts.dataDir, config, { managers: config.managers, address: config.advertiseAddr ?? config.listenAddr }, opts, ctl.signal);
  const managers = (): string[] => readNodeConfig(opts.dataDir)?.managers ?? config.managers ?? [];
  const renewing = renewCertificates(opts, { renew: renewThroughManager(managers, () => readNodeTls(opts.dataDir)), onRenewed: (tls) => agent.updateTls(tls) }, ctl.signal);
  let closed: Promise<void> | undefined;
  return {
    agent,
    runtime,
    close: () => (closed ??= stopNode(opts.dataDir, { ctl, renewing, running, runtime })),
  };
};
