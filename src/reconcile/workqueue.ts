// A keyed work queue for level-triggered controllers: keys are deduplicated, a key is never processed
// twice at once, a key added while it is being processed runs again afterwards, and failures back off.

import { setMaxListeners } from 'node:events';
import { backoffDelay } from '../lib/backoff.js';
import type { Logger } from '../lib/logger.js';
import { background } from '../lib/turn-budget.js';

export interface ReconcileResult {
  /** Run this key again after this many ms even if nothing changes (e.g. a restart delay ends). */
  requeueAfterMs?: number;
  /**
   * The rest of the work, which needs no worker (e.g. waiting until the cache has what was written): the worker takes
   * the next key while the key stays busy until this settles; a rejection is a failure of the reconcile.
   */
  settled?: Promise<void>;
}

export type Reconcile = (key: string, signal: AbortSignal) => Promise<ReconcileResult | void>;

export class WorkQueue {
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly reconcile: Reconcile,
    private readonly opts: { logger: Logger; concurrency?: number },
  ) {}

  /** Number of keys waiting (not counting delayed ones), for metrics. */
  get depth(): number {
    return this.dirty.size;
  }

  add(key: string, delayMs = 0): void {
    if (this.closed) return;
    if (delayMs > 0) {
      const at = Date.now() + delayMs;
      const existing = this.timers.get(key);
      if (existing && existing.at <= at) return;
      if (existing) clearTimeout(existing.timer);
      const timer = setTimeout(() => {
        this.timers.delete(key);
        this.add(key);
      }, delayMs);
      timer.unref();
      this.timers.set(key, { at, timer });
      return;
    }
    this.dirty.add(key);
    this.wake?.();
  }

  /** Processes keys until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    // Every key settling waits on this signal (e.g. Cache.waitFor's abort listener), as many at once as keys settle:
    // up to one per service, each removed when it settles. Node warns of a leak past 10 listeners; this is not one.
    setMaxListeners(0, signal);
    const workers = Array.from({ length: this.opts.concurrency ?? 4 }, () => this.worker(signal));
    signal.addEventListener('abort', () => this.close(), { once: true });
    await Promise.all(workers);
  }

  private close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    this.wake?.();
  }

  private next(): string | undefined {
    for (const k of this.dirty) {
      if (!this.processing.has(k)) {
        this.dirty.delete(k);
        return k;
      }
    }
    return undefined;
  }

  private async worker(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      // A reconcile plans synchronously (up to tens of ms for a service of a thousand tasks); workers whose commits were
      // answered together would otherwise plan one after another in one turn of the event loop, holding it that long.
      // Each takes a slot of the background budget the process's loops share.
      await background.slot();
      if (signal.aborted) break;
      const key = this.next();
      if (key === undefined) {
        await new Promise<void>((resolve) => {
          const prev = this.wake;
          this.wake = () => {
            this.wake = prev;
            prev?.();
            resolve();
          };
        });
        continue;
      }
      this.processing.add(key);
      // The key is done when the reconcile and what it left to settle are; the worker goes on once the reconcile is.
      const reconciled = this.reconcile(key, signal);
      void reconciled
        .then(async (r) => {
          await r?.settled;
          this.succeeded(key, r);
        })
        .catch((e: unknown) => {
          if (!signal.aborted) this.failed(key, e);
        })
        .finally(() => this.release(key));
      await reconciled.catch(() => undefined);
    }
  }

  private succeeded(key: string, r: ReconcileResult | void): void {
    this.failures.delete(key);
    if (r?.requeueAfterMs !== undefined) this.add(key, Math.max(1, r.requeueAfterMs));
  }

  private failed(key: string, e: unknown): void {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = backoffDelay(n - 1, { baseMs: 20, maxMs: 5000 });
    // Logged as `item`: the logger redacts fields whose name ends in "key".
    this.opts.logger.debug(`${this.name}: reconcile failed, retrying`, { item: key, attempt: n, delayMs: delay, error: e });
    this.add(key, delay);
  }

  private release(key: string): void {
    this.processing.delete(key);
    // A key re-added while it was processing sits in `dirty`; wake a worker for it.
    if (this.dirty.size > 0) this.wake?.();
  }
}
