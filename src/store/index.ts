// The store layer's public surface: the Store interface, the watch-fed Cache and the backends behind openStore().

import { EtcdStore } from './etcd/etcd-store.js';
import type { EtcdStoreOptions } from './etcd/etcd-store.js';
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
export { EtcdStore } from './etcd/etcd-store.js';
export type { EtcdStoreOptions, EtcdTls } from './etcd/etcd-store.js';
export { parseStoreUrl } from './etcd/url.js';
export type { StoreUrlConfig } from './etcd/url.js';

/** Which backend to open and where. */
export type StoreConfig = ({ kind: 'sqlite'; path: string } & SqliteStoreOptions) | ({ kind: 'etcd' } & EtcdStoreOptions);

/**
 * Opens the configured backend. Async because network backends connect before they can serve: an etcd store
 * reads the revision once, so an unreachable or misconfigured cluster fails here with `unavailable`.
 */
export async function openStore(config: StoreConfig): Promise<Store> {
  switch (config.kind) {
    case 'sqlite': {
      const { kind: _, path, ...opts } = config;
      return SqliteStore.open(path, opts);
    }
    case 'etcd': {
      const store = EtcdStore.open(config);
      try {
        await store.revision();
        return store;
      } catch (e) {
        await store.close();
        throw e;
      }
    }
  }
}
