// Store watches on etcd: one etcd watch over the store's prefix (with previous values), its events grouped into one
// batch per revision (etcd sends a revision's events together unless asked to fragment, which we never do),
// filtered by kind and queued for the consumer in order.
//
// Invariant: `cursor` is the first revision not yet queued; everything below it was queued once, in order. After a
// reconnect etcd3 re-creates the watch from its own idea of the revision, which can lie past events still owed
// during a catch-up; so on every disconnect the watch is pointed back at `cursor`, and anything below it that comes
// again is dropped. A consumer that falls behind by more than `queueChars` pauses the etcd watch, which resumes
// from `cursor` once the queue has drained: etcd keeps the history, memory stays bounded.

import type { IEvent, IWatchResponse, Watcher } from 'etcd3';
import type { Kind, StoredObject } from '../../core/index.js';
import { ShoalError } from '../../core/index.js';
import type { WatchEvent, WatchOptions } from '../store.js';
import type { EtcdConnection } from './connection.js';
import type { Keys } from './keys.js';

export interface WatchDeps {
  conn: EtcdConnection;
  keys: Keys;
  /** Queued batches above this size (JSON characters) pause the etcd watch until the consumer catches up. */
  queueChars: number;
}

/** Store.watch on etcd: batches from `fromRevision` (0: all history) until the signal aborts or the store closes. */
export async function* watchStore(deps: WatchDeps, opts: WatchOptions): AsyncGenerator<WatchEvent[], void, undefined> {
  if (!Number.isSafeInteger(opts.fromRevision) || opts.fromRevision < 0) {
    throw new ShoalError('invalid_argument', `watch fromRevision must be a non-negative integer, got ${String(opts.fromRevision)}`);
  }
  const { signal } = opts;
  if (signal.aborted) return;
  deps.conn.assertOpen();
  const feed = new Feed(deps, Math.max(1, opts.fromRevision), opts.kinds);
  const stop = (): void => feed.stop();
  signal.addEventListener('abort', stop, { once: true });
  deps.conn.closed.addEventListener('abort', stop, { once: true });
  try {
    for (;;) {
      const batch = await feed.next();
      if (batch === undefined) return;
      yield batch;
    }
  } finally {
    signal.removeEventListener('abort', stop);
    deps.conn.closed.removeEventListener('abort', stop);
    feed.stop();
  }
}

/** One revision's events, queued. */
interface Queued {
  events: WatchEvent[];
  chars: number;
}

/** The etcd side of one store watch and the queue between it and the consumer. */
class Feed {
  /** Batches from `head` on are waiting for the consumer (an index, as Array.shift copies the whole array). */
  private queue: Queued[] = [];
  private head = 0;
  private queuedChars = 0;
  private cursor: number;
  private watcher: Watcher | undefined;
  private failure: ShoalError | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  /** Fails the watch when etcd cannot be reached for this long. */
  private outage: NodeJS.Timeout | undefined;
  private readonly kinds: Set<string> | undefined;

  constructor(
    private readonly deps: WatchDeps,
    fromRevision: number,
    kinds: Kind[] | undefined,
  ) {
    this.cursor = fromRevision;
    this.kinds = kinds === undefined ? undefined : new Set(kinds);
    this.subscribe();
  }

  /** The next batch; undefined once stopped; throws the failure once the batches before it are consumed. */
  async next(): Promise<WatchEvent[] | undefined> {
    for (;;) {
      if (this.stopped) return undefined;
      const next = this.dequeue();
      if (next !== undefined) return next.events;
      if (this.failure) throw this.failure;
      // Paused for backpressure and now drained: follow etcd again from where the queue ended.
      if (this.watcher === undefined) this.subscribe();
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  private dequeue(): Queued | undefined {
    const q = this.queue[this.head];
    if (q === undefined) return undefined;
    this.head++;
    this.queuedChars -= q.chars;
    // Drop the consumed part once it is the larger one: amortized O(1) per batch.
    if (this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return q;
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe();
    this.wake?.();
  }

  private subscribe(): void {
    // watcher() rather than create(): listeners must be attached before the first response can arrive.
    const w = this.deps.conn.client.watch().prefix(this.deps.keys.prefix).withPreviousKV().startRevision(String(this.cursor)).watcher();
    this.watcher = w;
    w.on('data', (res) => this.watcher === w && this.receive(res));
    w.on('connected', () => this.watcher === w && this.clearOutage());
    w.on('disconnected', () => {
      if (this.watcher !== w) return;
      w.request.start_revision = this.cursor;
      this.armOutage();
    });
    w.on('error', (e) => void (this.watcher === w && this.canceled(e)));
    this.armOutage();
  }

  /** Detaches from the etcd watch; its 'error' listener stays, as an 'error' nobody listens to would throw. */
  private unsubscribe(): void {
    const w = this.watcher;
    this.watcher = undefined;
    this.clearOutage();
    if (w === undefined) return;
    w.removeAllListeners('data').removeAllListeners('connected').removeAllListeners('disconnected');
    w.cancel().catch(() => undefined);
  }

  private receive(res: IWatchResponse): void {
    let batch: Queued | undefined;
    let revision = 0;
    const flush = (): void => {
      if (batch === undefined) return;
      if (batch.events.length > 0) {
        this.queue.push(batch);
        this.queuedChars += batch.chars;
      }
      this.cursor = revision + 1;
      batch = undefined;
    };
    try {
      for (const ev of res.events) {
        const rev = Number(ev.kv.mod_revision);
        if (rev < this.cursor) continue; // queued before a reconnect
        if (rev !== revision) flush();
        revision = rev;
        batch ??= { events: [], chars: 0 };
        const event = this.decode(ev, rev);
        if (event === undefined) continue;
        batch.events.push(event);
        batch.chars += ev.kv.value.length + (ev.prev_kv?.value.length ?? 0);
      }
      flush();
    } catch (e) {
      this.fail(e instanceof ShoalError ? e : new ShoalError('internal', `${this.deps.conn.where}: unreadable watch event: ${(e as Error).message}`));
    }
    if (this.queuedChars > this.deps.queueChars) this.unsubscribe();
    this.wake?.();
  }

  /** A store event from an etcd event; undefined for keys that are not objects or not of the watched kinds. */
  private decode(ev: IEvent, revision: number): WatchEvent | undefined {
    const target = this.deps.keys.parse(ev.kv.key.toString());
    if (target === undefined || (this.kinds !== undefined && !this.kinds.has(target.kind))) return undefined;
    const parse = (value: Buffer): StoredObject => JSON.parse(value.toString()) as StoredObject;
    const base = { revision, kind: target.kind as Kind, id: target.id };
    if (ev.type === 'Put') return { ...base, type: 'put', object: parse(ev.kv.value) };
    // A delete carries the object as last stored: the previous value, which etcd reads at revision - 1 and omits
    // silently when that was compacted away.
    if (!ev.prev_kv) {
      throw new ShoalError(
        'failed_precondition',
        `cannot watch revision ${revision} of ${this.deps.conn.where}: the last value of deleted ${target.kind} '${target.id}' was compacted; re-list and watch from the list's revision + 1`,
      );
    }
    return { ...base, type: 'delete', object: parse(ev.prev_kv.value) };
  }

  /** etcd canceled the watch: because the revision wanted was compacted (a probe read tells), or worse. */
  private async canceled(e: Error): Promise<void> {
    this.unsubscribe();
    const { conn, keys } = this.deps;
    const from = this.cursor;
    try {
      await conn.call('check the watch revision', 'read', (o) => conn.client.get(keys.leader).revision(from).options(o).exec());
      this.fail(new ShoalError('internal', `${conn.where}: the watch from revision ${from} was canceled: ${e.message}`));
    } catch (probe) {
      const err = probe instanceof ShoalError ? probe : conn.error(probe, 'check the watch revision', 'read');
      if (err.code !== 'failed_precondition') {
        this.fail(err);
        return;
      }
      this.fail(
        new ShoalError(
          'failed_precondition',
          `cannot watch from revision ${from}: ${conn.where} compacted its history past it; re-list and watch from the list's revision + 1`,
        ),
      );
    }
  }

  private fail(e: ShoalError): void {
    this.failure ??= e;
    this.unsubscribe();
    this.wake?.();
  }

  private armOutage(): void {
    if (this.outage !== undefined) return;
    const ms = this.deps.conn.timeoutMs * 2;
    this.outage = setTimeout(() => {
      this.outage = undefined;
      this.fail(new ShoalError('unavailable', `${this.deps.conn.where}: the watch could not connect for ${ms} ms`));
    }, ms);
  }

  private clearOutage(): void {
    clearTimeout(this.outage);
    this.outage = undefined;
  }
}
