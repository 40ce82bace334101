// The store layer's public surface: the Store interface, the watch-fed Cache and the backends behind openStore().

import { SqliteStore } from './sqlite/sqlite-store.js';
import type { SqliteStoreOptions } from './sqlite/sqlite-store.js';
import type { Store } from './store.js';

export type {
  CampaignOptions,
  CommitResult,
  ListResult,
  Op,
  Store,
  StoreMember,
  StoreStatus,
  Term,
  WatchEvent,
  WatchOptions,
} from './store.js';
export { Cache } from './cache.js';
export { SqliteStore } from './sqlite/sqlite-store.js';
export type { SqlitePragmas, SqliteStoreOptions } from './sqlite/sqlite-store.js';

/** Which backend to open and where; etcd joins this union in a later issue. */
export type StoreConfig = { kind: 'sqlite'; path: string } & SqliteStoreOptions;

/** Opens the configured backend. Async because network backends (etcd) connect before they can serve. */
export async function openStore(config: StoreConfig): Promise<Store> {
  const { kind, path, ...opts } = config;
  switch (kind) {
    case 'sqlite':
      return SqliteStore.open(path, opts);
  }
}
