// Secrets at rest: only SHA-256 digests of credentials are stored, and they are compared in constant time.

import { createHash, timingSafeEqual } from 'node:crypto';

/** Hex SHA-256 digest of a secret; what the store keeps instead of the secret itself. */
export const secretDigest = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');

/** Whether `secret` matches one of `digests`, compared in constant time per digest. */
export const secretMatches = (secret: string, digests: readonly string[]): boolean => {
  const d = Buffer.from(secretDigest(secret), 'hex');
  let ok = false;
  for (const candidate of digests) {
    const c = Buffer.from(candidate, 'hex');
    if (c.length === d.length && timingSafeEqual(c, d)) ok = true;
  }
  return ok;
};

/** The token of an `Authorization: Bearer …` header, if any. */
export const bearerToken = (header: string | undefined): string | undefined => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
};
