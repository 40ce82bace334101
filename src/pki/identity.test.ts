// Tests of node certificate verification (issuer, validity window, cluster) and of the renewal window.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { ShoalError } from '../core/index.js';
import { createRootCa, type CaKeyPair } from './ca.js';
import { createNodeKeyAndCsr } from './csr.js';
import { parseNodeCertificate, renewalDue, verifyNodeCertificate } from './identity.js';
import { signNodeCsr } from './issue.js';
import { crypto } from './keys.js';
import { x509 } from './x509.js';

const NOW = new Date('2030-06-01T12:00:00.400Z');

/** Asserts `fn` throws ShoalError('unauthenticated') whose message matches `why`. */
const refused = (fn: () => unknown, why: RegExp): void => {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ShoalError, String(e));
    assert.equal(e.code, 'unauthenticated');
    assert.match(e.message, why);
    return true;
  });
};

describe('verifyNodeCertificate', () => {
  let ca: CaKeyPair;
  let otherCa: CaKeyPair;
  let cert: string;
  before(async () => {
    ca = await createRootCa({ clusterId: 'cluster-a', now: NOW });
    otherCa = await createRootCa({ clusterId: 'cluster-a', now: NOW });
    const { csrPem } = await createNodeKeyAndCsr();
    cert = await signNodeCsr({ ca, csrPem, nodeId: 'node-1', role: 'manager', clusterId: 'cluster-a', now: NOW, validityMs: 10 * 60_000 });
  });

  it('returns the identity of a certificate the CA issued, inside its validity, as PEM or DER', () => {
    const id = verifyNodeCertificate(cert, { ca: ca.certPem, now: NOW });
    assert.deepEqual(id, parseNodeCertificate(cert));
    assert.equal(id.nodeId, 'node-1');
    assert.equal(id.role, 'manager');
    assert.equal(id.clusterId, 'cluster-a');
    const der = new X509Certificate(cert).raw;
    assert.deepEqual(verifyNodeCertificate(der, { ca: ca.certPem, now: NOW }), id);
    // The last instant of validity still counts (RFC 5280: notAfter is inclusive).
    verifyNodeCertificate(cert, { ca: ca.certPem, now: id.notAfter });
  });

  it('refuses a certificate from another CA, even one with the same cluster ID and names', async () => {
    const { csrPem } = await createNodeKeyAndCsr();
    const forged = await signNodeCsr({ ca: otherCa, csrPem, nodeId: 'node-1', role: 'manager', clusterId: 'cluster-a', now: NOW });
    refused(() => verifyNodeCertificate(forged, { ca: ca.certPem, now: NOW }), /not issued by this cluster's CA/);
  });

  it('refuses an expired certificate', async () => {
    const { csrPem } = await createNodeKeyAndCsr();
    const brief = await signNodeCsr({ ca, csrPem, nodeId: 'n', role: 'worker', clusterId: 'cluster-a', now: NOW, validityMs: 1000 });
    verifyNodeCertificate(brief, { ca: ca.certPem, now: NOW });
    refused(() => verifyNodeCertificate(brief, { ca: ca.certPem, now: new Date(NOW.getTime() + 2000) }), /expired at 2030-06-01T12:00:02\.000Z/);
  });

  it('refuses a certificate that is not valid yet', () => {
    refused(() => verifyNodeCertificate(cert, { ca: ca.certPem, now: new Date(NOW.getTime() - 1000) }), /not valid before 2030-06-01T12:00:00\.000Z/);
  });

  it('refuses a certificate of another cluster than the expected one', () => {
    refused(() => verifyNodeCertificate(cert, { ca: ca.certPem, now: NOW, clusterId: 'cluster-b' }), /belongs to cluster "cluster-a", not "cluster-b"/);
  });

  it('refuses the CA certificate itself, and anything that is not a certificate', () => {
    refused(() => verifyNodeCertificate(ca.certPem, { ca: ca.certPem, now: NOW }), /CA certificate/);
    refused(() => verifyNodeCertificate('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', { ca: ca.certPem, now: NOW }), /not a readable/);
    assert.throws(() => verifyNodeCertificate(cert, { ca: 'nope', now: NOW }), (e) => e instanceof ShoalError && e.code === 'invalid_argument');
  });

  it('refuses a certificate the CA signed without a node role in its subject', async () => {
    // Not something signNodeCsr can produce: made directly with the CA key to prove parsing checks the role.
    const caCert = new x509.X509Certificate(ca.certPem);
    const key = await crypto.subtle.importKey('pkcs8', x509.PemConverter.decode(ca.keyPem)[0] ?? new ArrayBuffer(0), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    const leafKeys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const odd = await x509.X509CertificateGenerator.create({
      serialNumber: '01', subject: [{ CN: ['n'] }, { OU: ['admin'] }, { O: ['cluster-a'] }], issuer: caCert.subjectName,
      notBefore: NOW, notAfter: new Date(NOW.getTime() + 60_000), publicKey: leafKeys.publicKey, signingKey: key,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto)],
    }, crypto);
    refused(() => verifyNodeCertificate(odd.toString('pem'), { ca: ca.certPem, now: NOW }), /role "admin" is neither manager nor worker/);
  });
});

describe('renewalDue', () => {
  const id = { notBefore: new Date('2030-01-01T00:00:00Z'), notAfter: new Date('2030-01-11T00:00:00Z') };

  it('is at 50% of the lifetime with random 0 and at 80% with random 1', () => {
    assert.equal(renewalDue(id, () => 0).toISOString(), '2030-01-06T00:00:00.000Z');
    assert.equal(renewalDue(id, () => 1).toISOString(), '2030-01-09T00:00:00.000Z');
  });

  it('always falls inside the 50–80% window, for any lifetime and random value', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 1, max: 2 ** 40 }), fc.double({ min: 0, max: 1, noNaN: true }), (start, life, r) => {
        const due = renewalDue({ notBefore: new Date(start), notAfter: new Date(start + life) }, () => r).getTime();
        assert.ok(due >= start + Math.floor(life * 0.5) && due <= start + life * 0.8, `${due} outside [${start + life * 0.5}, ${start + life * 0.8}]`);
      }),
    );
  });
});
