// The persistent audit log: every write decision (who, when, what, allowed or denied, by which rule) as a store
// object, so it is replicated with the cluster's state and survives any manager.

import { randomBytes } from 'node:crypto';
import type { AuditEvent } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { isoNow } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { AuditEntry } from '../protocol/index.js';
import type { Store } from '../store/store.js';

/** Entries kept; older ones are pruned. */
export const DEFAULT_AUDIT_RETENTION = 20_000;
/** Pruning lists the whole log, so it runs once per this many entries made by a manager. */
const PRUNE_EVERY = 500;

export interface AuditFilter {
  user?: string;
  /** Epoch ms bounds. */
  since?: number;
  until?: number;
  limit?: number;
}

export class AuditLog {
  /** Entries made (an entry whose commit failed counts too: pruning runs about once per PRUNE_EVERY). */
  private made = 0;

  constructor(private readonly deps: { store: Store; clock: Clock; logger: Logger; retention?: number }) {}

  /** Appends an entry in a commit of its own. */
  async record(entry: Omit<AuditEntry, 'id' | 'time'>): Promise<void> {
    await this.deps.store.commit([{ op: 'create', object: this.event(entry) }]);
  }

  /**
   * An entry as the object to create, now (for `record`, or for a commit that writes it with what it records). Ids sort
   * in time order (epoch ms, then random), so listing needs no index.
   */
  event(entry: Omit<AuditEntry, 'id' | 'time'>): AuditEvent {
    const iso = isoNow(this.deps.clock);
    const id = `${String(this.deps.clock.now()).padStart(15, '0')}-${randomBytes(6).toString('hex')}`;
    if (++this.made % PRUNE_EVERY === 0) void this.prune().catch((e: unknown) => this.deps.logger.warn('audit log pruning failed', { error: String(e) }));
    return { kind: 'audit', id, meta: { version: 0, createdAt: iso, updatedAt: iso }, time: iso, ...entry };
  }

  async list(filter: AuditFilter): Promise<AuditEntry[]> {
    const { items } = await this.deps.store.list('audit');
    const inRange = (e: AuditEvent): boolean => {
      const t = Date.parse(e.time);
      return (filter.user === undefined || e.user === filter.user) && (filter.since === undefined || t >= filter.since) && (filter.until === undefined || t <= filter.until);
    };
    const rows = items
      .filter(inRange)
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map(({ kind: _k, meta: _m, ...rest }) => rest);
    return filter.limit === undefined ? rows : rows.slice(-filter.limit);
  }

  /** Deletes the oldest entries beyond the retention, a chunk per commit. */
  private async prune(): Promise<void> {
    const { store } = this.deps;
    const { items } = await store.list('audit');
    const excess = items.length - (this.deps.retention ?? DEFAULT_AUDIT_RETENTION);
    if (excess <= 0) return;
    const oldest = items.sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, excess);
    for (let i = 0; i < oldest.length; i += store.maxOpsPerCommit) {
      await store.commit(oldest.slice(i, i + store.maxOpsPerCommit).map((e) => ({ op: 'delete' as const, kind: 'audit' as const, id: e.id, version: e.meta.version })));
    }
  }
}
