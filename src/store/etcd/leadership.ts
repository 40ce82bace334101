// Leadership through etcd: a candidate holds a lease and creates the leader key on it; it leads while that key,
// created at a known revision, exists. Commits of its term compare the key's create revision, so a deposed leader
// can write nothing even before it notices (fencing); the term also ends locally once keepalives go unanswered for
// most of the TTL (LOCAL_LEASE_SHARE), so a leader cut off from etcd stops acting before its lease can expire on the server.

import { performance } from 'node:perf_hooks';
import { EtcdLeaseInvalidError } from 'etcd3';
import type { Etcd3, ITxnResponse, Lease } from 'etcd3';
import { ShoalError } from '../../core/index.js';
import type { CampaignOptions, Store, Term } from '../store.js';
import type { EtcdConnection } from './connection.js';
import type { Keys } from './keys.js';

/** What a term's store adds to its commits. */
export interface Fence {
  /** The revision that created the leader key of the term: commits require it unchanged. */
  readonly createRevision: number;
  readonly ended: AbortSignal;
  /** Ends the term (etcd said its key is gone). */
  end(): void;
  /** The error of a commit refused because the term ended. */
  endedError(): ShoalError;
}

export interface LeadershipDeps {
  conn: EtcdConnection;
  keys: Keys;
  termStore: (fence: Fence) => Store;
}

/**
 * Share of the TTL after the last acknowledged keepalive (counted from when it was sent, so never later than etcd
 * renewed the lease) at which a leader stops acting on its own. It leaves 15% of the TTL (750 ms at 5 s) before etcd
 * can let anyone else lead; lower shares made a busy manager (an event loop held up for a second by a burst of task
 * starts) step down needlessly, costing a failover each time. Writes are fenced whatever this is.
 */
const LOCAL_LEASE_SHARE = 0.85;

/**
 * Campaigns until `candidate` creates the leader key (resolving its Term) or the signal aborts (undefined).
 * While another candidate leads it watches the key, and tries again once the key is deleted (resigned, lease
 * expired) or, as a safety net, every TTL.
 */
export const campaign = async (deps: LeadershipDeps, candidate: string, opts: CampaignOptions): Promise<Term | undefined> => {
  const { conn, keys } = deps;
  const { signal } = opts;
  if (signal.aborted) return undefined;
  conn.assertOpen();
  const ttlSeconds = Math.max(2, Math.ceil(opts.ttlMs / 1000));
  const stop = AbortSignal.any([signal, conn.closed]);
  const client = conn.client;
  let granted: KeptLease | undefined;
  try {
    while (!stop.aborted) {
      if (granted === undefined || granted.lease.revoked()) granted = await grant(conn, ttlSeconds);
      const res = await tryToLead(deps, candidate, await granted.lease.grant());
      if (res === undefined) {
        // The lease expired while we waited (this process paused, etcd unreachable): take a new one.
        granted.lease.release();
        granted = undefined;
        continue;
      }
      if (res.succeeded) {
        // Stopped while the key was being created: the finally below revokes the lease, deleting the key.
        if (stop.aborted) break;
        const term = startTerm(deps, candidate, { kept: granted, ttlSeconds, createRevision: Number(res.header.revision), signal });
        granted = undefined;
        return term;
      }
      await keyChange(client, keys.leader, Number(res.header.revision) + 1, stop, ttlSeconds * 1000);
    }
  } finally {
    // Not leading: give the lease back (a waiting candidate's lease holds no key; an unsure campaign's might).
    if (granted !== undefined) revoke(conn, granted.lease).catch(() => undefined);
  }
  if (!signal.aborted) conn.assertOpen();
  return undefined;
};

/** Creates the leader key on `leaseId` unless it exists; undefined when etcd no longer knows the lease. */
const tryToLead = async ({ conn, keys }: LeadershipDeps, candidate: string, leaseId: string): Promise<ITxnResponse | undefined> => {
  const { client } = conn;
  try {
    return await conn.call('campaign for leadership', 'write', (o) =>
      client.if(keys.leader, 'Create', '==', 0).then(client.put(keys.leader).value(candidate).lease(leaseId)).else(client.get(keys.leader)).options(o).commit(),
    );
  } catch (e) {
    if (e instanceof ShoalError && e.cause instanceof EtcdLeaseInvalidError) return undefined;
    throw e;
  }
};

/**
 * A lease etcd3 keeps alive, and the earliest time etcd can have last renewed it: when the newest answered
 * keepalive was sent (answers come in order on one stream), or the grant before any.
 */
class KeptLease {
  renewedAt: number;
  onRenewed: () => void = () => undefined;
  private readonly unanswered: number[] = [];

  constructor(
    readonly lease: Lease,
    sentAt: number,
  ) {
    this.renewedAt = sentAt;
    lease
      .on('keepaliveFired', () => this.unanswered.push(performance.now()))
      .on('keepaliveEstablished', () => void this.unanswered.splice(0))
      .on('keepaliveSucceeded', () => {
        const sent = this.unanswered.shift();
        if (sent === undefined) return;
        this.renewedAt = Math.max(this.renewedAt, sent);
        this.onRenewed();
      });
  }
}

const grant = (conn: EtcdConnection, ttlSeconds: number): Promise<KeptLease> =>
  conn.call('grant a lease', 'read', async (o) => {
    const sentAt = performance.now();
    const lease = conn.client.lease(ttlSeconds, { deadline: o.deadline });
    await lease.grant();
    return new KeptLease(lease, sentAt);
  });

const revoke = async (conn: EtcdConnection, lease: Lease): Promise<void> => {
  try {
    await lease.revoke({ deadline: Date.now() + conn.timeoutMs });
  } catch (e) {
    throw conn.error(e, 'revoke the leader lease', 'write');
  }
};

/** Resolves once `key` changes after `fromRevision`, `stop` aborts, the watch fails, or `maxMs` pass. */
const keyChange = (client: Etcd3, key: string, fromRevision: number, stop: AbortSignal, maxMs: number): Promise<void> =>
  new Promise((resolve) => {
    const watcher = client.watch().key(key).startRevision(String(fromRevision)).watcher();
    const done = (): void => {
      clearTimeout(timer);
      stop.removeEventListener('abort', done);
      watcher.removeAllListeners('data');
      watcher.cancel().catch(() => undefined);
      resolve();
    };
    const timer = setTimeout(done, maxMs);
    stop.addEventListener('abort', done, { once: true });
    watcher.on('data', (res) => res.events.length > 0 && done());
    // Stays attached after done(): an 'error' nobody listens to would throw.
    watcher.on('error', done);
    if (stop.aborted) done();
  });

/**
 * The term of a candidate that created the leader key at `createRevision`. It ends on resign(), signal abort,
 * store close, lease loss, a commit that finds the key gone, or keepalives unanswered for LOCAL_LEASE_SHARE of
 * the TTL, counted from when the last answered keepalive was sent (answers come in order on one stream).
 */
const startTerm = (
  deps: LeadershipDeps,
  candidate: string,
  t: { kept: KeptLease; ttlSeconds: number; createRevision: number; signal: AbortSignal },
): Term => {
  const { conn } = deps;
  const { kept } = t;
  const { lease } = kept;
  const ended = new AbortController();
  const localLeaseMs = t.ttlSeconds * 1000 * LOCAL_LEASE_SHARE;
  let reason = '';
  let watchdog: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(watchdog);
    watchdog = setTimeout(expire, kept.renewedAt + localLeaseMs - performance.now());
  };
  // Timers run before I/O in a turn of the event loop: after a long synchronous stretch, the answer to a keepalive sent
  // before it may still wait unread. Judge the lease after this turn's I/O (an immediate runs after it), when that
  // answer has moved renewedAt on (and re-armed the watchdog).
  const expire = (): void => {
    const firedAt = performance.now();
    setImmediate(() => {
      if (ended.signal.aborted) return;
      if (performance.now() < kept.renewedAt + localLeaseMs) return arm();
      const late = Math.round(firedAt - (kept.renewedAt + localLeaseMs));
      const why = `etcd has not renewed its lease for ${Math.round(localLeaseMs)} ms (the check ran ${late} ms late)`;
      void end('revoke', why).catch(() => undefined);
    });
  };
  const onLost = (): void => void end('release', 'its lease expired or was revoked');
  const onAbort = (): void => void end('revoke', 'its campaign was stopped').catch(() => undefined);
  const onClose = (): void => void end('release', 'the store was closed');

  function endedError(): ShoalError {
    return new ShoalError('failed_precondition', `the leadership of '${candidate}' ended (${reason || 'its leader key is gone'}): nothing was written`);
  }

  /** Ends the term once (the signal's reason says why); 'revoke' also deletes the leader key now, 'release' leaves the lease to expire. */
  async function end(how: 'revoke' | 'release', why: string): Promise<void> {
    if (ended.signal.aborted) return;
    reason = why;
    clearTimeout(watchdog);
    kept.onRenewed = () => undefined;
    lease.off('lost', onLost);
    t.signal.removeEventListener('abort', onAbort);
    conn.closed.removeEventListener('abort', onClose);
    ended.abort(endedError());
    if (how === 'release' || conn.closed.aborted) {
      lease.release();
      return;
    }
    await revoke(conn, lease);
  }

  kept.onRenewed = arm;
  lease.on('lost', onLost);
  t.signal.addEventListener('abort', onAbort, { once: true });
  conn.closed.addEventListener('abort', onClose, { once: true });
  arm();

  const fence: Fence = {
    createRevision: t.createRevision,
    ended: ended.signal,
    end: () => void end('revoke', 'etcd no longer holds its leader key').catch(() => undefined),
    endedError,
  };
  return { store: deps.termStore(fence), ended: ended.signal, resign: () => end('revoke', 'it resigned') };
};
