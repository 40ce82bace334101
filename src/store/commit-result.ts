// A commit's result whose objects are parsed from what was stored (copies, never an alias of the caller's input) on
// first read: most writers (controllers, status reports) only need the revision, and at scale parsing every object
// back took a few percent of the manager's main thread.

import type { StoredObject } from '../core/index.js';
import type { CommitResult } from './store.js';

export const lazyCommitResult = (revision: number, parse: () => (StoredObject | undefined)[]): CommitResult => {
  let objects: (StoredObject | undefined)[] | undefined;
  return {
    revision,
    get objects() {
      return (objects ??= parse());
    },
  };
};
