// Join tokens: `SHOAL-1-<CA digest>-<secret>`, the CA pin and the credential a joining node presents.

import { invalid } from '../core/index.js';
import { newSecret } from '../lib/ids.js';

export interface JoinToken {
  /** Lowercase hex SHA-256 of the CA certificate's DER (see caDigest). */
  caDigest: string;
  secret: string;
}

const PREFIX = 'SHOAL';
const VERSION = '1';
const DIGEST = /^[0-9a-f]{64}$/;
// Lowercase letters and digits only: no '-', so the token splits unambiguously; 16 characters is
// the least that still carries ≥ 64 bits, and newJoinSecret gives 32 hex characters (128 bits).
const SECRET = /^[0-9a-z]{16,128}$/;
const SHAPE = `${PREFIX}-${VERSION}-<64 hex digit CA digest>-<secret>`;

/** A new random join secret: 32 lowercase hex characters (128 bits). */
export const newJoinSecret = (): string => newSecret(16);

/** The token text for a CA digest and a secret. */
export const formatJoinToken = (caDigest: string, secret: string): string => {
  if (!DIGEST.test(caDigest)) throw invalid('caDigest', 'must be 64 lowercase hex digits (a SHA-256 digest)');
  if (!SECRET.test(secret)) throw invalid('secret', 'must be 16 to 128 lowercase letters or digits');
  return `${PREFIX}-${VERSION}-${caDigest}-${secret}`;
};

/**
 * Splits a join token into its CA digest and secret. Errors say what is wrong with the token but
 * never repeat it: it is a credential and messages end up in logs.
 */
export const parseJoinToken = (text: string): JoinToken => {
  const bad = (reason: string) => invalid('token', `${reason}; a join token looks like ${SHAPE}`);
  // Surrounding whitespace is forgiven: tokens are copied from terminals.
  const parts = text.trim().split('-');
  if (parts.length === 1 && parts[0] === '') throw bad('it is empty');
  if (parts[0] !== PREFIX) throw bad(`it does not start with "${PREFIX}-"`);
  if (parts[1] !== VERSION) throw bad(parts[1] === undefined || parts[1] === '' ? 'the version is missing' : `version "${parts[1].slice(0, 8)}" is not supported (only ${VERSION})`);
  if (parts.length !== 4) throw bad(`it has ${parts.length} dash-separated parts instead of 4`);
  const [, , caDigest = '', secret = ''] = parts;
  if (!DIGEST.test(caDigest)) {
    throw bad(caDigest.length === 64 ? 'the CA digest must be lowercase hex digits' : `the CA digest has ${caDigest.length} characters instead of 64`);
  }
  if (!SECRET.test(secret)) {
    throw bad(secret.length < 16 || secret.length > 128 ? `the secret has ${secret.length} characters instead of 16 to 128` : 'the secret must be lowercase letters or digits');
  }
  return { caDigest, secret };
};
