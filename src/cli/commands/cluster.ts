// `shoal init`, `shoal daemon` and `shoal stop`: creating, running and stopping the node of a data directory.

import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { createLogger } from '../../lib/logger.js';
import { sleep } from '../../lib/abort.js';
import { connectAddress, runningPid, startDaemon } from '../../manager/daemon.js';
import { dataPaths, initDataDir, readDataDir, readNodeTls, type RuntimeName } from '../../manager/data-dir.js';
import { ShoalClient } from '../client.js';
import { defaultDataDir, writeContext } from '../context.js';

interface InitFlags {
  dataDir?: string;
  listenAddr?: string;
  runtime?: string;
  detach?: boolean;
}

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;

const parseRuntime = (v: string | undefined): RuntimeName | undefined => {
  if (v === undefined || v === 'docker' || v === 'exec') return v;
  throw new Error(`invalid --runtime '${v}': use 'docker' or 'exec'`);
};

const dataDirOf = (v: string | undefined): string => resolve(v ?? defaultDataDir());

/** Runs the daemon in this process until SIGINT/SIGTERM. */
const runForeground = async (dataDir: string, onReady: (address: string) => void): Promise<void> => {
  const logger = createLogger({ level: process.env.SHOAL_LOG_LEVEL === 'debug' ? 'debug' : 'info' });
  const daemon = await startDaemon({ dataDir, logger });
  onReady(daemon.manager.address);
  await new Promise<void>((res) => {
    const stop = (): void => res();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  logger.info('stopping: the agent leaves its containers running');
  await daemon.close();
};

/** Waits until the manager answers and the local node is ready; fails early if the daemon process died. */
const waitReady = async (client: ShoalClient, nodeId: string, child: { exited: boolean }, logPath: string): Promise<void> => {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    if (child.exited) {
      const tail = readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-5).join('\n');
      throw new Error(`the Shoal daemon exited during start-up; the end of ${logPath}:\n${tail}`);
    }
    try {
      const nodes = await client.listNodes();
      const me = nodes.find((n) => n.id === nodeId);
      if (me?.status === 'ready') return;
      last = `node ${nodeId} is ${me?.status ?? 'not registered'}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`the Shoal daemon did not become ready within ${READY_TIMEOUT_MS / 1000}s (${last}); see ${logPath}`);
};

const init = async (flags: InitFlags): Promise<void> => {
  const dataDir = dataDirOf(flags.dataDir);
  const runtime = parseRuntime(flags.runtime);
  const dd = await initDataDir(dataDir, { ...(flags.listenAddr ? { listenAddr: flags.listenAddr } : {}), ...(runtime ? { runtime } : {}) });
  const host = connectAddress(dd.config.listenAddr);
  const tls = readNodeTls(dataDir);
  const ctxPath = writeContext({ host, token: dd.credentials.adminToken, clusterId: dd.config.clusterId, ca: tls.ca });
  const what = dd.created ? `Cluster ${dd.config.clusterId} initialized` : `Restarting node ${dd.config.nodeId} of cluster ${dd.config.clusterId}`;
  const pid = runningPid(dataDir);
  if (pid !== undefined) {
    process.stdout.write(`A Shoal daemon (pid ${pid}) already runs on ${dataDir}; CLI context written to ${ctxPath}.\n`);
    return;
  }
  if (!flags.detach) {
    process.stdout.write(`${what}.\n`);
    await runForeground(dataDir, (address) =>
      process.stdout.write(`Manager listening on ${address}; node ${dd.config.nodeId} ready (runtime ${dd.config.runtime}). CLI context: ${ctxPath}. Ctrl-C stops.\n`),
    );
    return;
  }
  const paths = dataPaths(dataDir);
  const log = openSync(paths.log, 'a', 0o600);
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const child = spawn(process.execPath, [main, 'daemon', '--data-dir', dataDir], { detached: true, stdio: ['ignore', log, log], env: process.env });
  closeSync(log);
  const state = { exited: false };
  child.on('exit', () => (state.exited = true));
  child.unref();
  await waitReady(new ShoalClient({ host, token: dd.credentials.adminToken, ca: tls.ca }), dd.config.nodeId, state, paths.log);
  process.stdout.write(`${what}.\nNode ${dd.config.nodeId} ready; manager at ${host} (runtime ${dd.config.runtime}, log ${paths.log}).\nCLI context: ${ctxPath}\n`);
};

const stop = async (flags: { dataDir?: string }): Promise<void> => {
  const dataDir = dataDirOf(flags.dataDir);
  if (!readDataDir(dataDir)) throw new Error(`${dataDir} holds no Shoal node`);
  const pid = runningPid(dataDir);
  if (pid === undefined) {
    process.stdout.write(`No Shoal daemon runs on ${dataDir}.\n`);
    return;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (runningPid(dataDir) === pid && Date.now() < deadline) await sleep(50);
  if (runningPid(dataDir) === pid) throw new Error(`the Shoal daemon (pid ${pid}) did not stop within ${STOP_TIMEOUT_MS / 1000}s`);
  process.stdout.write(`Stopped the Shoal daemon (pid ${pid}); its containers keep running.\n`);
};

export const registerClusterCommands = (program: Command): void => {
  program
    .command('init')
    .description('create a one-node cluster (manager + local worker), or restart the node of an existing data dir')
    .option('--data-dir <dir>', 'where the node keeps its state (default ~/.shoal)')
    .option('--listen-addr <host:port>', 'address of the manager API and sessions (default 127.0.0.1:7420)')
    .option('--runtime <name>', 'how tasks run: docker or exec (default docker)')
    .option('-d, --detach', 'run in the background and return once ready (logs to DATA_DIR/shoal.log)')
    .action((flags: InitFlags) => init(flags));

  program
    .command('daemon')
    .description('run the node of a data dir in the foreground (what init --detach starts)')
    .option('--data-dir <dir>', 'the node data dir (default ~/.shoal)')
    .action(async (flags: { dataDir?: string }) => {
      const dataDir = dataDirOf(flags.dataDir);
      await runForeground(dataDir, () => undefined);
    });

  program
    .command('stop')
    .description('stop the daemon of a data dir; its containers keep running')
    .option('--data-dir <dir>', 'the node data dir (default ~/.shoal)')
    .action((flags: { dataDir?: string }) => stop(flags));
};
