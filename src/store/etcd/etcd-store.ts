// The etcd Store (v3 API, through the etcd3 client): the HA backend several managers share.
//
// Mapping (store.ts is modelled on etcd, so it is one-to-one):
//   - an object is the key <prefix><kind>/<id> holding its JSON; meta.version is the key's own version, which the
//     stored JSON carries too (create writes version 1, an update expected + 1: etcd counts the same way);
//   - the store revision is etcd's header revision: one per transaction that writes. The counter is the cluster's,
//     shared by every prefix, so revisions of one store rise by one per commit only while nothing else writes;
//   - commit is one etcd txn: compares (create: the key has no create revision; update/delete: its version is the
//     expected one; a term's store also: the leader key is still the one its term created), puts and deletes when
//     they hold, and when one fails, reads of every key it compared, to say which object was in the way.

import type { Etcd3, ITxnResponse } from 'etcd3';
import type { Kind, ObjectOfKind, StoredObject } from '../../core/index.js';
import { ShoalError } from '../../core/index.js';
import type { Clock } from '../../lib/clock.js';
import { isoNow, systemClock } from '../../lib/clock.js';
import type {
  CampaignOptions,
  CommitOptions,
  CommitResult,
  ListResult,
  Op,
  Store,
  StoreMember,
  StoreStatus,
  Term,
  WatchEvent,
  WatchOptions,
} from '../store.js';
import { lazyCommitResult } from '../commit-result.js';
import { EtcdConnection } from './connection.js';
import type { EtcdTls } from './connection.js';
import { DEFAULT_PREFIX, Keys } from './keys.js';
import { campaign } from './leadership.js';
import type { Fence } from './leadership.js';
import { watchStore } from './watch.js';

export type { EtcdTls } from './connection.js';

export interface EtcdStoreOptions {
  /** Client URLs of the members: http://host:port, or https://host:port with `tls`. */
  endpoints: string[];
  /** Key prefix of this store's data, ending in '/' (default '/shoal/'); stores must not nest their prefixes. */
  prefix?: string;
  tls?: EtcdTls;
  /** Source of meta.createdAt / meta.updatedAt. */
  clock?: Clock;
  /** Bound on every call to etcd, retries on other members included, in ms (default 3,000). */
  timeoutMs?: number;
  /**
   * Per watch: how much unconsumed history (JSON characters) may be queued before the watch stops taking events
   * from etcd; it takes them again, from where it stopped, once the consumer has caught up (default 64 MiB).
   */
  watchQueueChars?: number;
}

const DEFAULT_TIMEOUT_MS = 3_000;
const DEFAULT_WATCH_QUEUE_CHARS = 64 * 1024 * 1024;
/** Bound on asking one member for its status. */
const STATUS_TIMEOUT_MS = 1_500;

const describe = (kind: string, id: string): string => `${kind} '${id}'`;

/** One op of a commit, as the txn needs it. */
interface Planned {
  key: string;
  op: Op;
  /** The JSON written (create/update); undefined for a delete. */
  json: string | undefined;
  /** What the JSON says, as an object (create/update). */
  stored?: StoredObject;
}

export class EtcdStore implements Store {
  /**
   * etcd refuses a transaction with more than --max-txn-ops (default 128) compares or ops: one compare per op, plus
   * one for a term's fence.
   */
  readonly maxOpsPerCommit = 127;

  private constructor(
    private readonly conn: EtcdConnection,
    private readonly keys: Keys,
    private readonly opts: { clock: Clock; watchQueueChars: number },
    /** Set on a term's view of the store: its commits hold only while the term's leader key does. */
    private readonly fence?: Fence,
  ) {}

  /** A store on the cluster at `opts.endpoints`. Connects lazily: the first call fails if etcd is unreachable. */
  static open(opts: EtcdStoreOptions): EtcdStore {
    const endpoints = opts.endpoints;
    if (!Array.isArray(endpoints) || endpoints.length === 0) {
      throw new ShoalError('invalid_argument', 'an etcd store needs at least one endpoint');
    }
    for (const e of endpoints) {
      if (!/^https?:\/\/[^/]+\/?$/.test(e)) {
        throw new ShoalError('invalid_argument', `etcd endpoint '${e}' is not http(s)://host:port`);
      }
    }
    const secure = endpoints.filter((e) => e.startsWith('https://')).length;
    if (secure !== 0 && secure !== endpoints.length) {
      throw new ShoalError('invalid_argument', `etcd endpoints mix http and https: ${endpoints.join(', ')}`);
    }
    if (secure === 0 && opts.tls !== undefined) {
      throw new ShoalError('invalid_argument', `TLS material was given for plain http etcd endpoints ${endpoints.join(', ')}`);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new ShoalError('invalid_argument', `etcd timeoutMs must be a positive number, got ${String(timeoutMs)}`);
    }
    const keys = new Keys(opts.prefix ?? DEFAULT_PREFIX);
    const settings = { clock: opts.clock ?? systemClock, watchQueueChars: opts.watchQueueChars ?? DEFAULT_WATCH_QUEUE_CHARS };
    return new EtcdStore(new EtcdConnection(endpoints, opts.tls, timeoutMs), keys, settings);
  }

  private get client(): Etcd3 {
    return this.conn.client;
  }

  async get<K extends Kind>(kind: K, id: string): Promise<ObjectOfKind<K> | undefined> {
    const json = await this.conn.call(`read ${describe(kind, id)}`, 'read', (o) =>
      this.client.get(this.keys.object(kind, id)).options(o).string(),
    );
    return json === null ? undefined : (JSON.parse(json) as ObjectOfKind<K>);
  }

  async list<K extends Kind>(kind: K): Promise<ListResult<K>> {
    const res = await this.conn.call(`list ${kind} objects`, 'read', (o) =>
      this.client.getAll().prefix(this.keys.kind(kind)).options(o).exec(),
    );
    // One JSON.parse over the joined values is much cheaper than one per value.
    const items = res.kvs.length === 0 ? [] : (JSON.parse(`[${res.kvs.map((kv) => kv.value.toString()).join(',')}]`) as ObjectOfKind<K>[]);
    return { items, revision: Number(res.header.revision) };
  }

  async revision(): Promise<number> {
    const res = await this.conn.call('read the revision', 'read', (o) => this.client.get(this.keys.leader).options(o).exec());
    return Number(res.header.revision);
  }

  /** At most a few commits are at etcd at once (EtcdConnection.commits); queued ones go interactive first. */
  async commit(ops: Op[], opts?: CommitOptions): Promise<CommitResult> {
    // A term's store says its term ended even when the store's closing ended it.
    if (this.fence?.ended.aborted) throw this.fence.endedError();
    this.conn.assertOpen();
    validateOps(ops);
    const now = isoNow(this.opts.clock);
    const planned = ops.map((op): Planned => plan(op, this.keys, now));

    const compares: [key: string, target: 'Create' | 'Version', value: number][] = planned.map(({ key, op }) => {
      if (op.op === 'create') return [key, 'Create', 0];
      const expected = op.op === 'update' ? op.object.meta.version : op.version;
      // A missing key has version 0: expecting 0 (or less) must fail like any stale version, never match a gap.
      return [key, 'Version', expected >= 1 ? expected : -1];
    });
    if (this.fence) compares.push([this.keys.leader, 'Create', this.fence.createRevision]);
    const [first, ...rest] = compares as [(typeof compares)[number], ...typeof compares];
    const txn = rest
      .reduce((t, [key, target, value]) => t.and(key, target, '==', value), this.client.if(first[0], first[1], '==', first[2]))
      .then(...planned.map(({ key, json }) => (json === undefined ? this.client.delete().key(key) : this.client.put(key).value(json))))
      .else(...compares.map(([key]) => this.client.get(key)));

    const res = await this.conn.commits.run(() => {
      // The term may have ended while the commit waited: etcd would refuse it anyway (the leader key compare).
      if (this.fence?.ended.aborted) throw this.fence.endedError();
      return this.conn.call('commit', 'write', (o) => txn.options(o).commit());
    }, opts?.background ?? false);
    if (!res.succeeded) throw this.refusal(planned, res);
    this.conn.committed.record(Number(res.header.revision), planned.map((p) => p.stored));
    return lazyCommitResult(Number(res.header.revision), () =>
      planned.map(({ json }) => (json === undefined ? undefined : (JSON.parse(json) as StoredObject))),
    );
  }

  watch(opts: WatchOptions): AsyncIterable<WatchEvent[]> {
    return watchStore({ conn: this.conn, keys: this.keys, queueChars: this.opts.watchQueueChars }, opts);
  }

  campaign(candidate: string, opts: CampaignOptions): Promise<Term | undefined> {
    return campaign({ conn: this.conn, keys: this.keys, termStore: (fence) => new EtcdStore(this.conn, this.keys, this.opts, fence) }, candidate, opts);
  }

  async leader(): Promise<string | undefined> {
    const name = await this.conn.call('read the leader', 'read', (o) => this.client.get(this.keys.leader).options(o).string());
    return name ?? undefined;
  }

  /** Every member as the cluster lists it, each asked for its own status; the endpoints alone if none answers. */
  async status(): Promise<StoreStatus> {
    let listed: { id: string; name: string; endpoint: string }[];
    try {
      const res = await this.conn.call('list the members', 'read', (o) => this.client.cluster.memberList({}, o));
      listed = res.members.map((m) => ({ id: m.ID, name: m.name || m.ID, endpoint: m.clientURLs[0] ?? '' }));
    } catch (e) {
      this.conn.assertOpen();
      const error = e instanceof Error ? e.message : String(e);
      return { backend: 'etcd', members: this.conn.endpoints.map((endpoint) => ({ name: endpoint, endpoint, healthy: false, leader: false, error })) };
    }
    return { backend: 'etcd', members: await Promise.all(listed.map((m) => this.memberStatus(m))) };
  }

  /** Ends every watch and term (leases are left to expire) and closes the client. A term's view does nothing. */
  async close(): Promise<void> {
    if (this.fence) return;
    this.conn.close();
  }

  // ------------------------------------------------------------------ internals

  private async memberStatus(m: { id: string; name: string; endpoint: string }): Promise<StoreMember> {
    const base = { name: m.name, endpoint: m.endpoint, leader: false };
    if (m.endpoint === '') return { ...base, healthy: false, error: 'the member has not started yet (no client URL)' };
    const client = this.conn.memberClient(m.endpoint);
    try {
      const s = await client.maintenance.status({ deadline: Date.now() + Math.min(STATUS_TIMEOUT_MS, this.conn.timeoutMs) });
      const problems = [...s.errors, ...(s.leader === '0' ? ['the member has no leader'] : [])];
      return { ...base, leader: s.leader === m.id, healthy: problems.length === 0, ...(problems.length ? { error: problems.join('; ') } : {}) };
    } catch (e) {
      return { ...base, healthy: false, error: e instanceof Error ? e.message : String(e) };
    } finally {
      client.close();
    }
  }

  /** Why a txn's compares failed, from the reads of its failure branch (taken atomically with the compares). */
  private refusal(planned: Planned[], res: ITxnResponse): ShoalError {
    const found = res.responses.map((r) => r.response_range.kvs[0]);
    if (this.fence) {
      const leader = found[planned.length];
      if (leader === undefined || Number(leader.create_revision) !== this.fence.createRevision) {
        this.fence.end();
        return this.fence.endedError();
      }
    }
    for (const [i, { op }] of planned.entries()) {
      const kv = found[i];
      const version = kv === undefined ? 0 : Number(kv.version);
      if (op.op === 'create') {
        if (kv !== undefined) {
          return new ShoalError('already_exists', `cannot create ${describe(op.object.kind, op.object.id)}: it already exists`);
        }
        continue;
      }
      const [kind, id, expected] = op.op === 'update' ? [op.object.kind, op.object.id, op.object.meta.version] : [op.kind, op.id, op.version];
      if (kv === undefined) return new ShoalError('not_found', `cannot ${op.op} ${describe(kind, id)}: it does not exist`);
      if (version !== expected) {
        return new ShoalError(
          'conflict',
          `cannot ${op.op} ${describe(kind, id)}: expected version ${String(expected)} but the stored version is ${version}`,
        );
      }
    }
    return new ShoalError('internal', `${this.conn.where}: a commit was refused but every compare held on re-reading`);
  }
}

/** The key and the JSON to write for one op: create stamps version 1, an update expected + 1 (etcd's count). */
const plan = (op: Op, keys: Keys, now: string): Planned => {
  if (op.op === 'delete') return { key: keys.object(op.kind, op.id), op, json: undefined };
  const { object } = op;
  const meta =
    op.op === 'create'
      ? { ...object.meta, version: 1, createdAt: now, updatedAt: now }
      : // createdAt stays as the caller read it: the version compare proves they read the stored object.
        { ...object.meta, version: object.meta.version + 1, updatedAt: now };
  const stored = { ...object, meta };
  return { key: keys.object(object.kind, object.id), op, json: JSON.stringify(stored), stored };
};

/** The kind and id an op writes, or why it is malformed. */
const target = (op: Op): { kind: unknown; id: unknown } | string => {
  switch (op?.op) {
    case 'create':
    case 'update': {
      const o = op.object as Partial<StoredObject> | undefined;
      if (typeof o !== 'object' || o === null) return 'has no object';
      if (op.op === 'update' && !Number.isSafeInteger(o.meta?.version)) return 'needs object.meta.version';
      return { kind: o.kind, id: o.id };
    }
    case 'delete':
      return Number.isSafeInteger(op.version) ? { kind: op.kind, id: op.id } : 'needs a version';
    default:
      return `is an unknown op '${String((op as { op?: unknown } | undefined)?.op)}'`;
  }
};

/**
 * Refuses malformed transactions before they reach etcd, as the SQLite store does: at least one op, each well
 * formed, no object twice (etcd refuses a txn that writes a key twice), and kinds that cannot collide with the
 * store's own keys ('/' separates kind and id, a leading '_' is reserved).
 */
const validateOps = (ops: Op[]): void => {
  if (!Array.isArray(ops) || ops.length === 0) throw new ShoalError('invalid_argument', 'a transaction needs at least one operation');
  const seen = new Set<string>();
  for (const [i, op] of ops.entries()) {
    const t = target(op);
    if (typeof t === 'string') throw new ShoalError('invalid_argument', `operation ${i} (${String(op?.op)}) ${t}`);
    if (typeof t.kind !== 'string' || !/^[^/_][^/]*$/.test(t.kind)) {
      throw new ShoalError('invalid_argument', `operation ${i} (${op.op}) has an invalid kind '${String(t.kind)}'`);
    }
    if (typeof t.id !== 'string' || t.id === '') {
      throw new ShoalError('invalid_argument', `operation ${i} (${op.op}) on ${t.kind} has an empty id`);
    }
    const key = `${t.kind}/${t.id}`;
    if (seen.has(key)) throw new ShoalError('invalid_argument', `transaction touches ${describe(t.kind, t.id)} more than once`);
    seen.add(key);
  }
};
