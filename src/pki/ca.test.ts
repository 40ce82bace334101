// Tests of the cluster root CA: what the certificate says about itself and how its digest is computed.

import assert from 'node:assert/strict';
import { X509Certificate, createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { describe, it } from 'node:test';
import { ShoalError } from '../core/index.js';
import { CA_COMMON_NAME, caDigest, createRootCa } from './ca.js';

const NOW = new Date('2030-03-04T05:06:07.890Z');
const YEAR_MS = 365 * 24 * 3600 * 1000;

describe('createRootCa', () => {
  it('makes a self-signed ECDSA P-256 CA for the cluster, valid 20 years from now by default', async () => {
    const ca = await createRootCa({ clusterId: 'cluster-a', now: NOW });
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, `CN=${CA_COMMON_NAME}\nO=cluster-a`);
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), 'self-signed: its own key verifies it');
    assert.ok(cert.checkIssued(cert), 'OpenSSL accepts it as its own issuer, which needs keyCertSign');
    assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    // Times are whole seconds: notBefore is `now` rounded down.
    assert.equal(new Date(cert.validFrom).toISOString(), '2030-03-04T05:06:07.000Z');
    const years = (new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()) / YEAR_MS;
    assert.equal(years, 20);
    // The key is the certificate's key, as PKCS#8.
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const spki = createPublicKey(createPrivateKey(ca.keyPem)).export({ type: 'spki', format: 'der' });
    assert.ok(spki.equals(cert.publicKey.export({ type: 'spki', format: 'der' })));
  });

  it('honours validityDays and makes a different key and serial every time', async () => {
    const a = await createRootCa({ clusterId: 'c', now: NOW, validityDays: 2 });
    const b = await createRootCa({ clusterId: 'c', now: NOW, validityDays: 2 });
    const ca = new X509Certificate(a.certPem);
    assert.equal(new Date(ca.validTo).getTime() - new Date(ca.validFrom).getTime(), 2 * 24 * 3600 * 1000);
    assert.notEqual(ca.serialNumber, new X509Certificate(b.certPem).serialNumber);
    assert.notEqual(a.keyPem, b.keyPem);
  });

  it('rejects a cluster ID that cannot go into a subject, and bad validity or time', async () => {
    const code = (e: unknown): string => (e instanceof ShoalError ? e.code : 'not a ShoalError');
    await assert.rejects(createRootCa({ clusterId: 'a,O=evil', now: NOW }), (e) => code(e) === 'invalid_argument');
    await assert.rejects(createRootCa({ clusterId: '', now: NOW }), /clusterId/);
    await assert.rejects(createRootCa({ clusterId: 'c', now: NOW, validityDays: 0 }), /validityDays/);
    await assert.rejects(createRootCa({ clusterId: 'c', now: new Date(Number.NaN) }), /now/);
  });
});

describe('caDigest', () => {
  it('is the lowercase hex SHA-256 of the DER, stable for a certificate and distinct between CAs', async () => {
    const a = await createRootCa({ clusterId: 'c', now: NOW });
    const b = await createRootCa({ clusterId: 'c', now: NOW });
    const der = Buffer.from(a.certPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const digest = caDigest(a.certPem);
    assert.equal(digest, createHash('sha256').update(der).digest('hex'));
    assert.match(digest, /^[0-9a-f]{64}$/);
    // OpenSSL's own fingerprint agrees.
    assert.equal(digest, new X509Certificate(a.certPem).fingerprint256.replaceAll(':', '').toLowerCase());
    // Stable across line-ending differences in the PEM and repeated calls.
    assert.equal(caDigest(a.certPem.replaceAll('\n', '\r\n')), digest);
    assert.notEqual(caDigest(b.certPem), digest);
  });

  it('rejects text that is not a certificate', () => {
    assert.throws(() => caDigest('not a certificate'), (e) => e instanceof ShoalError && e.code === 'invalid_argument');
  });
});
