// The cluster's root certificate authority: creating it and computing the digest a join token pins.

import { X509Certificate, createHash } from 'node:crypto';
import { ShoalError, invalid } from '../core/index.js';
import { SIGNING_ALGORITHM, checkDate, checkId, crypto, floorToSecond, generateKeyPair, newSerial, privateKeyPem } from './keys.js';
import { x509 } from './x509.js';

/** A CA certificate and its private key, both PEM. The key never leaves the managers. */
export interface CaKeyPair {
  certPem: string;
  keyPem: string;
}

/** The CA's common name; its organization is the cluster ID, which node certificates must repeat. */
export const CA_COMMON_NAME = 'shoal-ca';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Twenty years, like Swarm's root CA: rotating a root is an operation, not a routine. */
export const DEFAULT_CA_VALIDITY_DAYS = 20 * 365;

export interface CreateRootCaOptions {
  clusterId: string;
  /** Start of validity. */
  now: Date;
  validityDays?: number;
}

/** A self-signed ECDSA P-256 root CA for the cluster `clusterId`, valid from `now`. */
export const createRootCa = async (opts: CreateRootCaOptions): Promise<CaKeyPair> => {
  checkId('clusterId', opts.clusterId);
  checkDate('now', opts.now);
  const days = opts.validityDays ?? DEFAULT_CA_VALIDITY_DAYS;
  if (!Number.isFinite(days) || days <= 0) throw invalid('validityDays', `must be a positive number of days, got ${days}`);
  const keys = await generateKeyPair();
  const notBefore = floorToSecond(opts.now);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: newSerial(),
      name: [{ CN: [CA_COMMON_NAME] }, { O: [opts.clusterId] }],
      notBefore,
      notAfter: floorToSecond(new Date(notBefore.getTime() + days * DAY_MS)),
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        // pathLength 0: the root signs node certificates only, never intermediate CAs.
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
};

/**
 * The lowercase hex SHA-256 of the CA certificate's DER encoding: what a join token pins, so a
 * joining node can tell the real CA from an impersonator's before trusting anything it says.
 */
export const caDigest = (certPem: string): string => {
  let der: Buffer;
  try {
    der = new X509Certificate(certPem).raw;
  } catch (e) {
    throw new ShoalError('invalid_argument', `invalid CA certificate: ${(e as Error).message}`, { cause: e });
  }
  return createHash('sha256').update(der).digest('hex');
};
