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
  /** For an update (put of an existing object) and delete: the previous value. */
  prev?: StoredObject;
}

export interface WatchOptions {
  /** First revision to deliver. Events from `fromRevision` onwards are delivered in order, each once. */
  fromRevision: number;
  /** Only events of these kinds (all kinds when omitted). */
  kinds?: Kind[];
  signal: AbortSignal;
}

export interface Store {
  get<K extends Kind>(kind: K, id: string): Promise<ObjectOfKind<K> | undefined>;
  list<K extends Kind>(kind: K): Promise<ListResult<K>>;
  /** Applies all ops atomically or none; throws ShoalError conflict/already_exists/not_found naming the object. */
  commit(ops: Op[]): Promise<CommitResult>;
  /**
   * Events from `fromRevision`, in revision order, batched per transaction. If that revision has been
   * compacted away the iterator throws ShoalError('failed_precondition') and the caller must re-list.
   * Ends (returns) when the signal aborts.
   */
  watch(opts: WatchOptions): AsyncIterable<WatchEvent[]>;
  /** The current revision. */
  revision(): Promise<number>;
  close(): Promise<void>;
}
