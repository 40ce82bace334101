// The Store interface: versioned objects, atomic compare-and-set transactions, and watches from a revision.
//
// Model (chosen to map one-to-one onto etcd, the HA backend):
// - every object is stored under (kind, id); `meta.version` is the object's own write counter
//   (etcd: the key's `version`): 1 after creation, +1 on every update;
// - the store has a global `revision` that increases by exactly one per committed transaction
//   (etcd: the header revision); every watch event carries the revision of its transaction;
// - a transaction is a list of operations applied atomically; each update/delete names the version
//   it expects and the whole transaction fails with `conflict` if any expectation is stale.

import type { Kind, ObjectOfKind, StoredObject } from '../core/index.js';

/** One write inside a transaction. */
export type Op =
  /** Create: fails with already_exists when (kind, id) exists. `meta.version` of the input is ignored. */
  | { op: 'create'; object: StoredObject }
  /** Update: fails with conflict unless the stored version equals `object.meta.version`. */
  | { op: 'update'; object: StoredObject }
  /** Delete: fails with conflict unless the stored version equals `version` (not_found if absent). */
  | { op: 'delete'; kind: Kind; id: string; version: number };

/** What a committed transaction returns: its revision and the objects as stored (with new versions). */
export interface CommitResult {
  revision: number;
  /** One entry per op, in order: the stored object (create/update) or undefined (delete). */
  objects: (StoredObject | undefined)[];
}

export interface ListResult<K extends Kind> {
  items: ObjectOfKind<K>[];
  /** The store revision the list is consistent with; watch from `revision + 1` to follow on. */
  revision: number;
}

/** A change, as seen by watchers. */
export interface WatchEvent {
  revision: number;
  type: 'put' | 'delete';
  kind: Kind;
  id: string;
  /** The object after the write; for a delete, the object as it was last stored. */
  object: StoredObject;
  /**
   * The value before this event, for a put of an existing object and for a delete. Stores do not set it (carrying it
   * would double what every write logs and sends); the Cache sets it, from the copy it held, for its listeners.
   */
  prev?: StoredObject;
}

export interface WatchOptions {
  /** First revision to deliver. Events from `fromRevision` onwards are delivered in order, each once. */
  fromRevision: number;
  /** Only events of these kinds (all kinds when omitted). */
  kinds?: Kind[];
  signal: AbortSignal;
}

/** Options of Store.campaign. */
export interface CampaignOptions {
  /** Lease time to live: a leader that stops renewing (killed, cut off) loses the term this long after. */
  ttlMs: number;
  /** Stops campaigning (campaign resolves undefined) and, once leading, ends the term. */
  signal: AbortSignal;
}

/** A term of leadership won through the store (see Store.campaign). */
export interface Term {
  /**
   * The same store with every commit fenced on this term: a commit applies only while the term lasts; after it
   * ended (lease lost or expired, resigned) it fails with ShoalError('failed_precondition') and writes nothing.
   * Reads and watches are unchanged. close() on it is a no-op: the owner closes the underlying store.
   */
  readonly store: Store;
  /** Aborts when the term ends (lease lost or expired, resigned, signal aborted, store closed). Stop acting at once. */
  readonly ended: AbortSignal;
  /** Ends the term now, so that another candidate can win without waiting for the lease to expire. */
  resign(): Promise<void>;
}

/** One member of the store's cluster, as `shoal cluster status` reports it. */
export interface StoreMember {
  name: string;
  endpoint: string;
  healthy: boolean;
  /** This member leads the store's own consensus (etcd raft leader; always true for SQLite). */
  leader: boolean;
  /** Why it is unhealthy. */
  error?: string;
}

export interface StoreStatus {
  backend: 'sqlite' | 'etcd';
  members: StoreMember[];
}

/** Options of Store.commit. */
export interface CommitOptions {
  /**
   * A write no one waits for interactively (controllers, status reports): a store that queues writes lets interactive
   * ones (API requests) go first. Default false.
   */
  background?: boolean;
}

export interface Store {
  /**
   * Most ops one commit may hold (etcd refuses larger transactions: its --max-txn-ops defaults to 128). Writers
   * with more split them into several commits of independent ops.
   */
  readonly maxOpsPerCommit: number;
  get<K extends Kind>(kind: K, id: string): Promise<ObjectOfKind<K> | undefined>;
  list<K extends Kind>(kind: K): Promise<ListResult<K>>;
  /** Applies all ops atomically or none; throws ShoalError conflict/already_exists/not_found naming the object. */
  commit(ops: Op[], opts?: CommitOptions): Promise<CommitResult>;
  /**
   * Events from `fromRevision`, in revision order, batched per transaction. If that revision has been
   * compacted away the iterator throws ShoalError('failed_precondition') and the caller must re-list.
   * Ends (returns) when the signal aborts.
   */
  watch(opts: WatchOptions): AsyncIterable<WatchEvent[]>;
  /** The current revision. */
  revision(): Promise<number>;
  /**
   * Campaigns for leadership among the managers sharing this store: resolves with a Term once `candidate`
   * leads (at most one term is live at a time across all managers), or undefined once `opts.signal` aborts.
   */
  campaign(candidate: string, opts: CampaignOptions): Promise<Term | undefined>;
  /** The candidate leading now, or undefined while nobody does. */
  leader(): Promise<string | undefined>;
  /** Health of the store's members. */
  status(): Promise<StoreStatus>;
  close(): Promise<void>;
}
