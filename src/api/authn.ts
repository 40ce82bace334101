// Authentication: who a request comes from — the cluster's admin token, a user's API token, or a session token from a
// password sign-in — and the grants that apply to them.

import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { ADMIN_USER, ShoalError, type ApiToken, type Cluster } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { bearerToken, secretDigest, secretMatches } from '../lib/secrets.js';
import { verifyNodeCertificate } from '../pki/index.js';
import { grantsOf, type Principal } from '../policy/authorize.js';
import type { Cache } from '../store/cache.js';

/** User tokens read `shoal_<id>_<secret>`: the id finds the stored digest, the secret is checked against it. */
const TOKEN_RE = /^shoal_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$/;

export const ANONYMOUS: Principal = { user: 'anonymous', teams: [], grants: [], superuser: false };

/** A new token: its stored part (id, digest) and the secret text shown once to its owner. */
export const newApiToken = (): { id: string; digest: string; text: string } => {
  const id = randomBytes(10).toString('hex').slice(0, 16);
  const secret = randomBytes(32).toString('base64url');
  return { id, digest: secretDigest(secret), text: `shoal_${id}_${secret}` };
};

export class Authenticator {
  constructor(private readonly deps: { cache: Cache; clock: Clock; caPem: string; cluster: () => Cluster }) {}

  /** The principal of a request, or an `unauthenticated` error saying what is wrong with its credential. */
  authenticate(req: IncomingMessage): Principal {
    // A node certificate proves a node, not a user: a worker's certificate grants the session protocol only.
    const peer = (req.socket as TLSSocket).getPeerCertificate?.();
    if (peer?.raw && this.certificateRole(peer.raw) === 'worker') {
      throw new ShoalError('permission_denied', 'a worker certificate grants only the node session protocol, not the user API');
    }
    const token = bearerToken(req.headers.authorization);
    if (token === undefined) throw new ShoalError('unauthenticated', 'missing credentials: send "Authorization: Bearer <token>" (shoal login, or a token from shoal token create)');
    if (secretMatches(token, this.deps.cluster().auth.adminTokenDigests)) return { user: ADMIN_USER, teams: [], grants: [], superuser: true };
    const m = TOKEN_RE.exec(token);
    const stored = m?.[1] === undefined ? undefined : this.deps.cache.get('token', m[1]);
    if (!m?.[2] || !stored || !secretMatches(m[2], [stored.digest])) throw new ShoalError('unauthenticated', 'invalid credentials: the token is not a token of this cluster (revoked?)');
    if (expired(stored, this.deps.clock.now())) throw new ShoalError('unauthenticated', `the token expired at ${stored.expiresAt ?? ''}: sign in again (shoal login)`);
    return this.principalOf(stored.user);
  }

  /** A user with their teams and every grant that applies to them. */
  principalOf(user: string): Principal {
    const { cache } = this.deps;
    if (!cache.get('user', user)) throw new ShoalError('unauthenticated', `user '${user}' no longer exists`);
    const teams = cache
      .list('team')
      .filter((t) => t.members.includes(user))
      .map((t) => t.id)
      .sort();
    return { user, teams, grants: grantsOf(user, teams, cache.list('grant')), superuser: false };
  }

  private certificateRole(raw: Buffer): string | undefined {
    try {
      return verifyNodeCertificate(raw, { ca: this.deps.caPem, now: new Date(this.deps.clock.now()) }).role;
    } catch {
      return undefined;
    }
  }
}

export const expired = (t: ApiToken, now: number): boolean => t.expiresAt !== undefined && Date.parse(t.expiresAt) <= now;
