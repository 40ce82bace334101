// Tests of node certificate issuance: the manager's choice of identity, SANs, lifetimes and the CSR checks.

import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { ShoalError } from '../core/index.js';
import { createRootCa, type CaKeyPair } from './ca.js';
import { createNodeKeyAndCsr } from './csr.js';
import { parseNodeCertificate } from './identity.js';
import { signNodeCsr } from './issue.js';
import { crypto } from './keys.js';
import { x509 } from './x509.js';

const NOW = new Date('2030-01-01T00:00:00.250Z');
const MINUTE = 60_000;

const codeOf = (e: unknown): string => (e instanceof ShoalError ? e.code : `not a ShoalError: ${String(e)}`);

describe('signNodeCsr', () => {
  let ca: CaKeyPair;
  before(async () => {
    ca = await createRootCa({ clusterId: 'cluster-a', now: NOW });
  });

  it('names the identity the manager chose, not the one the CSR claims', async () => {
    const { csrPem } = await createNodeKeyAndCsr({ nodeId: 'i-am-a-manager' });
    assert.match(new x509.Pkcs10CertificateRequest(csrPem).subject, /CN=i-am-a-manager/);
    const certPem = await signNodeCsr({ ca, csrPem, nodeId: 'node-1', role: 'worker', clusterId: 'cluster-a', now: NOW, validityMs: 5 * MINUTE });
    const id = parseNodeCertificate(certPem);
    assert.equal(id.nodeId, 'node-1');
    assert.equal(id.role, 'worker');
    assert.equal(id.clusterId, 'cluster-a');
    assert.equal(id.notBefore.toISOString(), '2030-01-01T00:00:00.000Z');
    // Rounded up to the second so the lifetime is never shorter than asked.
    assert.equal(id.notAfter.toISOString(), '2030-01-01T00:05:01.000Z');
    const cert = new X509Certificate(certPem);
    assert.equal(cert.subject, 'CN=node-1\nOU=worker\nO=cluster-a');
    assert.equal(cert.serialNumber.toLowerCase(), id.serial);
    assert.equal(cert.ca, false);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'serverAuth and clientAuth');
    assert.ok(cert.verify(new X509Certificate(ca.certPem).publicKey));
  });

  it('certifies the key of the CSR, which only the node holds', async () => {
    const node = await createNodeKeyAndCsr();
    const certPem = await signNodeCsr({ ca, csrPem: node.csrPem, nodeId: 'n', role: 'manager', clusterId: 'cluster-a', now: NOW });
    assert.ok(new X509Certificate(certPem).checkPrivateKey(createPrivateKey(node.keyPem)));
  });

  it('puts the node ID, the role name and the given hosts in the SAN, IPs as IP entries', async () => {
    const { csrPem } = await createNodeKeyAndCsr();
    const certPem = await signNodeCsr({
      ca, csrPem, nodeId: 'm1', role: 'manager', clusterId: 'cluster-a', now: NOW, hosts: ['127.0.0.2', 'manager.example', '::1'],
    });
    assert.equal(
      new X509Certificate(certPem).subjectAltName,
      'DNS:m1, DNS:shoal-manager, IP Address:127.0.0.2, DNS:manager.example, IP Address:0:0:0:0:0:0:0:1',
    );
  });

  it('defaults to 90 days, allows seconds, and never outlives the CA', async () => {
    const { csrPem } = await createNodeKeyAndCsr();
    const base = { ca, csrPem, nodeId: 'n', role: 'worker', clusterId: 'cluster-a', now: NOW } as const;
    const life = (pem: string): number => {
      const id = parseNodeCertificate(pem);
      return id.notAfter.getTime() - id.notBefore.getTime();
    };
    assert.equal(life(await signNodeCsr(base)), 90 * 24 * 60 * MINUTE + 1000);
    const short = await createRootCa({ clusterId: 'cluster-a', now: NOW, validityDays: 1 });
    assert.equal(life(await signNodeCsr({ ...base, validityMs: 3000 })), 4000);
    const capped = parseNodeCertificate(await signNodeCsr({ ...base, ca: short }));
    assert.equal(capped.notAfter.getTime(), new Date(new X509Certificate(short.certPem).validTo).getTime());
  });

  it('refuses a CSR whose signature does not verify', async () => {
    const { csrPem } = await createNodeKeyAndCsr();
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    const der = new Uint8Array(csr.rawData);
    // Flip a bit of the signature (the last byte of the DER), keeping the structure intact.
    der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0x01;
    const tampered = x509.PemConverter.encode(der.buffer, 'CERTIFICATE REQUEST');
    await assert.rejects(
      signNodeCsr({ ca, csrPem: tampered, nodeId: 'n', role: 'worker', clusterId: 'cluster-a', now: NOW }),
      (e) => codeOf(e) === 'invalid_argument' && /does not verify/.test((e as Error).message),
    );
    await assert.rejects(signNodeCsr({ ca, csrPem: 'garbage', nodeId: 'n', role: 'worker', clusterId: 'cluster-a', now: NOW }), /invalid certificate signing request/);
  });

  it('refuses a CSR for a key other than ECDSA P-256', async () => {
    const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [], keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } }, crypto);
    await assert.rejects(
      signNodeCsr({ ca, csrPem: csr.toString('pem'), nodeId: 'n', role: 'worker', clusterId: 'cluster-a', now: NOW }),
      /must be ECDSA P-256, got ECDSA P-384/,
    );
  });

  it('refuses a cluster other than the CA’s, a CA pair that does not match, a time outside the CA, and bad arguments', async () => {
    const { csrPem } = await createNodeKeyAndCsr();
    const other = await createRootCa({ clusterId: 'cluster-a', now: NOW });
    const base = { ca, csrPem, nodeId: 'n', role: 'worker', clusterId: 'cluster-a', now: NOW } as const;
    await assert.rejects(signNodeCsr({ ...base, clusterId: 'cluster-b' }), (e) => codeOf(e) === 'failed_precondition' && /cluster "cluster-a"/.test((e as Error).message));
    await assert.rejects(signNodeCsr({ ...base, ca: { certPem: ca.certPem, keyPem: other.keyPem } }), /CA key does not belong/);
    await assert.rejects(signNodeCsr({ ...base, now: new Date('2020-01-01T00:00:00Z') }), (e) => codeOf(e) === 'failed_precondition');
    await assert.rejects(signNodeCsr({ ...base, role: 'admin' as 'worker' }), /role/);
    await assert.rejects(signNodeCsr({ ...base, nodeId: 'CN=x' }), /nodeId/);
    await assert.rejects(signNodeCsr({ ...base, validityMs: -1 }), /validityMs/);
    await assert.rejects(signNodeCsr({ ...base, hosts: [''] }), /hosts/);
  });
});
