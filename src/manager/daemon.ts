// The node daemon: a manager plus the node's own worker agent, which reaches the manager over the same session
// protocol (a loopback WebSocket) a remote worker uses. Owns the pidfile of its data directory.

import { readFileSync, rmSync } from 'node:fs';
import { Agent } from '../agent/index.js';
import { ShoalError } from '../core/index.js';
import type { Logger } from '../lib/logger.js';
import { createRuntime } from '../runtime/index.js';
import type { Runtime } from '../runtime/runtime.js';
import { dataPaths, readDataDir, readNodeTls, writeFileAtomic } from './data-dir.js';
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

export const startDaemon = async (opts: DaemonOptions): Promise<Daemon> => {
  const dd = readDataDir(opts.dataDir);
  if (!dd) throw new ShoalError('failed_precondition', `${opts.dataDir} holds no Shoal node; run 'shoal init --data-dir ${opts.dataDir}' first`);
  const paths = dataPaths(opts.dataDir);
  const other = runningPid(opts.dataDir);
  if (other !== undefined && other !== process.pid) {
    throw new ShoalError('failed_precondition', `a Shoal daemon (pid ${other}) already runs on ${opts.dataDir}; stop it with 'shoal stop --data-dir ${opts.dataDir}'`);
  }
  writeFileAtomic(paths.pid, `${process.pid}\n`, 0o644);
  let manager: Manager | undefined;
  const ctl = new AbortController();
  let running: Promise<void> | undefined;
  try {
    manager = await startManager({ dataDir: opts.dataDir, logger: opts.logger.child({ component: 'manager' }), ...(opts.listenAddr ? { listenAddr: opts.listenAddr } : {}) });
    const runtime = createRuntime(dd.config.runtime, { dataDir: opts.dataDir, ...(opts.dockerSocket ? { dockerSocket: opts.dockerSocket } : {}) });
    const agent = new Agent({
      nodeId: dd.config.nodeId,
      manager: connectAddress(manager.address),
      tls: readNodeTls(opts.dataDir),
      address: dd.config.listenAddr,
      runtime,
      logger: opts.logger.child({ component: 'agent' }),
    });
    const run = agent.run(ctl.signal);
    running = run;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      agent.connected,
      run.then(() => Promise.reject(new Error('the agent stopped before it connected'))),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`the local agent could not open its session within ${AGENT_CONNECT_TIMEOUT_MS / 1000}s`)), AGENT_CONNECT_TIMEOUT_MS))),
    ]).finally(() => clearTimeout(timer));
    const m = manager;
    let closed: Promise<void> | undefined;
    return {
      manager: m,
      agent,
      runtime,
      close: () =>
        (closed ??= (async () => {
          ctl.abort();
          await run.catch(() => undefined);
          await runtime.close();
          await m.close();
          if (runningPid(opts.dataDir) === process.pid) rmSync(paths.pid, { force: true });
        })()),
    };
  } catch (e) {
    ctl.abort();
    await running?.catch(() => undefined);
    await manager?.close();
    rmSync(paths.pid, { force: true });
    throw e;
  }
};
