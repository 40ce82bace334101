// `shoal init`, `shoal daemon` and `shoal stop`: creating, running and stopping the node of a data directory.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { createLogger } from '../../lib/logger.js';
import { sleep } from '../../lib/abort.js';
import { DAEMON_NODE_FLAGS, connectAddress, runNode, runningPid } from '../../manager/daemon.js';
import { DEFAULT_LISTEN_ADDR, dataPaths, initDataDir, readDataDir, readNodeConfig, readNodeTls, writeJoinedDataDir, type RuntimeName, type StoreTls } from '../../manager/data-dir.js';
import { newSecret } from '../../lib/ids.js';
import { secretDigest } from '../../lib/secrets.js';
import { parseHostPort } from '../../protocol/index.js';
import { parseStoreUrl } from '../../store/index.js';
import { ShoalClient } from '../client.js';
import { clientFor, defaultDataDir, readContext, writeContext } from '../context.js';
import { joinCluster } from '../join.js';

interface StoreFlags {
  store?: string;
  storeCa?: string;
  storeCert?: string;
  storeKey?: string;
}

interface InitFlags extends StoreFlags {
  dataDir?: string;
  listenAddr?: string;
  advertiseAddr?: string;
  runtime?: string;
  detach?: boolean;
}

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;

const parseRuntime = (v: string | undefined): RuntimeName | undefined => {
  if (v === undefined || v === 'docker' || v === 'exec' || v === 'sim') return v;
  throw new Error(`invalid --runtime '${v}': use 'docker', 'exec' or 'sim'`);
};

const dataDirOf = (v: string | undefined): string => resolve(v ?? defaultDataDir());

/** Runs the node of a data dir (manager or worker, switching when promoted or demoted) until SIGINT/SIGTERM. */
const runForeground = async (dataDir: string, onReady: (address: string) => void): Promise<void> => {
  const logger = createLogger({ level: process.env.SHOAL_LOG_LEVEL === 'debug' ? 'debug' : 'info' });
  const node = await runNode({ dataDir, logger });
  const now = node.current;
  onReady('manager' in now ? now.manager.address : (readNodeConfig(dataDir)?.managers?.join(', ') ?? ''));
  await new Promise<void>((res) => {
    const stop = (): void => res();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  logger.info('stopping: the agent leaves its containers running');
  await node.close();
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

/** Reads the etcd client TLS files named by --store-ca/--store-cert/--store-key, if any. */
const storeTlsOf = (flags: StoreFlags): StoreTls | undefined => {
  if (!flags.storeCa) {
    if (flags.storeCert || flags.storeKey) throw new Error('--store-cert and --store-key need --store-ca (the CA that signed the etcd servers\' certificates)');
    return undefined;
  }
  if (Boolean(flags.storeCert) !== Boolean(flags.storeKey)) throw new Error('--store-cert and --store-key go together');
  const read = (file: string, flag: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`cannot read ${flag} ${file}: ${(e as Error).message}`);
    }
  };
  return {
    ca: read(flags.storeCa, '--store-ca'),
    ...(flags.storeCert && flags.storeKey ? { cert: read(flags.storeCert, '--store-cert'), key: read(flags.storeKey, '--store-key') } : {}),
  };
};

const init = async (flags: InitFlags): Promise<void> => {
  const dataDir = dataDirOf(flags.dataDir);
  const runtime = parseRuntime(flags.runtime);
  if (flags.advertiseAddr) parseHostPort(flags.advertiseAddr, 'advertise-addr');
  const storeTls = storeTlsOf(flags);
  const dd = await initDataDir(dataDir, {
    ...(flags.listenAddr ? { listenAddr: flags.listenAddr } : {}),
    ...(flags.advertiseAddr ? { advertiseAddr: flags.advertiseAddr } : {}),
    ...(runtime ? { runtime } : {}),
    ...(flags.store ? { store: { url: flags.store, ...(storeTls ? { tls: storeTls } : {}) } } : {}),
  });
  const what = dd.created ? `Cluster ${dd.config.clusterId} initialized` : `Restarting node ${dd.config.nodeId} of cluster ${dd.config.clusterId}`;
  await runManagerNode(dataDir, what, flags.detach ?? false);
};

/** Starts (or finds running) the manager node of an initialized data dir, after writing this machine's CLI context. */
const runManagerNode = async (dataDir: string, what: string, detach: boolean): Promise<void> => {
  const dd = readDataDir(dataDir);
  if (!dd) throw new Error(`${dataDir} holds no manager node`);
  const host = connectAddress(dd.config.listenAddr);
  const tls = readNodeTls(dataDir);
  const hosts = [host, ...(dd.config.managers ?? []).filter((m) => m !== host)];
  const ctxPath = writeContext({ hosts, token: dd.credentials.adminToken, clusterId: dd.config.clusterId, ca: tls.ca });
  const pid = runningPid(dataDir);
  if (pid !== undefined) {
    process.stdout.write(`A Shoal daemon (pid ${pid}) already runs on ${dataDir}; CLI context written to ${ctxPath}.\n`);
    return;
  }
  if (!detach) {
    process.stdout.write(`${what}.\n`);
    await runForeground(dataDir, (address) =>
      process.stdout.write(`Manager listening on ${address}; node ${dd.config.nodeId} ready (runtime ${dd.config.runtime}). CLI context: ${ctxPath}. Ctrl-C stops.\n`),
    );
    return;
  }
  const paths = dataPaths(dataDir);
  // Ask this node's own manager (not another one of the context) whether the node is ready.
  await spawnDetached(dataDir, (child) => waitReady(new ShoalClient({ hosts: [host], token: dd.credentials.adminToken, ca: tls.ca }), dd.config.nodeId, child, paths.log));
  process.stdout.write(`${what}.\nNode ${dd.config.nodeId} ready; manager at ${host} (runtime ${dd.config.runtime}, log ${paths.log}).\nCLI context: ${ctxPath}\n`);
};

/** Starts the daemon of `dataDir` in the background and waits until its agent has a session. */
const spawnDetached = async (dataDir: string, isReady: (child: { exited: boolean }) => Promise<void>): Promise<void> => {
  const paths = dataPaths(dataDir);
  rmSync(paths.ready, { force: true });
  const log = openSync(paths.log, 'a', 0o600);
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, main, 'daemon', '--data-dir', dataDir], { detached: true, stdio: ['ignore', log, log], env: process.env });
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

interface JoinFlags extends StoreFlags {
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
  if (existing && existing.role !== 'worker') {
    // A manager that joined restarts like any manager.
    if (!flags.token) return runManagerNode(dataDir, `Restarting manager ${existing.nodeId} of cluster ${existing.clusterId}`, flags.detach ?? false);
    throw new Error(`${dataDir} holds a manager node; use another --data-dir to join a cluster`);
  }
  if (existing) {
    // A node restarted with its data dir rejoins with its certificate: no token needed.
    process.stdout.write(`Restarting worker ${existing.nodeId} of cluster ${existing.clusterId}.\n`);
    return runWorkerNode(dataDir, flags.detach ?? false);
  }
  if (!flags.token) throw new Error('--token is required to join (get one with "shoal join-token worker" on a manager)');
  if (!managerAddr) throw new Error('the manager address is required: shoal join --token TOKEN HOST:PORT');
  parseHostPort(managerAddr, 'manager address');
  if (flags.advertiseAddr) parseHostPort(flags.advertiseAddr, 'advertise-addr');
  if (flags.listenAddr) parseHostPort(flags.listenAddr, 'listen-addr');
  if (flags.store) parseStoreUrl(flags.store);
  const storeTls = storeTlsOf(flags);
  const runtime = parseRuntime(flags.runtime) ?? 'docker';
  // Whether this node becomes a manager is the token's to say: be ready for it. The admin token for this machine's
  // CLI is made here and only its digest is sent; it is kept only if the node does become a manager.
  const adminToken = newSecret();
  const listenAddr = flags.listenAddr ?? DEFAULT_LISTEN_ADDR;
  const joined = await joinCluster(managerAddr, flags.token, { adminTokenDigest: secretDigest(adminToken), address: flags.advertiseAddr ?? connectAddress(listenAddr) });
  const managers = joined.managers.length > 0 ? joined.managers : [managerAddr];
  const tls = { ca: joined.ca, cert: joined.cert, key: joined.key };
  const base = { clusterId: joined.clusterId, nodeId: joined.nodeId, runtime, managers, ...(flags.advertiseAddr ? { advertiseAddr: flags.advertiseAddr } : {}) };
  if (joined.role === 'manager') {
    const store = flags.store ?? joined.store;
    if (!joined.caKey || !store) throw new Error('the manager accepted this node as a manager but sent no CA key or store address; is it an older version?');
    writeJoinedDataDir(dataDir, {
      config: { ...base, role: 'manager', listenAddr, store, ...(storeTls ? { storeTls: true } : {}) },
      tls,
      manager: { caKey: joined.caKey, credentials: { adminToken }, ...(storeTls ? { storeTls } : {}) },
    });
    return runManagerNode(dataDir, `This node joined cluster ${joined.clusterId} as manager ${joined.nodeId}`, flags.detach ?? false);
  }
  // A worker listens on nothing yet: its address is what it was told to be known by, else the manager records the
  // address its session comes from.
  writeJoinedDataDir(dataDir, { config: { ...base, role: 'worker', listenAddr: flags.listenAddr ?? '' }, tls });
  process.stdout.write(`This node joined cluster ${joined.clusterId} as worker ${joined.nodeId}.\n`);
  return runWorkerNode(dataDir, flags.detach ?? false);
};

/** Starts (or finds running) the worker of a joined data dir. */
const runWorkerNode = async (dataDir: string, detach: boolean): Promise<void> => {
  const pid = runningPid(dataDir);
  if (pid !== undefined) {
    process.stdout.write(`A Shoal daemon (pid ${pid}) already runs on ${dataDir}.\n`);
    return;
  }
  if (!detach) {
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
    .option('--runtime <name>', 'how tasks run: docker, exec (plain processes) or sim (hollow: nothing runs; for scale tests) (default docker)')
    .option('--store <url>', 'where managers keep the cluster state: etcd://HOST:PORT[,HOST:PORT…] (etcds:// for TLS) for a cluster of several managers (default: an embedded SQLite file in the data dir)')
    .option('--store-ca <file>', 'CA certificate (PEM) of the etcd servers, for etcds://')
    .option('--store-cert <file>', 'client certificate (PEM) for etcd, when it asks for one')
    .option('--store-key <file>', 'key (PEM) of --store-cert')
    .option('-d, --detach', 'run in the background and return once ready (logs to DATA_DIR/shoal.log)')
    .action((flags: InitFlags) => init(flags));

  program
    .command('join')
    .description('join a cluster as a worker or, with a manager token, as a manager (or restart the node of an existing data dir, without a token)')
    .argument('[manager]', 'HOST:PORT of a manager')
    .option('--token <token>', 'join token (shoal join-token worker|manager, on a manager)')
    .option('--data-dir <dir>', 'where the node keeps its state (default ~/.shoal)')
    .option('--listen-addr <host:port>', 'the address this node is started with, shown in node ls')
    .option('--advertise-addr <host:port>', 'the address this node is known by (default: the listen address, else where its session comes from)')
    .option('--runtime <name>', 'how tasks run: docker, exec (plain processes) or sim (hollow: nothing runs; for scale tests) (default docker)')
    .option('--store <url>', 'managers: the store to use (default: the one the cluster uses)')
    .option('--store-ca <file>', 'managers: CA certificate (PEM) of the etcd servers')
    .option('--store-cert <file>', 'managers: client certificate (PEM) for etcd')
    .option('--store-key <file>', 'managers: key (PEM) of --store-cert')
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
      const host = cmd.optsWithGlobals<{ host?: string }>().host ?? process.env.SHOAL_HOST ?? readContext()?.hosts[0] ?? 'MANAGER:PORT';
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
