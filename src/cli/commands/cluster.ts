// `shoal init`, `shoal daemon` and `shoal stop`: creating, running and stopping the node of a data directory.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { createLogger } from '../../lib/logger.js';
import { sleep } from '../../lib/abort.js';
import { connectAddress, runningPid, startDaemon, startWorker } from '../../manager/daemon.js';
import { dataPaths, initDataDir, parseListenAddr, readNodeConfig, readNodeTls, writeWorkerDataDir, type RuntimeName } from '../../manager/data-dir.js';
import { ShoalClient } from '../client.js';
import { clientFor, defaultDataDir, readContext, writeContext } from '../context.js';
import { joinCluster } from '../join.js';

interface InitFlags {
  dataDir?: string;
  listenAddr?: string;
  advertiseAddr?: string;
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

/** Runs the node of a data dir (manager or worker) in this process until SIGINT/SIGTERM. */
const runForeground = async (dataDir: string, onReady: (address: string) => void): Promise<void> => {
  const logger = createLogger({ level: process.env.SHOAL_LOG_LEVEL === 'debug' ? 'debug' : 'info' });
  const config = readNodeConfig(dataDir);
  let daemon: { close(): Promise<void> };
  if (config?.role === 'worker') {
    daemon = startWorker({ dataDir, logger });
    onReady(config.managerAddr ?? '');
  } else {
    const d = await startDaemon({ dataDir, logger });
    daemon = d;
    onReady(d.manager.address);
  }
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
    if (child.exited) throw failedStart(logPath);
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
  if (flags.advertiseAddr) parseListenAddr(flags.advertiseAddr, 'advertise-addr');
  const dd = await initDataDir(dataDir, { ...(flags.listenAddr ? { listenAddr: flags.listenAddr } : {}), ...(flags.advertiseAddr ? { advertiseAddr: flags.advertiseAddr } : {}), ...(runtime ? { runtime } : {}) });
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
  await spawnDetached(dataDir, (child) => waitReady(new ShoalClient({ host, token: dd.credentials.adminToken, ca: tls.ca }), dd.config.nodeId, child, paths.log));
  process.stdout.write(`${what}.\nNode ${dd.config.nodeId} ready; manager at ${host} (runtime ${dd.config.runtime}, log ${paths.log}).\nCLI context: ${ctxPath}\n`);
};

/** Starts the daemon of `dataDir` in the background and waits until its agent has a session. */
const spawnDetached = async (dataDir: string, isReady: (child: { exited: boolean }) => Promise<void>): Promise<void> => {
  const paths = dataPaths(dataDir);
  rmSync(paths.ready, { force: true });
  const log = openSync(paths.log, 'a', 0o600);
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const child = spawn(process.execPath, [main, 'daemon', '--data-dir', dataDir], { detached: true, stdio: ['ignore', log, log], env: process.env });
  closeSync(log);
  const state = { exited: false };
  child.on('exit', () => (state.exited = true));
  child.unref();
  await isReady(state);
};

const failedStart = (logPath: string): Error => {
  const tail = readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-5).join('\n');
  return new Error(`the Shoal daemon exited during start-up; the end of ${logPath}:\n${tail}`);
};

interface JoinFlags {
  token?: string;
  dataDir?: string;
  listenAddr?: string;
  advertiseAddr?: string;
  runtime?: string;
  detach?: boolean;
}

const joinCommand = async (managerAddr: string | undefined, flags: JoinFlags): Promise<void> => {
  const dataDir = dataDirOf(flags.dataDir);
  const existing = readNodeConfig(dataDir);
  if (existing && existing.role !== 'worker') throw new Error(`${dataDir} holds a manager node; use another --data-dir to join a cluster`);
  if (!existing) {
    if (!flags.token) throw new Error('--token is required to join (get one with "shoal join-token worker" on a manager)');
    if (!managerAddr) throw new Error('the manager address is required: shoal join --token TOKEN HOST:PORT');
    parseListenAddr(managerAddr, 'manager address');
    if (flags.advertiseAddr) parseListenAddr(flags.advertiseAddr, 'advertise-addr');
    if (flags.listenAddr) parseListenAddr(flags.listenAddr, 'listen-addr');
    const runtime = parseRuntime(flags.runtime) ?? 'docker';
    const joined = await joinCluster(managerAddr, flags.token);
    writeWorkerDataDir(dataDir, {
      // A worker listens on nothing yet: its address is what it was told to be known by, else the manager records
      // the address its session comes from.
      config: {
        clusterId: joined.clusterId,
        nodeId: joined.nodeId,
        listenAddr: flags.listenAddr ?? '',
        runtime,
        role: 'worker',
        managerAddr,
        ...(flags.advertiseAddr ? { advertiseAddr: flags.advertiseAddr } : {}),
      },
      tls: { ca: joined.ca, cert: joined.cert, key: joined.key },
    });
    process.stdout.write(`This node joined cluster ${joined.clusterId} as worker ${joined.nodeId}.\n`);
  } else {
    // A node restarted with its data dir rejoins with its certificate: no token needed.
    process.stdout.write(`Restarting worker ${existing.nodeId} of cluster ${existing.clusterId}.\n`);
  }
  const pid = runningPid(dataDir);
  if (pid !== undefined) {
    process.stdout.write(`A Shoal daemon (pid ${pid}) already runs on ${dataDir}.\n`);
    return;
  }
  if (!flags.detach) {
    await runForeground(dataDir, (addr) => process.stdout.write(`Worker running, connected to ${addr}. Ctrl-C stops.\n`));
    return;
  }
  const paths = dataPaths(dataDir);
  await spawnDetached(dataDir, async (child) => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!existsSync(paths.ready)) {
      if (child.exited) throw failedStart(paths.log);
      if (Date.now() > deadline) throw new Error(`the worker did not reach its manager within ${READY_TIMEOUT_MS / 1000}s; see ${paths.log}`);
      await sleep(100);
    }
  });
  process.stdout.write(`Worker ready (log ${paths.log}).\n`);
};

const stop = async (flags: { dataDir?: string }): Promise<void> => {
  const dataDir = dataDirOf(flags.dataDir);
  if (!readNodeConfig(dataDir)) throw new Error(`${dataDir} holds no Shoal node`);
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
    .option('--advertise-addr <host:port>', 'address other nodes and node ls know this node by (default: the listen address)')
    .option('--runtime <name>', 'how tasks run: docker or exec (default docker)')
    .option('-d, --detach', 'run in the background and return once ready (logs to DATA_DIR/shoal.log)')
    .action((flags: InitFlags) => init(flags));

  program
    .command('join')
    .description('join a cluster as a worker (or restart a worker of an existing data dir, without a token)')
    .argument('[manager]', 'HOST:PORT of a manager')
    .option('--token <token>', 'join token (shoal join-token worker, on a manager)')
    .option('--data-dir <dir>', 'where the node keeps its state (default ~/.shoal)')
    .option('--listen-addr <host:port>', 'the address this node is started with, shown in node ls')
    .option('--advertise-addr <host:port>', 'the address this node is known by (default: the listen address, else where its session comes from)')
    .option('--runtime <name>', 'how tasks run: docker or exec (default docker)')
    .option('-d, --detach', 'run in the background and return once connected')
    .action((manager: string | undefined, flags: JoinFlags) => joinCommand(manager, flags));

  program
    .command('join-token')
    .description('show (or rotate) the token nodes join with')
    .argument('<role>', 'worker or manager')
    .option('--rotate', 'replace the token; nodes that already joined are not affected')
    .option('-q, --quiet', 'print only the token')
    .action(async (role: string, flags: { rotate?: boolean; quiet?: boolean }, cmd: Command) => {
      if (role !== 'worker' && role !== 'manager') throw new Error(`invalid role '${role}': use worker or manager`);
      const client = clientFor(cmd.optsWithGlobals<{ host?: string }>());
      const tokens = flags.rotate ? await client.rotateJoinToken(role) : await client.joinTokens();
      const token = tokens[role];
      if (flags.quiet) return void process.stdout.write(`${token}\n`);
      const host = cmd.optsWithGlobals<{ host?: string }>().host ?? process.env.SHOAL_HOST ?? readContext()?.host ?? 'MANAGER:PORT';
      process.stdout.write(`To add a ${role} to this cluster, run on it:\n\n    shoal join --token ${token} ${host}\n\n`);
    });

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
