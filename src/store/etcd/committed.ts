// The objects an etcd client committed lately, by revision, for its own watches: the first watch to deliver such a
// revision takes them instead of parsing the values etcd sends back (a manager's cache follows every write it makes).

import type { StoredObject } from '../../core/index.js';

/** Revisions kept at most, should no watch deliver them (the oldest go first). */
const MAX_REVISIONS = 1024;

/**
 * Commits of task creates and updates only, each as the objects written (the caller's objects with the meta written):
 * tasks are nearly every write, and each of their writers makes the objects it commits anew and never changes them (nor
 * what they share) afterwards. A watch that takes a revision gets copies of its own: no other watch gets the same.
 */
export class CommittedObjects {
  private readonly byRevision = new Map<number, Map<string, StoredObject>>();

  /** Records a commit's objects (`undefined` for a delete); a commit of anything but task creates and updates is not kept. */
  record(revision: number, stored: readonly (StoredObject | undefined)[]): void {
    const objects = new Map<string, StoredObject>();
    for (const o of stored) {
      if (o?.kind !== 'task') return;
      objects.set(o.id, o);
    }
    this.byRevision.set(revision, objects);
    if (this.byRevision.size > MAX_REVISIONS) this.byRevision.delete(this.byRevision.keys().next().value as number);
  }

  /**
   * The objects a revision wrote, by id, if this client committed it and no watch took them yet; revisions before it
   * that no watch took are dropped (watches deliver in order: none will).
   */
  take(revision: number): Map<string, StoredObject> | undefined {
    for (const r of this.byRevision.keys()) {
      if (r >= revision) break;
      this.byRevision.delete(r);
    }
    const objects = this.byRevision.get(revision);
    this.byRevision.delete(revision);
    return objects;
  }
}
