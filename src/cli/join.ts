// Joining a cluster: check the manager's CA against the token before trusting it, then trade the token for a certificate.

import { ShoalError } from '../core/index.js';
import { httpsJson } from '../lib/https-json.js';
import { caDigest, createNodeKeyAndCsr, parseJoinToken } from '../pki/index.js';
import { API_PREFIX, MANAGER_TLS_NAME, type ErrorBody, type JoinResponse } from '../protocol/index.js';

/** A call to the manager; before the CA is known (no `ca`), the server is not trusted: only the CA's digest is. */
const call = async (addr: string, path: string, opts: { ca?: string; body?: unknown }): Promise<unknown> => {
  let r: { status: number; body: unknown };
  try {
    r = await httpsJson(addr, API_PREFIX + path, { servername: MANAGER_TLS_NAME, ...opts });
  } catch (e) {
    throw new ShoalError('unavailable', `cannot reach the manager at ${addr}: ${(e as Error).message}`);
  }
  if (r.status >= 300) {
    const err = (r.body as ErrorBody | undefined)?.error;
    throw new ShoalError(err?.code === 'unauthenticated' ? 'unauthenticated' : 'failed_precondition', `the manager refused to let this node join: ${err?.message ?? `HTTP ${r.status}`}`);
  }
  return r.body;
};

export interface Joined extends JoinResponse {
  /** PEM of the private key made here; it never left this machine. */
  key: string;
}

/**
 * Joins the cluster of the manager at `addr` with `tokenText`; refuses a manager whose CA the token does not pin.
 * `asManager` is what the node would be as a manager (used only if the token is a manager token).
 */
export const joinCluster = async (addr: string, tokenText: string, asManager: { adminTokenDigest: string; address: string }): Promise<Joined> => {
  const token = parseJoinToken(tokenText);
  const { ca } = (await call(addr, '/ca', {})) as { ca: string };
  const presented = caDigest(ca);
  if (presented !== token.caDigest) {
    throw new ShoalError(
      'unauthenticated',
      `refusing to join: the manager at ${addr} presents a CA with digest ${presented}, but the token pins ${token.caDigest} (wrong address, or an impersonator)`,
    );
  }
  const { keyPem, csrPem } = await createNodeKeyAndCsr();
  const joined = (await call(addr, '/join', { ca, body: { token: tokenText, csr: csrPem, manager: asManager } })) as JoinResponse;
  return { ...joined, key: keyPem };
};
