// Joining a cluster: check the manager's CA against the token before trusting it, then trade the token for a certificate.

import { request } from 'node:https';
import { ShoalError } from '../core/index.js';
import { caDigest, createNodeKeyAndCsr, parseJoinToken } from '../pki/index.js';
import { API_PREFIX, MANAGER_TLS_NAME, type ErrorBody, type JoinResponse } from '../protocol/index.js';

const call = (addr: string, path: string, opts: { ca?: string; body?: unknown }): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const i = addr.lastIndexOf(':');
    const text = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = request(
      {
        hostname: addr.slice(0, i).replace(/^\[|\]$/g, ''),
        port: addr.slice(i + 1),
        path: API_PREFIX + path,
        method: text === undefined ? 'GET' : 'POST',
        servername: MANAGER_TLS_NAME,
        // Before the CA is known, the connection is not trusted: only the CA's digest (pinned by the token) is.
        ...(opts.ca ? { ca: opts.ca } : { rejectUnauthorized: false }),
        headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
        timeout: 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            body = undefined;
          }
          if ((res.statusCode ?? 0) >= 300) {
            const err = (body as ErrorBody | undefined)?.error;
            reject(new ShoalError(err?.code === 'unauthenticated' ? 'unauthenticated' : 'failed_precondition', `the manager refused to let this node join: ${err?.message ?? `HTTP ${res.statusCode}`}`));
          } else resolve(body);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => reject(new ShoalError('unavailable', `cannot reach the manager at ${addr}: ${e.message}`)));
    req.end(text);
  });

export interface Joined extends JoinResponse {
  /** PEM of the private key made here; it never left this machine. */
  key: string;
}

/** Joins the cluster of the manager at `addr` with `tokenText`; refuses a manager whose CA the token does not pin. */
export const joinCluster = async (addr: string, tokenText: string): Promise<Joined> => {
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
  const joined = (await call(addr, '/join', { ca, body: { token: tokenText, csr: csrPem } })) as JoinResponse;
  return { ...joined, key: keyPem };
};
