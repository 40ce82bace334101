// Store URLs: `etcd://h:p[,h:p…]` (etcds:// for TLS), `sqlite:///abs/path` or a plain path, parsed into a StoreConfig.

import { ShoalError } from '../../core/index.js';

/** Where a store lives, as a URL names it (TLS material and tuning are added by the caller). */
export type StoreUrlConfig = { kind: 'sqlite'; path: string } | { kind: 'etcd'; endpoints: string[] };

/** etcd's registered client port, for hosts given without one. */
const DEFAULT_ETCD_PORT = 2379;
const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/**
 * Parses a store URL. `etcd://h1:p1,h2:p2` gives endpoints `http://h1:p1`, `http://h2:p2`; `etcds://` gives `https://`
 * endpoints, whose CA the caller adds as `tls`. `sqlite:///abs/path` or a path without a scheme gives the SQLite file.
 */
export const parseStoreUrl = (url: string): StoreUrlConfig => {
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (url.trim() === '') throw bad(url, 'it is empty');
    return { kind: 'sqlite', path: url };
  }
  const rest = url.slice(scheme.length + 3);
  switch (scheme) {
    case 'sqlite':
      if (!rest.startsWith('/')) throw bad(url, 'sqlite:// takes an absolute path, as in sqlite:///var/lib/shoal/store.db');
      return { kind: 'sqlite', path: rest };
    case 'etcd':
    case 'etcds':
      return { kind: 'etcd', endpoints: parseHosts(url, rest, scheme === 'etcds' ? 'https' : 'http') };
    default:
      throw bad(url, `unknown scheme '${scheme}'; use etcd://, etcds://, sqlite:// or a file path`);
  }
};

/** `h:p,h:p` (a trailing '/' allowed) as endpoint URLs. */
const parseHosts = (url: string, rest: string, protocol: 'http' | 'https'): string[] => {
  // Credentials would end up in logs and error messages: refuse them without repeating the input.
  if (rest.includes('@')) throw new ShoalError('invalid_argument', 'store URLs cannot carry credentials (user:password@); use TLS client certificates');
  const list = rest.endsWith('/') ? rest.slice(0, -1) : rest;
  if (list.includes('/') || list.includes('?') || list.includes('#')) throw bad(url, 'an etcd URL names hosts only (no path, query or fragment)');
  const hosts = list.split(',');
  if (hosts.some((h) => h.trim() === '')) throw bad(url, 'it names no host, or an empty one between commas');
  return hosts.map((h) => `${protocol}://${hostPort(url, h.trim())}`);
};

/** `host`, `host:port`, `[v6]` or `[v6]:port`, checked, with the default port added. */
const hostPort = (url: string, h: string): string => {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::([^:]*))?$/i.exec(h);
  if (!m) throw bad(url, `'${h}' is not host:port`);
  const host = m[1]!;
  const portText = m[2];
  if (portText === undefined) return `${host}:${DEFAULT_ETCD_PORT}`;
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw bad(url, `port '${portText}' of '${h}' is not a number from 1 to 65535`);
  return `${host}:${port}`;
};

const bad = (url: string, why: string): ShoalError => new ShoalError('invalid_argument', `invalid store URL '${url}': ${why}`);
