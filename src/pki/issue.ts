// The manager's side of issuance: turning a node's CSR into a certificate whose identity the manager chose.

import { X509Certificate, createPrivateKey, createPublicKey, type webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { ShoalError, invalid, type NodeRole } from '../core/index.js';
import type { CaKeyPair } from './ca.js';
import { type CryptoKey, KEY_ALGORITHM, SIGNING_ALGORITHM, ceilToSecond, checkDate, checkId, crypto, floorToSecond, importSigningKey, newSerial } from './keys.js';
import { x509 } from './x509.js';

export const NODE_ROLES: readonly NodeRole[] = ['manager', 'worker'];

/** Swarm's default node certificate lifetime (design brief §5). */
export const DEFAULT_NODE_CERT_VALIDITY_MS = 90 * 24 * 60 * 60 * 1000;

/**
 * The DNS name every certificate of `role` carries, so a client can demand "a manager of my cluster"
 * with ordinary TLS hostname checking (`servername: roleServerName('manager')`) whatever address it dials.
 */
export const roleServerName = (role: NodeRole): string => `shoal-${role}`;

export interface SignNodeCsrOptions {
  ca: CaKeyPair;
  csrPem: string;
  /** The identity is the manager's decision; whatever the CSR's subject claims is ignored. */
  nodeId: string;
  role: NodeRole;
  clusterId: string;
  /** Start of validity. */
  now: Date;
  /** Lifetime; default 90 days. Whole seconds are enough: tests use seconds to minutes. */
  validityMs?: number;
  /** Addresses the node serves TLS on (managers): IP literals become IP SANs, anything else DNS SANs. */
  hosts?: readonly string[];
}

/**
 * Issues the node certificate for `csrPem`: subject CN=<nodeId>, OU=<role>, O=<clusterId>, usable
 * for both TLS client and server auth (managers serve with it too). Its lifetime never exceeds the CA's.
 */
export const signNodeCsr = async (opts: SignNodeCsrOptions): Promise<string> => {
  checkId('nodeId', opts.nodeId);
  checkId('clusterId', opts.clusterId);
  if (!NODE_ROLES.includes(opts.role)) throw invalid('role', `must be one of ${NODE_ROLES.join(', ')}, got "${String(opts.role)}"`);
  checkDate('now', opts.now);
  const validityMs = opts.validityMs ?? DEFAULT_NODE_CERT_VALIDITY_MS;
  if (!Number.isFinite(validityMs) || validityMs <= 0) throw invalid('validityMs', `must be a positive number of milliseconds, got ${validityMs}`);
  const hosts = opts.hosts ?? [];
  for (const h of hosts) if (h.trim() === '' || h !== h.trim()) throw invalid('hosts', `"${h}" is not a host name or IP address`);

  const csr = await parseCsr(opts.csrPem);
  const { cert: caCert, key: caKey } = await loadCa(opts.ca);
  const caCluster = caCert.subjectName.getField('O')[0];
  if (caCluster !== opts.clusterId) {
    throw new ShoalError('failed_precondition', `cannot issue a certificate for cluster "${opts.clusterId}": the CA belongs to cluster "${caCluster ?? '(none)'}"`);
  }

  const notBefore = floorToSecond(opts.now);
  if (notBefore < caCert.notBefore || notBefore >= caCert.notAfter) {
    throw new ShoalError('failed_precondition', `cannot issue at ${opts.now.toISOString()}: the CA is valid only from ${caCert.notBefore.toISOString()} to ${caCert.notAfter.toISOString()}`);
  }
  // Rounded up so the lifetime is at least what was asked, then capped: a certificate cannot outlive its issuer.
  const wanted = ceilToSecond(new Date(opts.now.getTime() + validityMs));
  const notAfter = wanted > caCert.notAfter ? caCert.notAfter : wanted;

  const sans: x509.JsonGeneralName[] = [
    { type: 'dns', value: opts.nodeId },
    { type: 'dns', value: roleServerName(opts.role) },
    ...hosts.map((h): x509.JsonGeneralName => ({ type: isIP(h) === 0 ? 'dns' : 'ip', value: h })),
  ];
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: newSerial(),
      subject: [{ CN: [opts.nodeId] }, { OU: [opts.role] }, { O: [opts.clusterId] }],
      issuer: caCert.subjectName,
      notBefore,
      notAfter,
      publicKey: csr.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectAlternativeNameExtension(sans, false),
        await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
      ],
    },
    crypto,
  );
  return cert.toString('pem');
};

/** Parses a CSR and checks it is self-signed by an ECDSA P-256 key, i.e. the requester holds the key it wants certified. */
const parseCsr = async (csrPem: string): Promise<x509.Pkcs10CertificateRequest> => {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (e) {
    throw new ShoalError('invalid_argument', `invalid certificate signing request: ${(e as Error).message}`, { cause: e });
  }
  const alg = csr.publicKey.algorithm as Partial<webcrypto.EcKeyAlgorithm>;
  if (alg.name !== KEY_ALGORITHM.name || alg.namedCurve !== KEY_ALGORITHM.namedCurve) {
    throw invalid('csr', `the key must be ECDSA P-256, got ${alg.name ?? 'unknown'} ${alg.namedCurve ?? ''}`.trimEnd());
  }
  let signed = false;
  try {
    signed = await csr.verify(crypto);
  } catch {
    // A signature that cannot even be checked is as bad as a wrong one.
  }
  if (!signed) throw invalid('csr', 'its signature does not verify, so the requester has not proved it holds the key');
  return csr;
};

/**
 * The CA as loaded, per key PEM: parsing and checking it costs milliseconds, and a manager signs a certificate for
 * every join and renewal (a thousand nodes joining at once). One entry: a manager has one CA.
 */
let loaded: { pem: string; ca: Promise<{ cert: x509.X509Certificate; key: CryptoKey }> } | undefined;

const loadCa = (ca: CaKeyPair): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> => {
  const pem = ca.certPem + ca.keyPem;
  if (loaded?.pem !== pem) {
    const p = parseCa(ca);
    // A failed load is not kept: the next call tries again and reports its own error.
    p.catch(() => {
      if (loaded?.ca === p) loaded = undefined;
    });
    loaded = { pem, ca: p };
  }
  return loaded.ca;
};

/** Loads the CA and checks its key belongs to its certificate, so a mismatched pair fails here and not at every TLS handshake. */
const parseCa = async (ca: CaKeyPair): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> => {
  let cert: x509.X509Certificate;
  let certSpki: Buffer;
  try {
    cert = new x509.X509Certificate(ca.certPem);
    certSpki = new X509Certificate(ca.certPem).publicKey.export({ type: 'spki', format: 'der' });
  } catch (e) {
    throw new ShoalError('invalid_argument', `invalid CA certificate: ${(e as Error).message}`, { cause: e });
  }
  const key = await importSigningKey(ca.keyPem);
  const keySpki = createPublicKey(createPrivateKey(ca.keyPem)).export({ type: 'spki', format: 'der' });
  if (!keySpki.equals(certSpki)) throw new ShoalError('invalid_argument', 'the CA key does not belong to the CA certificate');
  return { cert, key };
};
