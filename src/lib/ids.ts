// Identifiers: random, URL-safe, lowercase ids for objects, and random secrets for credentials.

import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** A random id of `len` base-36 characters (25 chars ≈ 129 bits, like SwarmKit's ids). */
export const newId = (len = 25): string => {
  const bytes = randomBytes(len);
  let out = '';
  for (const b of bytes) out += ALPHABET[b % 36];
  return out;
};

/** A random secret, hex encoded. */
export const newSecret = (bytes = 32): string => randomBytes(bytes).toString('hex');
