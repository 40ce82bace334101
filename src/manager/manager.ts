// The manager's composition root: opens the store, starts the cache, the API and the leadership loop.
//
// Every manager serves the API (reads from its cache, writes to the shared store). Only the leader runs the control
// loops and the dispatcher (agent sessions): it wins a term through the store (an etcd lease; with the embedded
// SQLite store the one manager always wins at once) and runs them on the term's fenced store, so a deposed leader's
// writes fail instead of racing its successor's. Followers refuse sessions and name the leader.

import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Node } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { systemClock } from '../lib/clock.js';
import { sleep } from '../lib/abort.js';
import { newId } from '../lib/ids.js';
import type { Logger } from '../lib/logger.js';
import { EventLog } from '../api/events.js';
import { Api, type LogSource, type ManagerView } from '../api/server.js';
import { ShoalMetrics } from '../api/shoal-metrics.js';
import { ShoalError } from '../core/index.js';
import { NodeHealth, SchedulingLoop, ServiceController, type ControllerContext } from '../reconcile/index.js';
import { Cache, openStore, type Store, type Term } from '../store/index.js';
import type { CaKeyPair } from '../pki/index.js';
import { parseHostPort } from '../protocol/index.js';
import { bootstrapStore, readCa, readDataDir, readNodeTls, storeConfigOf, type NodeTls } from './data-dir.js';
import { Dispatcher, refuseNotLeader } from './dispatcher.js';
import { VERSION } from './version.js';

/**
 * Leadership lease: a leader that dies is replaced this long after its last renewal (etcd's minimum is 2 s). Not 2 s:
 * a leader steps down once its keepalives go unanswered for 85% of it, and in bench/scale on etcd (1,000 nodes,
 * 100,000 tasks, two cores) a 2 s lease lost the leadership while converging in 3 runs of 3 on one day (after 22 runs
 * without); each loss ended every node's session, a thousand reconnected at once, nodes were found down and their
 * tasks moved, and convergence never finished. With 5 s: none lost, converged in 39.9 s.
 */
export const LEADER_LEASE_MS = 5000;
/** How often a follower looks up who leads (to name the leader to agents and clients). */
const LEADER_POLL_MS = 500;

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
  /** The cluster CA with its key (the manager signs node certificates with it). */
  readonly ca: CaKeyPair;
  /** Whether this manager leads now. */
  leading(): boolean;
  /** Serves new TLS connections with renewed material. */
  setServerTls(tls: NodeTls): void;
  close(): Promise<void>;
}

/** Who leads and where the managers are, as this manager last saw it. */
class Managers implements ManagerView {
  leader: string | undefined;
  /** The dispatcher of the term this manager leads now. */
  dispatcher: Dispatcher | undefined;
  /** The service controller of that term (its queue depth is a metric). */
  services: ServiceController | undefined;

  constructor(private readonly cache: Cache) {}

  leaderId(): string | undefined {
    return this.leader;
  }

  leaderAddress(): string | undefined {
    return this.leader === undefined ? undefined : this.cache.get('node', this.leader)?.description.address || undefined;
  }

  /** The last answer, for the cache revision and leader it was computed at: every API response asks. */
  private memo: { revision: number; leader: string | undefined; addresses: string[] } | undefined;

  addresses(): string[] {
    const { revision } = this.cache;
    if (this.memo?.revision === revision && this.memo.leader === this.leader) return this.memo.addresses;
    const addresses = this.computeAddresses();
    this.memo = { revision, leader: this.leader, addresses };
    return addresses;
  }

  private computeAddresses(): string[] {
    const removed = new Set(this.cache.list('cluster')[0]?.auth.removedNodeIds ?? []);
    const rank = (n: Node): number => (n.id === this.leader ? 0 : n.status.state === 'ready' ? 1 : 2);
    return this.cache
      .list('node')
      .filter((n) => n.spec.role === 'manager' && n.description.address !== '' && !removed.has(n.id))
      .sort((a, b) => rank(a) - rank(b) || a.description.address.localeCompare(b.description.address))
      .map((n) => n.description.address);
  }
}

export const startManager = async (opts: ManagerOptions): Promise<Manager> => {
  const clock = opts.clock ?? systemClock;
  const dd = readDataDir(opts.dataDir);
  if (!dd) throw new Error(`${opts.dataDir} holds no Shoal node; run 'shoal init --data-dir ${opts.dataDir}' first`);
  const nodeId = dd.config.nodeId;
  const store = await openStore(storeConfigOf(opts.dataDir, dd.config, clock));
  const ctl = new AbortController();
  const tasks: Promise<void>[] = [];
  let server: Server | undefined;
  try {
    await bootstrapStore(store, dd, clock);
    const cache = await Cache.start(store, { signal: ctl.signal });
    const logger = opts.logger;
    const tls = readNodeTls(opts.dataDir);
    const managers = new Managers(cache);
    const ca = readCa(opts.dataDir);
    const metrics = new ShoalMetrics({ cache, leading: () => managers.dispatcher !== undefined, queueDepth: () => managers.services?.queue.depth ?? 0, signal: ctl.signal });
    // Log streams are relayed over the sessions, which only the leader holds (the API refuses them elsewhere).
    const logs: LogSource = {
      taskLogs: (task, o) => {
        const d = managers.dispatcher;
        if (!d) throw new ShoalError('unavailable', 'this manager no longer leads; ask the leader');
        return d.taskLogs(task, o);
      },
    };
    const api = new Api({
      ca,
      store,
      cache,
      clock,
      logger: logger.child({ component: 'api' }),
      newId: () => newId(),
      logs,
      nodeId,
      version: VERSION,
      storeName: dd.config.store === undefined ? 'sqlite' : 'etcd',
      managers,
      events: new EventLog(cache, clock),
      metrics,
      ...(dd.config.store === undefined ? {} : { storeUrl: dd.config.store }),
    });
    // One TLS listener for the API and the agent sessions. Client certificates are asked for but not required here:
    // sessions check them (mutual TLS), API requests carry a bearer token instead.
    const srv = createServer({ ca: tls.ca, cert: tls.cert, key: tls.key, requestCert: true, rejectUnauthorized: false }, api.handle);
    server = srv;
    // Keep idle connections longer than clients typically wait between requests (a CLI, a watching test), which
    // makes the close-while-reused race rare; the client retries reads that hit it.
    srv.keepAliveTimeout = 30_000;
    srv.headersTimeout = 31_000;
    srv.on('upgrade', (req, socket, head) => {
      const d = managers.dispatcher;
      if (d) d.handleUpgrade(req, socket, head);
      else refuseNotLeader(socket, managers.leaderAddress());
    });
    const { host, port } = parseHostPort(opts.listenAddr ?? dd.config.listenAddr);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    const a = srv.address() as AddressInfo;
    const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    logger.info('manager listening', { address, clusterId: dd.config.clusterId, nodeId });

    const lead = (term: Term, signal: AbortSignal): Promise<void> => {
      const ctx: ControllerContext = { store: term.store, cache, clock, logger: logger.child({ component: 'reconcile' }), newId: () => newId() };
      // Node health reads the dispatcher's heartbeats; the dispatcher pokes it when a session opens or closes. Both
      // are new each term, so a new leader gives every node one heartbeat grace period to reconnect to it.
      const dispatcher: Dispatcher = new Dispatcher({
        store: term.store,
        cache,
        clock,
        ca: tls.ca,
        logger: logger.child({ component: 'dispatcher' }),
        newId: () => newId(),
        onSessionChange: () => health.poke(),
        managers: () => managers.addresses(),
      });
      const health = new NodeHealth(ctx, dispatcher);
      dispatcher.run(signal);
      const scheduling = new SchedulingLoop(ctx, { onAssigned: (ms) => metrics.observeSchedulingWait(ms) });
      const services = new ServiceController(ctx, { placer: scheduling });
      managers.dispatcher = dispatcher;
      managers.services = services;
      // From the moment the term ends, sessions are refused (the loops may take a moment longer to wind down).
      signal.addEventListener(
        'abort',
        () => {
          if (managers.dispatcher === dispatcher) managers.dispatcher = undefined;
          if (managers.services === services) managers.services = undefined;
        },
        { once: true },
      );
      // The scheduling loop first: it starts following node loads at once, before the first reconcile asks it to place.
      return Promise.allSettled([scheduling.run(signal), services.run(signal), health.run(signal)]).then(() => undefined);
    };
    tasks.push(runLeadership({ store, nodeId, managers, logger, lead }, ctl.signal));

    let closed: Promise<void> | undefined;
    return {
      address,
      nodeId,
      store,
      cache,
      ca,
      leading: () => managers.dispatcher !== undefined,
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

/**
 * Campaigns for leadership until the signal aborts: while this manager leads, `lead` runs the control loops on the
 * term's fenced store; when the term ends (lease lost, store unreachable) they stop at once and it campaigns again.
 * Meanwhile it keeps `managers.leader` current, so followers can name the leader.
 */
const runLeadership = async (
  deps: { store: Store; nodeId: string; managers: Managers; logger: Logger; lead: (term: Term, signal: AbortSignal) => Promise<void> },
  signal: AbortSignal,
): Promise<void> => {
  const { store, nodeId, managers, logger } = deps;
  let leading = false;
  const following = new AbortController();
  const poll = (async () => {
    while (!following.signal.aborted && !signal.aborted) {
      const leader = await store.leader().catch(() => undefined);
      // Checked after the lookup: a term won meanwhile is not overwritten by an older answer.
      if (!leading) managers.leader = leader;
      await sleep(LEADER_POLL_MS, following.signal).catch(() => undefined);
    }
  })();
  try {
    while (!signal.aborted) {
      let term: Term | undefined;
      try {
        term = await store.campaign(nodeId, { ttlMs: LEADER_LEASE_MS, signal });
      } catch (e) {
        if (signal.aborted) break;
        logger.warn('cannot campaign for leadership; retrying', { error: e instanceof Error ? e.message : String(e) });
        await sleep(LEADER_POLL_MS, signal).catch(() => undefined);
        continue;
      }
      if (!term) break;
      leading = true;
      managers.leader = nodeId;
      logger.info('leading the cluster');
      await deps.lead(term, AbortSignal.any([term.ended, signal]));
      leading = false;
      if (signal.aborted) {
        // Stepping down on purpose: hand over now rather than when the lease runs out.
        await term.resign().catch(() => undefined);
        break;
      }
      managers.leader = undefined;
      const why = term.ended.reason instanceof Error ? { reason: term.ended.reason.message } : {};
      logger.warn('leadership lost; campaigning again', why);
    }
  } finally {
    following.abort();
    await poll;
  }
};
