// Identifiers: random, URL-safe, lowercase ids for objects, and random secrets for credentials.

import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** Random bytes drawn in blocks: one system call per block, not per id (the scheduler makes ids by the thousand). */
const POOL_BYTES = 8192;
let pool = randomBytes(POOL_BYTES);
let used = 0;

const nextByte = (): number => {
  if (used === POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  return pool[used++] as number;
};

/** Bytes at or above this are skipped, so every character is equally likely (252 = 7 × 36). */
const UNBIASED_BELOW = 252;

/** A random id of `len` base-36 characters (25 chars ≈ 129 bits, like SwarmKit's ids). */
export const newId = (len = 25): string => {
  let out = '';
  while (out.length < len) {
    const b = nextByte();
    if (b < UNBIASED_BELOW) out += ALPHABET[b % 36];
  }
  return out;
};

/** A random secret, hex encoded. */
export const newSecret = (bytes = 32): string => randomBytes(bytes).toString('hex');
