// The pki layer's public surface: the cluster CA, node keys and CSRs, certificate issuance and verification, join tokens.
export { CA_COMMON_NAME, DEFAULT_CA_VALIDITY_DAYS, caDigest, createRootCa, type CaKeyPair, type CreateRootCaOptions } from './ca.js';
export { createNodeKeyAndCsr, type NodeKeyAndCsr } from './csr.js';
export { DEFAULT_NODE_CERT_VALIDITY_MS, NODE_ROLES, roleServerName, signNodeCsr, type SignNodeCsrOptions } from './issue.js';
export {
  parseNodeCertificate,
  renewalDue,
  verifyNodeCertificate,
  type CertificateInput,
  type NodeIdentity,
  type VerifyNodeCertificateOptions,
} from './identity.js';
export { formatJoinToken, newJoinSecret, parseJoinToken, type JoinToken } from './token.js';
