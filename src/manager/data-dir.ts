// The data directory of a node: its identity, its credentials, the embedded store, the pidfile and the log.
//
// Layout: node.json (ids, listen address, runtime), credentials.json (secrets, mode 0600), shoal.db (SQLite store),
// shoal.pid, shoal.log, exec/ (state of the exec runtime). Files are written atomically (temp file + rename) and
// bootstrapping the store is idempotent, so an init interrupted at any point is completed by the next start.

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ShoalError, type Cluster, type Node } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { isoNow } from '../lib/clock.js';
import { newId, newSecret } from '../lib/ids.js';
import { secretDigest } from '../lib/secrets.js';
import { createNodeKeyAndCsr, createRootCa, newJoinSecret, signNodeCsr, type CaKeyPair } from '../pki/index.js';
import { parseHostPort } from '../protocol/index.js';
import type { RuntimeName } from '../runtime/index.js';
import { parseStoreUrl, type Store, type StoreConfig } from '../store/index.js';

export type { RuntimeName };

export interface NodeConfig {
  clusterId: string;
  nodeId: string;
  /** HOST:PORT the manager listens on (a worker: the address it was started with, shown in `node ls`). */
  listenAddr: string;
  runtime: RuntimeName;
  /** Absent (older data dirs) means manager. */
  role?: 'manager' | 'worker';
  /**
   * HOST:PORT of the cluster's managers as last known, the leader first: where a worker's agent goes (a manager's own
   * agent tries its own manager first, then these). Updated from every session's welcome.
   */
  managers?: string[];
  /**
   * The shared store (etcd://HOST:PORT,…) when the managers run on etcd; absent: the embedded SQLite store in the data
   * dir. With `storeTls`, the etcd client authenticates with store-ca.pem, store-cert.pem and store-key.pem.
   */
  store?: string;
  storeTls?: boolean;
  /** The address other nodes and `node ls` know this node by, when it differs from the listen address. */
  advertiseAddr?: string;
}

export interface Credentials {
  /** Bearer token of the CLI (admin). */
  adminToken: string;
}

/** The node's TLS material, PEM: the cluster CA certificate, and this node's certificate and key. */
export interface NodeTls {
  ca: string;
  cert: string;
  key: string;
}

export const dataPaths = (dir: string) => ({
  dir,
  node: join(dir, 'node.json'),
  credentials: join(dir, 'credentials.json'),
  db: join(dir, 'shoal.db'),
  pid: join(dir, 'shoal.pid'),
  log: join(dir, 'shoal.log'),
  exec: join(dir, 'exec'),
  /** Present while the daemon runs and its agent has a session (what a detached start waits for). */
  ready: join(dir, 'shoal.ready'),
  ca: join(dir, 'ca.pem'),
  caKey: join(dir, 'ca-key.pem'),
  cert: join(dir, 'node.pem'),
  key: join(dir, 'node-key.pem'),
  storeCa: join(dir, 'store-ca.pem'),
  storeCert: join(dir, 'store-cert.pem'),
  storeKey: join(dir, 'store-key.pem'),
});

export const DEFAULT_LISTEN_ADDR = '127.0.0.1:7420';
export const DEFAULT_HEARTBEAT_MS = 500;

/** Writes a file atomically with the given mode, so a crash never leaves a half-written file. */
export const writeFileAtomic = (path: string, text: string, mode = 0o600): void => {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
};

const readJsonFile = <T>(path: string): T | undefined => {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    throw new ShoalError('failed_precondition', `cannot read ${path}: ${(e as Error).message}`);
  }
};

export interface DataDir {
  config: NodeConfig;
  credentials: Credentials;
  /** True when this call created the cluster (first init), false when it found an existing one. */
  created: boolean;
}

/** The node's identity and settings, manager or worker; undefined when the directory holds no node. */
export const readNodeConfig = (dir: string): NodeConfig | undefined => readJsonFile<NodeConfig>(dataPaths(dir).node);

/** TLS material (PEM) of the etcd client, when the shared store asks for it. */
export interface StoreTls {
  ca: string;
  cert?: string;
  key?: string;
}

/** What a data dir needs to be a node that joined: identity and TLS; a manager also the CA key and its admin token. */
export interface JoinedNode {
  config: NodeConfig;
  tls: NodeTls;
  manager?: { caKey: string; credentials: Credentials; storeTls?: StoreTls };
}

/** Writes a joined node's data dir (worker or manager) from what joining returned. */
export const writeJoinedDataDir = (dir: string, j: JoinedNode): void => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = dataPaths(dir);
  writeFileAtomic(p.ca, j.tls.ca, 0o644);
  writeFileAtomic(p.key, j.tls.key, 0o600);
  writeFileAtomic(p.cert, j.tls.cert, 0o644);
  if (j.manager) {
    writeFileAtomic(p.caKey, j.manager.caKey, 0o600);
    writeFileAtomic(p.credentials, JSON.stringify(j.manager.credentials, null, 2) + '\n');
    if (j.manager.storeTls) writeStoreTls(dir, j.manager.storeTls);
  }
  // node.json last: its presence says the join completed.
  writeFileAtomic(p.node, JSON.stringify(j.config, null, 2) + '\n');
};

const writeStoreTls = (dir: string, t: StoreTls): void => {
  const p = dataPaths(dir);
  writeFileAtomic(p.storeCa, t.ca, 0o644);
  if (t.cert !== undefined) writeFileAtomic(p.storeCert, t.cert, 0o644);
  if (t.key !== undefined) writeFileAtomic(p.storeKey, t.key, 0o600);
};

/** The etcd client's TLS material of a manager whose store needs it. */
export const readStoreTls = (dir: string): StoreTls => {
  const p = dataPaths(dir);
  return { ca: readFileSync(p.storeCa, 'utf8'), ...(existsSync(p.storeCert) ? { cert: readFileSync(p.storeCert, 'utf8'), key: readFileSync(p.storeKey, 'utf8') } : {}) };
};

/** Where the manager of a data dir keeps its state: the embedded SQLite file, or the shared etcd store. */
export const storeConfigOf = (dir: string, config: NodeConfig, clock: Clock): StoreConfig => {
  if (config.store === undefined) return { kind: 'sqlite', path: dataPaths(dir).db, clock };
  const c = parseStoreUrl(config.store);
  if (c.kind !== 'etcd') return c;
  return config.storeTls ? { ...c, tls: readStoreTls(dir) } : c;
};

/** Reads the node's files; undefined when the directory holds no initialized manager node. */
export const readDataDir = (dir: string): Omit<DataDir, 'created'> | undefined => {
  const p = dataPaths(dir);
  const config = readJsonFile<NodeConfig>(p.node);
  const credentials = readJsonFile<Credentials>(p.credentials);
  if (!config || !credentials) return undefined;
  return { config, credentials };
};

/**
 * Makes `dir` a node of a new cluster, or loads the node it already is (init on an existing data dir restarts that
 * node, it never makes a second cluster). Explicit options replace the stored listen address and runtime.
 */
export const initDataDir = async (
  dir: string,
  opts: { listenAddr?: string; advertiseAddr?: string; runtime?: RuntimeName; store?: { url: string; tls?: StoreTls } } = {},
): Promise<DataDir> => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = dataPaths(dir);
  if (opts.listenAddr !== undefined) parseHostPort(opts.listenAddr);
  if (readNodeConfig(dir)?.role === 'worker') {
    throw new ShoalError('failed_precondition', `${dir} holds a worker node; restart it with 'shoal join --data-dir ${dir}'`);
  }
  const existing = readDataDir(dir);
  if (opts.store) {
    parseStoreUrl(opts.store.url);
    // Moving a cluster to another store would strand its state: the store is chosen once, at the first init.
    if (existing && existing.config.store !== opts.store.url) {
      throw new ShoalError('failed_precondition', `${dir} already holds a node whose store is ${existing.config.store ?? 'the embedded SQLite file'}; its store cannot be changed`);
    }
  }
  const config: NodeConfig = {
    clusterId: existing?.config.clusterId ?? newId(),
    nodeId: existing?.config.nodeId ?? newId(),
    listenAddr: opts.listenAddr ?? existing?.config.listenAddr ?? DEFAULT_LISTEN_ADDR,
    runtime: opts.runtime ?? existing?.config.runtime ?? 'docker',
    ...(opts.advertiseAddr ?? existing?.config.advertiseAddr ? { advertiseAddr: opts.advertiseAddr ?? existing?.config.advertiseAddr } : {}),
    ...(existing?.config.store ?? opts.store?.url ? { store: existing?.config.store ?? opts.store?.url } : {}),
    ...(existing?.config.storeTls ?? opts.store?.tls ? { storeTls: true } : {}),
  };
  if (!existing && opts.store?.tls) writeStoreTls(dir, opts.store.tls);
  const credentials: Credentials = existing?.credentials ?? { adminToken: newSecret() };
  if (!existing) writeFileAtomic(p.credentials, JSON.stringify(credentials, null, 2) + '\n');
  writeFileAtomic(p.node, JSON.stringify(config, null, 2) + '\n');
  await ensurePki(dir, config, new Date());
  return { config, credentials, created: !existing };
};

/**
 * Creates what is missing of the first manager's PKI: the cluster's root CA (its key never leaves the data dir) and
 * this node's manager certificate, valid for the addresses it serves on. Idempotent, like the rest of init.
 */
const ensurePki = async (dir: string, config: NodeConfig, now: Date): Promise<void> => {
  const p = dataPaths(dir);
  if (!existsSync(p.ca) || !existsSync(p.caKey)) {
    const ca = await createRootCa({ clusterId: config.clusterId, now });
    writeFileAtomic(p.caKey, ca.keyPem, 0o600);
    writeFileAtomic(p.ca, ca.certPem, 0o644);
  }
  if (!existsSync(p.cert) || !existsSync(p.key)) {
    const { keyPem, csrPem } = await createNodeKeyAndCsr({ nodeId: config.nodeId });
    const certPem = await issueManagerCert(readCa(dir), csrPem, { config, now });
    writeFileAtomic(p.key, keyPem, 0o600);
    writeFileAtomic(p.cert, certPem, 0o644);
  }
};

/** The cluster CA with its key, as only a manager's data dir holds it. */
export const readCa = (dir: string): CaKeyPair => {
  const p = dataPaths(dir);
  return { certPem: readFileSync(p.ca, 'utf8'), keyPem: readFileSync(p.caKey, 'utf8') };
};

/** Signs this manager's own certificate (at init and at each renewal), valid for the addresses it serves on. */
export const issueManagerCert = (ca: CaKeyPair, csrPem: string, opts: { config: NodeConfig; now: Date; validityMs?: number }): Promise<string> => {
  const { host } = parseHostPort(opts.config.listenAddr);
  return signNodeCsr({
    ca,
    csrPem,
    nodeId: opts.config.nodeId,
    role: 'manager',
    clusterId: opts.config.clusterId,
    now: opts.now,
    hosts: [...new Set([host, '127.0.0.1', 'localhost', hostname()])],
    ...(opts.validityMs === undefined ? {} : { validityMs: opts.validityMs }),
  });
};

/** Reads the node's TLS material. */
export const readNodeTls = (dir: string): NodeTls => {
  const p = dataPaths(dir);
  return { ca: readFileSync(p.ca, 'utf8'), cert: readFileSync(p.cert, 'utf8'), key: readFileSync(p.key, 'utf8') };
};

/** Creates the cluster and this node in the store when they are missing (idempotent). */
export const bootstrapStore = async (store: Store, dd: Omit<DataDir, 'created'>, clock: Clock): Promise<void> => {
  const iso = isoNow(clock);
  const meta = { version: 0, createdAt: iso, updatedAt: iso };
  const ops = [];
  const clusters = (await store.list('cluster')).items;
  if (clusters.length === 0) {
    const cluster: Cluster = {
      kind: 'cluster',
      id: dd.config.clusterId,
      meta,
      spec: { name: 'shoal', heartbeatPeriodMs: DEFAULT_HEARTBEAT_MS, taskHistoryLimit: 5 },
      auth: {
        adminTokenDigests: [secretDigest(dd.credentials.adminToken)],
        adminTokenOwners: { [secretDigest(dd.credentials.adminToken)]: dd.config.nodeId },
        joinSecrets: { worker: newJoinSecret(), manager: newJoinSecret() },
        removedNodeIds: [],
      },
    };
    ops.push({ op: 'create' as const, object: cluster });
  } else if (clusters[0]?.id !== dd.config.clusterId) {
    throw new ShoalError('failed_precondition', `the store belongs to cluster ${clusters[0]?.id ?? '?'}, not ${dd.config.clusterId}`);
  }
  if (!(await store.get('node', dd.config.nodeId))) {
    const node: Node = {
      kind: 'node',
      id: dd.config.nodeId,
      meta,
      spec: { role: 'manager', availability: 'active', labels: {} },
      description: { hostname: hostname(), address: dd.config.listenAddr, runtime: dd.config.runtime, resources: { nanoCpus: 0, memoryBytes: 0 }, engineLabels: {} },
      status: { state: 'unknown', message: 'created by init' },
    };
    ops.push({ op: 'create' as const, object: node });
  }
  if (ops.length > 0) await store.commit(ops);
};
