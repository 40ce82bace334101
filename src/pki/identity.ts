// Who a node certificate says its holder is, whether to believe it, and when to renew it.

import { X509Certificate } from 'node:crypto';
import { ShoalError, type NodeRole } from '../core/index.js';
import { checkDate } from './keys.js';
import { NODE_ROLES } from './issue.js';
import { x509 } from './x509.js';

/** The identity a manager wrote into a node certificate. */
export interface NodeIdentity {
  nodeId: string;
  role: NodeRole;
  clusterId: string;
  notBefore: Date;
  notAfter: Date;
  /** Lowercase hex, as in the certificate. */
  serial: string;
}

/** PEM text, or DER bytes such as `tlsSocket.getPeerCertificate().raw`. */
export type CertificateInput = string | Uint8Array;

const unauthenticated = (why: string, cause?: unknown): ShoalError =>
  new ShoalError('unauthenticated', `node certificate refused: ${why}`, cause === undefined ? {} : { cause });

const single = (name: x509.Name, field: string, label: string): string => {
  const values = name.getField(field);
  if (values.length !== 1 || values[0] === undefined || values[0] === '') {
    throw unauthenticated(`its subject must have exactly one ${field} (${label}), found ${values.length}`);
  }
  return values[0];
};

/**
 * Reads the identity of a node certificate (CN=node ID, OU=role, O=cluster ID) without judging it;
 * only use it on certificates already verified, e.g. a peer that passed a mutual TLS handshake.
 */
export const parseNodeCertificate = (cert: CertificateInput): NodeIdentity => {
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(typeof cert === 'string' ? cert : Buffer.from(cert));
  } catch (e) {
    throw unauthenticated(`it is not a readable X.509 certificate (${(e as Error).message})`, e);
  }
  const subject = parsed.subjectName;
  const role = single(subject, 'OU', 'role');
  if (!(NODE_ROLES as readonly string[]).includes(role)) throw unauthenticated(`its role "${role}" is neither manager nor worker`);
  return {
    nodeId: single(subject, 'CN', 'node ID'),
    role: role as NodeRole,
    clusterId: single(subject, 'O', 'cluster ID'),
    notBefore: parsed.notBefore,
    notAfter: parsed.notAfter,
    serial: parsed.serialNumber.toLowerCase(),
  };
};

export interface VerifyNodeCertificateOptions {
  /** PEM of the cluster's CA certificate. */
  ca: string;
  now: Date;
  /** Expected cluster; by default the cluster named by the CA. */
  clusterId?: string;
}

/**
 * The identity in `cert` if the cluster's CA signed it, it is a node (not a CA) certificate, it is
 * valid at `now`, and it names the CA's cluster; otherwise a ShoalError('unauthenticated') saying why.
 */
export const verifyNodeCertificate = (cert: CertificateInput, opts: VerifyNodeCertificateOptions): NodeIdentity => {
  checkDate('now', opts.now);
  let leaf: X509Certificate;
  let ca: X509Certificate;
  try {
    leaf = new X509Certificate(typeof cert === 'string' ? cert : Buffer.from(cert));
  } catch (e) {
    throw unauthenticated(`it is not a readable X.509 certificate (${(e as Error).message})`, e);
  }
  try {
    ca = new X509Certificate(opts.ca);
  } catch (e) {
    throw new ShoalError('invalid_argument', `invalid CA certificate: ${(e as Error).message}`, { cause: e });
  }
  // Signature before anything else: nothing a certificate says matters until we know who said it.
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) throw unauthenticated("it was not issued by this cluster's CA");
  if (leaf.ca) throw unauthenticated('it is a CA certificate, not a node certificate');
  const identity = parseNodeCertificate(cert);
  if (opts.now < identity.notBefore) throw unauthenticated(`it is not valid before ${identity.notBefore.toISOString()} (now ${opts.now.toISOString()})`);
  if (opts.now > identity.notAfter) throw unauthenticated(`it expired at ${identity.notAfter.toISOString()} (now ${opts.now.toISOString()})`);
  const caValidFrom = new Date(ca.validFrom);
  const caValidTo = new Date(ca.validTo);
  if (opts.now < caValidFrom || opts.now > caValidTo) {
    throw unauthenticated(`the CA is valid only from ${caValidFrom.toISOString()} to ${caValidTo.toISOString()}`);
  }
  const caCluster = new x509.X509Certificate(opts.ca).subjectName.getField('O')[0];
  const expected = opts.clusterId ?? caCluster;
  if (identity.clusterId !== expected) throw unauthenticated(`it belongs to cluster "${identity.clusterId}", not "${expected ?? '(none)'}"`);
  return identity;
};

/**
 * When to renew: a random point between 50% and 80% of the certificate's lifetime (Swarm's rule),
 * so the nodes of a cluster joined together do not all renew at once. `random` returns a number in
 * [0, 1], like Math.random; the caller compares the result with its clock (a past date means now).
 */
export const renewalDue = (identity: Pick<NodeIdentity, 'notBefore' | 'notAfter'>, random: () => number): Date => {
  const lifetime = identity.notAfter.getTime() - identity.notBefore.getTime();
  const r = Math.min(1, Math.max(0, random()));
  return new Date(identity.notBefore.getTime() + Math.floor(lifetime * (0.5 + 0.3 * r)));
};
