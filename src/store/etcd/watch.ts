// Store watches on etcd: one etcd watch over the store's prefix, its events grouped into one batch per revision (etcd
// sends a revision's events together unless asked to fragment, which we never do), filtered by kind and queued for
// the consumer in order.
//
// A delete event carries the object as last stored. The watch does not ask etcd for previous values (prev_kv): etcd
// reads one for every updated key of such a watch, one after another as it sends them (measured: 38,100 updates of
// 1 KB were not all delivered within 60 s with them, all in 1.8 s without). A batch with deletes reads their last
// values itself, in one transaction at the revision before, and waits in the queue until they are in.
//
// Invariant: `cursor` is the first revision not yet queued; everything below it was queued once, in order. After a
// reconnect etcd3 re-creates the watch from its own idea of the revision, which can lie past events still owed
// during a catch-up; so on every disconnect the watch is pointed back at `cursor`, and anything below it that comes
// again is dropped. A consumer that falls behind by more than `queueChars` pauses the etcd watch, which resumes
// from `cursor` once the queue has drained: etcd keeps the history, memory stays bounded.

import type { IWatchResponse, Watcher } from 'etcd3';
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
  revision: number;
  events: WatchEvent[];
  chars: number;
  /** While the last values of the batch's deletes are being read: settles (never rejects) once they are in or failed. */
  reading?: Promise<void>;
  /** The reads failed: the batch can never be delivered (the watch has failed). */
  unreadable?: boolean;
  /** Puts whose objects are filled in as the batch is delivered, and the values etcd sent for them. */
  puts?: { events: WatchEvent[]; values: Buffer[] };
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
      const head = this.queue[this.head];
      if (head?.reading) {
        await Promise.race([head.reading, new Promise<void>((resolve) => (this.wake = resolve))]);
        this.wake = undefined;
        continue;
      }
      if (head !== undefined && !head.unreadable) return await this.fill(this.dequeue() as Queued);
      if (this.failure) throw this.failure;
      // Paused for backpressure and now drained: follow etcd again from where the queue ended.
      if (this.watcher === undefined) this.subscribe();
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /**
   * A batch's events with its puts' objects filled in: those this client committed (see CommittedObjects) as it wrote
   * them, the others parsed (one JSON.parse over all of them is much cheaper than one per value). Done as the batch is
   * delivered rather than as it arrives, by when the commit's own answer has mostly been read; while a commit is still
   * unanswered, its answer gets one turn of the event loop to arrive (a third of a manager's commits came after their
   * watch event without it).
   */
  private async fill(q: Queued): Promise<WatchEvent[]> {
    const { puts } = q;
    if (puts === undefined) return q.events;
    delete q.puts;
    const { conn } = this.deps;
    let committed = conn.committed.take(q.revision);
    if (committed === undefined && conn.commits.load.held > 0) {
      await new Promise((resolve) => setImmediate(resolve));
      committed = conn.committed.take(q.revision);
    }
    const values: string[] = [];
    const parsed: WatchEvent[] = [];
    for (const [i, event] of puts.events.entries()) {
      const own = committed?.get(event.id);
      if (own !== undefined && event.kind === 'task') event.object = own;
      else {
        parsed.push(event);
        values.push((puts.values[i] as Buffer).toString());
      }
    }
    if (parsed.length > 0) {
      let objects: StoredObject[];
      try {
        objects = JSON.parse(`[${values.join(',')}]`) as StoredObject[];
      } catch (e) {
        throw new ShoalError('internal', `${this.deps.conn.where}: unreadable watch event at revision ${q.revision}: ${(e as Error).message}`);
      }
      for (const [i, event] of parsed.entries()) event.object = objects[i] as StoredObject;
    }
    return q.events;
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
    const w = this.deps.conn.client.watch().prefix(this.deps.keys.prefix).startRevision(String(this.cursor)).watcher();
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
    try {
      for (const batch of this.batches(res)) {
        if (batch.events.length > 0) {
          this.queue.push(batch);
          this.queuedChars += batch.chars;
        }
        this.cursor = batch.revision + 1;
      }
    } catch (e) {
      this.fail(e instanceof ShoalError ? e : new ShoalError('internal', `${this.deps.conn.where}: unreadable watch event: ${(e as Error).message}`));
    }
    if (this.queuedChars > this.deps.queueChars) this.unsubscribe();
    this.wake?.();
  }

  /**
   * One batch per revision of a response, in order, with its puts' values to be read as it is delivered (fill) and
   * its deletes' objects being read (readLastValues).
   */
  private batches(res: IWatchResponse): Queued[] {
    const batches: Queued[] = [];
    const deletes: { batch: Queued; deleted: { event: WatchEvent; key: Buffer }[] }[] = [];
    for (const ev of res.events) {
      const revision = Number(ev.kv.mod_revision);
      if (revision < this.cursor) continue; // queued before a reconnect
      let batch = batches.at(-1);
      if (batch?.revision !== revision) batches.push((batch = { revision, events: [], chars: 0 }));
      const target = this.deps.keys.parse(ev.kv.key.toString());
      if (target === undefined || (this.kinds !== undefined && !this.kinds.has(target.kind))) continue;
      // The object is filled in below (puts) or by readLastValues (deletes).
      const event: WatchEvent = { revision, type: ev.type === 'Put' ? 'put' : 'delete', kind: target.kind as Kind, id: target.id, object: undefined as unknown as StoredObject };
      batch.events.push(event);
      batch.chars += ev.kv.value.length;
      if (event.type === 'put') {
        batch.puts ??= { events: [], values: [] };
        batch.puts.events.push(event);
        batch.puts.values.push(ev.kv.value);
        continue;
      }
      const last = deletes.at(-1);
      if (last?.batch === batch) last.deleted.push({ event, key: ev.kv.key });
      else deletes.push({ batch, deleted: [{ event, key: ev.kv.key }] });
    }
    for (const { batch, deleted } of deletes) batch.reading = this.readLastValues(batch, deleted);
    return batches;
  }

  /**
   * Reads what the deletes of `batch` deleted, as stored at the revision before (one read-only transaction), into
   * their events. etcd keeps that value while the delete itself is in its history, but a compaction can land between
   * the event and the read: then, as on any failure, the batch stays undeliverable and the watch fails, with
   * `failed_precondition` for a compaction so the consumer re-lists.
   */
  private async readLastValues(batch: Queued, deleted: { event: WatchEvent; key: Buffer }[]): Promise<void> {
    const { conn } = this.deps;
    const at = batch.revision - 1;
    const what = `read the last values of the objects deleted at revision ${batch.revision}`;
    try {
      const res = await conn.call(what, 'read', (o) =>
        conn.client.kv.txn({ success: deleted.map(({ key }) => ({ request_range: { key, revision: String(at) } })) }, o),
      );
      for (const [i, { event }] of deleted.entries()) {
        const kv = res.responses[i]?.response_range.kvs[0];
        if (kv === undefined) throw new ShoalError('internal', `${conn.where}: deleted ${event.kind} '${event.id}' has no value at revision ${at}`);
        event.object = JSON.parse(kv.value.toString()) as StoredObject;
        batch.chars += kv.value.length;
        this.queuedChars += kv.value.length;
      }
    } catch (e) {
      batch.unreadable = true;
      const err = e instanceof ShoalError ? e : conn.error(e, what, 'read');
      this.fail(
        err.code === 'failed_precondition'
          ? new ShoalError(
              'failed_precondition',
              `cannot watch revision ${batch.revision} of ${conn.where}: the last values of the objects it deleted were compacted; re-list and watch from the list's revision + 1`,
            )
          : err,
      );
    } finally {
      delete batch.reading;
      this.wake?.();
    }
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
