// The joining node's side of issuance: a fresh key that never leaves the node, and a CSR proving possession of it.

import { SIGNING_ALGORITHM, checkId, crypto, generateKeyPair, privateKeyPem } from './keys.js';
import { x509 } from './x509.js';

export interface NodeKeyAndCsr {
  /** PKCS#8 PEM private key; stays in the node's data dir. */
  keyPem: string;
  /** PKCS#10 PEM request; its subject is only a hint, the manager decides the identity. */
  csrPem: string;
}

/** A new ECDSA P-256 key and a CSR signed with it; `nodeId`, when known (a renewal), goes in the CN as a hint. */
export const createNodeKeyAndCsr = async (opts: { nodeId?: string } = {}): Promise<NodeKeyAndCsr> => {
  if (opts.nodeId !== undefined) checkId('nodeId', opts.nodeId);
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: opts.nodeId === undefined ? [] : [{ CN: [opts.nodeId] }],
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
    },
    crypto,
  );
  return { keyPem: await privateKeyPem(keys.privateKey), csrPem: csr.toString('pem') };
};
