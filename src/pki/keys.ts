// Shared pki primitives: ECDSA P-256 keys, PEM conversions, certificate names, serials and time rounding.

import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { ShoalError, invalid } from '../core/index.js';
import { x509 } from './x509.js';

/** Node's WebCrypto, passed explicitly to every x509 call so no process-global provider is needed. */
export const crypto = webcrypto;

export type CryptoKey = webcrypto.CryptoKey;

/** The only key type Shoal issues and accepts (design brief §5). */
export const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

export const generateKeyPair = async (): Promise<webcrypto.CryptoKeyPair> =>
  crypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);

/** PKCS#8 PEM (`BEGIN PRIVATE KEY`), the form node:tls takes as `key`. */
export const privateKeyPem = async (key: CryptoKey): Promise<string> =>
  x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');

/** Imports a P-256 private key for signing; accepts PKCS#8 or SEC1 (`BEGIN EC PRIVATE KEY`) PEM. */
export const importSigningKey = async (pem: string): Promise<CryptoKey> => {
  let der: Buffer;
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new Error(`key is ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''}, not ECDSA P-256`);
    }
    der = key.export({ type: 'pkcs8', format: 'der' });
  } catch (e) {
    throw new ShoalError('invalid_argument', `invalid CA key: ${(e as Error).message}`, { cause: e });
  }
  return crypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
};

// Ids go into certificate subjects and DNS SANs, so they are kept to characters that need no
// escaping anywhere; 64 is the X.520 upper bound for a common name.
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const checkId = (field: string, value: string): void => {
  if (!ID_PATTERN.test(value)) {
    throw invalid(field, `"${value}" must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
};

/** Certificate times have whole seconds (RFC 5280 forbids fractions), so round explicitly rather than let the encoder decide. */
export const floorToSecond = (d: Date): Date => new Date(Math.floor(d.getTime() / 1000) * 1000);
export const ceilToSecond = (d: Date): Date => new Date(Math.ceil(d.getTime() / 1000) * 1000);

export const checkDate = (field: string, d: Date): void => {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw invalid(field, 'must be a valid Date');
};

/** A random positive 128-bit serial (RFC 5280: positive, at most 20 octets, unpredictable). */
export const newSerial = (): string => {
  const b = randomBytes(16);
  // Clear the sign bit and set the next one so the DER INTEGER is positive and exactly 16 octets.
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x40;
  return b.toString('hex');
};
