// The node daemon: a manager plus the node's own worker agent, which reaches the manager over the same session
// protocol (a loopback WebSocket) a remote worker uses. Owns the pidfile of its data directory.

import { readFileSync, rmSync } from 'node:fs';
import { Agent } from '../agent/index.js';
import { ShoalError, type NodeRole } from '../core/index.js';
import { sleep } from '../lib/abort.js';
import { newSecret } from '../lib/ids.js';
import { secretDigest } from '../lib/secrets.js';
import { createNodeKeyAndCsr } from '../pki/index.js';
import type { Logger } from '../lib/logger.js';
import { createRuntime } from '../runtime/index.js';
import type { Runtime } from '../runtime/runtime.js';
import { dataPaths, issueManagerCert, readDataDir, readNodeConfig, readNodeTls, writeFileAtomic, writeJoinedDataDir, type NodeConfig, type NodeTls } from './data-dir.js';
import { renewThroughManager, renewThroughManagers, runRenewer, type RenewerOptions } from './renewal.js';
import { startManager, type Manager } from './manager.js';

const AGENT_CONNECT_TIMEOUT_MS = 30_000;

/**
 * Node.js flags a daemon process starts with (`node FLAGS main.js daemon`: init --detach, join, bench/scale). A manager
 * allocates short-lived objects for every watch event, session frame and report; under V8's default 16 MiB semi-spaces
 * bench/scale (1,000 nodes, 100,000 tasks) spent 4.4 s of a 25 s convergence in 236 scavenges, and every API answer
 * waited behind them. 48 MiB: 2.3 s in 58, convergence and API latency about 1.3-1.5x faster, for ~80 MiB more peak
 * RSS. The flag is a ceiling: a small cluster's young generation does not grow that far.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=48'];

export interface DaemonOptions {
  dataDir: string;
  logger: Logger;
  /** Overrides the stored listen address (tests use 127.0.0.1:0). */
  listenAddr?: string;
  dockerSocket?: string;
  /** Called when the cluster gives this node another role (see runNode, which restarts it in that role). */
  onRole?: (role: NodeRole) => void;
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
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
  // A killed daemon that its parent has not reaped yet still answers signals: a zombie does not run.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
  } catch {
    // No /proc (not Linux), or it just went away: trust the signal check.
  }
  return pid;
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
    role: config.role ?? 'manager',
    ...(opts.onRole ? { onRole: opts.onRole } : {}),
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

export interface NodeHandle {
  /** What runs now: a manager node (Daemon) or a worker. */
  readonly current: Daemon | Worker;
  close(): Promise<void>;
}

const ROLE_SWITCH_ATTEMPTS = 20;
const ROLE_SWITCH_RETRY_MS = 1000;

/**
 * Runs the node of a data dir in its role (a manager node or a worker), and when the cluster promotes or demotes it,
 * fetches a certificate for the new role (a promoted node also gets what managers share), stops, rewrites the data
 * dir for the new role and starts again in it. Its containers keep running throughout, and are adopted.
 */
export const runNode = async (opts: DaemonOptions): Promise<NodeHandle> => {
  let current: Daemon | Worker;
  let switching: Promise<void> | undefined;
  let closing = false;
  const log = opts.logger.child({ component: 'node' });
  const start = async (): Promise<void> => {
    const o = { ...opts, onRole: (role: NodeRole) => void (switching ??= switchRole(role).finally(() => (switching = undefined))) };
    current = readNodeConfig(opts.dataDir)?.role === 'worker' ? startWorker(o) : await startDaemon(o);
  };
  const switchRole = async (role: NodeRole): Promise<void> => {
    for (let attempt = 1; !closing; attempt++) {
      try {
        const next = await fetchRole(opts.dataDir, role);
        if (closing) return;
        await current.close();
        writeRole(opts.dataDir, next);
        log.info(`restarting as a ${role}`);
        await start();
        return;
      } catch (e) {
        log.warn(`cannot take up the ${role} role`, { attempt, error: e instanceof Error ? e.message : String(e) });
        if (attempt >= ROLE_SWITCH_ATTEMPTS) return;
        await sleep(ROLE_SWITCH_RETRY_MS);
      }
    }
  };
  await start();
  return {
    get current() {
      return current;
    },
    close: async () => {
      closing = true;
      await switching;
      await current.close();
    },
  };
};

interface RoleMaterial {
  config: NodeConfig;
  tls: NodeTls;
  /** Becoming a manager: the admin token made here, and what managers share. */
  manager?: { adminToken: string; caKey: string };
}

/** Asks the managers for a certificate in the node's new role (and, for a manager, what managers share). */
const fetchRole = async (dataDir: string, role: NodeRole): Promise<RoleMaterial> => {
  const config = readNodeConfig(dataDir);
  if (!config) throw new ShoalError('failed_precondition', `${dataDir} holds no Shoal node`);
  const tls = readNodeTls(dataDir);
  const { keyPem, csrPem } = await createNodeKeyAndCsr({ nodeId: config.nodeId });
  // A promoted node serves on the address it is known by; a worker started without one cannot be promoted (the API
  // refuses that before we get here).
  const listenAddr = config.listenAddr || config.advertiseAddr || '';
  const adminToken = newSecret();
  const asManager = role === 'manager' ? { manager: { adminTokenDigest: secretDigest(adminToken), address: config.advertiseAddr ?? connectAddress(listenAddr) } } : {};
  const r = await renewThroughManagers(config.managers ?? [], tls, { csr: csrPem, ...asManager });
  if (r.role !== role) throw new ShoalError('failed_precondition', `the managers still give this node the ${r.role} role`);
  const next: NodeConfig = { ...config, role, listenAddr, managers: r.managers.length > 0 ? r.managers : (config.managers ?? []) };
  if (role === 'worker') {
    delete next.store;
    delete next.storeTls;
    return { config: next, tls: { ca: tls.ca, cert: r.cert, key: keyPem } };
  }
  if (!r.caKey || !r.store) throw new ShoalError('failed_precondition', 'the managers promoted this node but sent no CA key or store address');
  return { config: { ...next, store: r.store }, tls: { ca: tls.ca, cert: r.cert, key: keyPem }, manager: { adminToken, caKey: r.caKey } };
};

/** Rewrites the data dir for the node's new role: a worker keeps no CA key, admin token or store settings. */
const writeRole = (dataDir: string, m: RoleMaterial): void => {
  if (m.manager) {
    writeJoinedDataDir(dataDir, { config: m.config, tls: m.tls, manager: { caKey: m.manager.caKey, credentials: { adminToken: m.manager.adminToken } } });
    return;
  }
  const p = dataPaths(dataDir);
  for (const f of [p.caKey, p.credentials, p.storeCa, p.storeCert, p.storeKey]) rmSync(f, { force: true });
  writeJoinedDataDir(dataDir, { config: m.config, tls: m.tls });
};
