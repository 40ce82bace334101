// Where a store keeps things in etcd's flat key space, under its prefix:
//   <prefix><kind>/<id>  an object, its JSON as the value (the key's version is meta.version);
//   <prefix>_leader      the leader's candidate name, attached to its lease (no '/': never taken for an object).

import { ShoalError } from '../../core/index.js';

export const DEFAULT_PREFIX = '/shoal/';

export class Keys {
  readonly leader: string;

  constructor(readonly prefix: string) {
    // Ranges are taken by prefix: '/a' would also cover '/ab/...', so a prefix ends at a separator.
    if (!prefix.endsWith('/')) {
      throw new ShoalError('invalid_argument', `etcd key prefix '${prefix}' must end with '/'`);
    }
    this.leader = `${prefix}_leader`;
  }

  object(kind: string, id: string): string {
    return `${this.prefix}${kind}/${id}`;
  }

  /** The range holding every object of `kind`. */
  kind(kind: string): string {
    return `${this.prefix}${kind}/`;
  }

  /** The kind and id of an object key; undefined for the store's other keys (the leader key). */
  parse(key: string): { kind: string; id: string } | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const rest = key.slice(this.prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) return undefined;
    return { kind: rest.slice(0, slash), id: rest.slice(slash + 1) };
  }
}
