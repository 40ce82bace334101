// The manager's composition root: opens the store, starts the cache, the control loops, the dispatcher and the API.
//
// With the embedded SQLite store there is exactly one manager, so it is always the leader: the reconcilers and the
// scheduler run here unconditionally. (Leadership among several managers comes with the etcd store.)

import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../lib/clock.js';
import { systemClock } from '../lib/clock.js';
import { newId } from '../lib/ids.js';
import type { Logger } from '../lib/logger.js';
import { Api } from '../api/server.js';
import { NodeHealth, SchedulingLoop, ServiceController, type ControllerContext } from '../reconcile/index.js';
import { Cache } from '../store/cache.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import type { CaKeyPair } from '../pki/index.js';
import { bootstrapStore, dataPaths, parseListenAddr, readCa, readDataDir, readNodeTls, type NodeTls } from './data-dir.js';
import { Dispatcher } from './dispatcher.js';
import { VERSION } from './version.js';

export interface ManagerOptions {
  dataDir: string;
  logger: Logger;
  clock?: Clock;
  /** Overrides the stored listen address (HOST:PORT; port 0 picks a free one, for tests). */
  listenAddr?: string;
}

export interface Manager {
  /** HOST:PORT actually listened on. */
  readonly address: string;
  readonly nodeId: string;
  readonly store: Store;
  readonly cache: Cache;
  readonly dispatcher: Dispatcher;
  readonly scheduling: SchedulingLoop;
  /** The cluster CA with its key (the manager signs node certificates with it). */
  readonly ca: CaKeyPair;
  /** Serves new TLS connections with renewed material. */
  setServerTls(tls: NodeTls): void;
  close(): Promise<void>;
}

export const startManager = async (opts: ManagerOptions): Promise<Manager> => {
  const clock = opts.clock ?? systemClock;
  const dd = readDataDir(opts.dataDir);
  if (!dd) throw new Error(`${opts.dataDir} holds no Shoal node; run 'shoal init --data-dir ${opts.dataDir}' first`);
  const store = SqliteStore.open(dataPaths(opts.dataDir).db, { clock });
  const ctl = new AbortController();
  const tasks: Promise<void>[] = [];
  let server: Server | undefined;
  try {
    await bootstrapStore(store, dd, clock);
    const cache = await Cache.start(store, { signal: ctl.signal });
    const logger = opts.logger;
    const ctx: ControllerContext = { store, cache, clock, logger: logger.child({ component: 'reconcile' }), newId: () => newId() };
    // Node health reads the dispatcher's heartbeats; the dispatcher pokes it when a session opens or closes.
    const tls = readNodeTls(opts.dataDir);
    const dispatcher: Dispatcher = new Dispatcher({ store, cache, clock, ca: tls.ca, logger: logger.child({ component: 'dispatcher' }), newId: () => newId(), onSessionChange: () => health.poke() });
    const health = new NodeHealth(ctx, dispatcher);
    const services = new ServiceController(ctx);
    const scheduling = new SchedulingLoop(ctx);
    dispatcher.run(ctl.signal);
    tasks.push(services.run(ctl.signal), scheduling.run(ctl.signal), health.run(ctl.signal));

    const ca = readCa(opts.dataDir);
    const api = new Api({ ca, store, cache, clock, logger: logger.child({ component: 'api' }), newId: () => newId(), logs: dispatcher, nodeId: dd.config.nodeId, version: VERSION, storeName: 'sqlite' });
    // One TLS listener for the API and the agent sessions. Client certificates are asked for but not required here:
    // sessions check them (mutual TLS), API requests carry a bearer token instead.
    const srv = createServer({ ca: tls.ca, cert: tls.cert, key: tls.key, requestCert: true, rejectUnauthorized: false }, api.handle);
    server = srv;
    // Keep idle connections longer than clients typically wait between requests (a CLI, a watching test), which
    // makes the close-while-reused race rare; the client retries reads that hit it.
    srv.keepAliveTimeout = 30_000;
    srv.headersTimeout = 31_000;
    srv.on('upgrade', (req, socket, head) => dispatcher.handleUpgrade(req, socket, head));
    const { host, port } = parseListenAddr(opts.listenAddr ?? dd.config.listenAddr);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    const a = srv.address() as AddressInfo;
    const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    logger.info('manager listening', { address, clusterId: dd.config.clusterId, nodeId: dd.config.nodeId });

    let closed: Promise<void> | undefined;
    return {
      address,
      nodeId: dd.config.nodeId,
      store,
      cache,
      dispatcher,
      scheduling,
      ca,
      setServerTls: (t) => srv.setSecureContext({ ca: t.ca, cert: t.cert, key: t.key }),
      close: () =>
        (closed ??= (async () => {
          ctl.abort();
          srv.closeAllConnections();
          await new Promise<void>((resolve) => srv.close(() => resolve()));
          await Promise.allSettled(tasks);
          await store.close();
        })()),
    };
  } catch (e) {
    ctl.abort();
    server?.close();
    await Promise.allSettled(tasks);
    await store.close();
    throw e;
  }
};
