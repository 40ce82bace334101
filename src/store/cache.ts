// An in-memory, watch-fed copy of the store (an "informer"): reconcilers, the dispatcher and API reads use it.
//
// Invariants: the cache applies whole transactions in revision order, so it is always a consistent snapshot
// of the store at `revision`; `waitFor(r)` lets a writer read its own writes before acting again.

import type { Kind, ObjectOfKind, StoredObject, Task } from '../core/index.js';
import { ShoalError, deepFreeze, isLive } from '../core/index.js';
import { background } from '../lib/turn-budget.js';
import type { Store, WatchEvent } from './store.js';

type Listener = (events: WatchEvent[]) => void;

interface Waiter {
  revision: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

// The audit log is not cached: it only grows, and only `audit ls` reads it (from the store).
const KINDS: Kind[] = ['cluster', 'node', 'service', 'task', 'user', 'team', 'token', 'grant', 'policy', 'template'];

/** A service's live tasks (desired running or ready) and how many of those run. */
export interface TaskCounts {
  live: number;
  running: number;
}

export class Cache {
  private readonly objects = new Map<Kind, Map<string, StoredObject>>();
  private readonly tasksByService = new Map<string, Map<string, Task>>();
  private readonly tasksByNode = new Map<string, Map<string, Task>>();
  /** Per service: its live tasks (desired running or ready) and how many of those run, kept as tasks change. */
  private readonly counts = new Map<string, TaskCounts>();
  /**
   * One task spec object per (service, service version): every task made from a version carries an equal copy of its
   * template, so the cache keeps one and lets the parsed copies go — at 100,000 tasks that is most of the cache's
   * memory — and callers comparing specs see the same object (cheap identity checks, memo hits).
   */
  private readonly specs = new Map<string, Task['spec']>();
  private readonly listeners = new Set<Listener>();
  private readonly waiters: Waiter[] = [];
  private current = 0;
  private failure: Error | undefined;

  private constructor(private readonly store: Store) {
    for (const k of KINDS) this.objects.set(k, new Map());
  }

  /** Lists every kind, then follows the store's watch until `signal` aborts. */
  static async start(store: Store, opts: { signal: AbortSignal }): Promise<Cache> {
    const cache = new Cache(store);
    await cache.load();
    void cache.follow(opts.signal);
    return cache;
  }

  get revision(): number {
    return this.current;
  }

  get<K extends Kind>(kind: K, id: string): ObjectOfKind<K> | undefined {
    return this.objects.get(kind)?.get(id) as ObjectOfKind<K> | undefined;
  }

  /** Objects of a kind. The returned objects are shared: callers must copy before changing them. */
  list<K extends Kind>(kind: K): ObjectOfKind<K>[] {
    return [...(this.objects.get(kind)?.values() ?? [])] as ObjectOfKind<K>[];
  }

  count(kind: Kind): number {
    return this.objects.get(kind)?.size ?? 0;
  }

  /** The ids of the services that have tasks (a removed service's too, while its tasks wind down). */
  serviceIdsWithTasks(): string[] {
    return [...this.tasksByService.keys()];
  }

  tasksOfService(serviceId: string): Task[] {
    return [...(this.tasksByService.get(serviceId)?.values() ?? [])];
  }

  /** A service's live tasks (desired running or ready) and how many of them run: `service ls` without a scan. */
  taskCounts(serviceId: string): TaskCounts {
    const c = this.counts.get(serviceId);
    return c ? { ...c } : { live: 0, running: 0 };
  }

  tasksOfNode(nodeId: string): Task[] {
    return [...(this.tasksByNode.get(nodeId)?.values() ?? [])];
  }

  /** Called after each applied transaction with its events, each with `prev` set to what the cache held before it. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves once the cache has applied `revision` (read-your-writes after a commit). Rejects with the
   * signal's reason on abort, and with `unavailable` once the cache has stopped following the store.
   */
  waitFor(revision: number, signal?: AbortSignal): Promise<void> {
    if (this.current >= revision) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      // The abort listener must go when the waiter settles, or a long-lived signal collects one per call.
      const onAbort = (): void => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason as Error);
      };
      const w: Waiter = {
        revision,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      this.waiters.push(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async load(): Promise<void> {
    // The cache must start from one consistent revision: list every kind, and list again if a write landed
    // between two lists. Writers are bursty, so a few tries suffice; the last try replays the watch from the
    // lowest revision, where an event older than a listed object is skipped by version (see apply).
    for (let attempt = 0; ; attempt++) {
      const lists = [];
      for (const kind of KINDS) lists.push({ kind, ...(await this.store.list(kind)) });
      const revisions = new Set(lists.map((l) => l.revision));
      if (revisions.size > 1 && attempt < 10) continue;
      for (const l of lists) this.objects.set(l.kind, new Map(l.items.map((o) => [o.id, o as StoredObject])));
      this.tasksByService.clear();
      this.tasksByNode.clear();
      this.counts.clear();
      this.specs.clear();
      for (const t of this.list('task')) {
        this.internSpec(t);
        this.index(t);
      }
      for (const s of this.list('service')) deepFreeze(s.spec.task);
      this.current = Math.min(...revisions);
      return;
    }
  }

  /** Follows the store's watch until `signal` aborts; then, or on a lasting failure, fails pending waiters. */
  private async follow(signal: AbortSignal): Promise<void> {
    this.failure = await this.followUntilStopped(signal);
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }

  private async followUntilStopped(signal: AbortSignal): Promise<Error> {
    const stopped = (): Error => new ShoalError('unavailable', 'the cache has stopped following the store');
    // Consecutive failures: a batch applied since the last failure proves the watch works again.
    let failures = 0;
    while (!signal.aborted) {
      try {
        for await (const batch of this.store.watch({ fromRevision: this.current + 1, signal })) {
          // Batches already buffered would otherwise be applied in one go (promise continuations never yield): each
          // takes a slot of the background budget, ahead of the other loops' units, which wait for what it applies
          // (controllers their own writes: a cache behind them starved them for seconds with 5 ms slices of its own).
          await background.slot('first');
          this.apply(batch);
          failures = 0;
        }
        // A watch ends by itself only when the store closes: nothing more will come.
        return stopped();
      } catch (e) {
        if (signal.aborted) break;
        if (e instanceof ShoalError && e.code === 'failed_precondition') {
          // Compacted past us: re-list. Listeners get no events for the gap, so they must resync by themselves.
          try {
            await this.load();
            continue;
          } catch (loadError) {
            e = loadError;
          }
        }
        if (++failures > 20) return e as Error;
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** failures)));
      }
    }
    return stopped();
  }

  private apply(batch: WatchEvent[]): void {
    const rev = batch[0]?.revision ?? this.current;
    if (rev <= this.current) return;
    for (const ev of batch) {
      const m = this.objects.get(ev.kind);
      if (!m) continue;
      const old = m.get(ev.id);
      // Only during a catch-up replay (see load) can an event be older than what the cache holds.
      if (ev.type === 'put' && old && old.meta.createdAt === ev.object.meta.createdAt && old.meta.version > ev.object.meta.version) continue;
      // Listeners compare with what was there before; stores do not send it, the cache has it.
      if (old) ev.prev = old;
      else delete ev.prev;
      if (old?.kind === 'task') this.unindex(old);
      if (ev.type === 'put') {
        if (ev.object.kind === 'task') this.internSpec(ev.object);
        // The template new tasks are made from: frozen, so their first write serializes it once too.
        if (ev.object.kind === 'service') deepFreeze(ev.object.spec.task);
        m.set(ev.id, ev.object);
        if (ev.object.kind === 'task') this.index(ev.object);
      } else {
        m.delete(ev.id);
      }
    }
    this.current = rev;
    // Waiters first: a throwing listener must not leave a writer waiting for a revision already applied.
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      if (w && w.revision <= rev) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
    for (const l of this.listeners) l(batch);
  }

  /** Shares one frozen spec among the tasks of a service version (frozen: it is everyone's, and stores may remember its JSON). */
  private internSpec(t: Task): void {
    const key = `${t.serviceId}/${t.serviceVersion}`;
    const shared = this.specs.get(key);
    if (shared) t.spec = shared;
    else this.specs.set(key, deepFreeze(t.spec));
  }

  private index(t: Task): void {
    let s = this.tasksByService.get(t.serviceId);
    if (!s) this.tasksByService.set(t.serviceId, (s = new Map<string, Task>()));
    s.set(t.id, t);
    this.tally(t, 1);
    if (t.nodeId) {
      let n = this.tasksByNode.get(t.nodeId);
      if (!n) this.tasksByNode.set(t.nodeId, (n = new Map<string, Task>()));
      n.set(t.id, t);
    }
  }

  private tally(t: Task, by: 1 | -1): void {
    if (!isLive(t)) return;
    let c = this.counts.get(t.serviceId);
    if (!c) this.counts.set(t.serviceId, (c = { live: 0, running: 0 }));
    c.live += by;
    if (t.status.state === 'running') c.running += by;
  }

  private unindex(t: Task): void {
    const s = this.tasksByService.get(t.serviceId);
    if (s?.delete(t.id)) this.tally(t, -1);
    if (s?.size === 0) {
      this.tasksByService.delete(t.serviceId);
      this.counts.delete(t.serviceId);
      for (const k of this.specs.keys()) if (k.startsWith(`${t.serviceId}/`)) this.specs.delete(k);
    }
    if (t.nodeId) {
      const n = this.tasksByNode.get(t.nodeId);
      n?.delete(t.id);
      if (n?.size === 0) this.tasksByNode.delete(t.nodeId);
    }
  }
}
