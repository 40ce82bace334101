// Node certificate renewal: each node renews its certificate at a random point at 50–80% of its lifetime (so
// nodes that joined together do not renew together), then uses the new one for every new connection.

import { readFileSync } from 'node:fs';
import { sleep } from '../lib/abort.js';
import { httpsJson } from '../lib/https-json.js';
import type { Logger } from '../lib/logger.js';
import { createNodeKeyAndCsr, parseNodeCertificate, renewalDue } from '../pki/index.js';
import { API_PREFIX, MANAGER_TLS_NAME, type RenewRequest, type RenewResponse } from '../protocol/index.js';
import { dataPaths, writeFileAtomic, type NodeTls } from './data-dir.js';

export interface RenewerOptions {
  dataDir: string;
  logger: Logger;
  /** Trades a CSR for a certificate with the same identity. */
  renew: (csrPem: string) => Promise<string>;
  /** Called with the new material once it is on disk. */
  onRenewed: (tls: NodeTls) => void;
}

/** Longest single timer (setTimeout's limit is 2^31-1 ms): long waits are taken in steps. */
const MAX_WAIT_MS = 24 * 3600 * 1000;
const RETRY_MS = 5000;

/** Renews this node's certificate whenever it is due, until the signal aborts. */
export const runRenewer = async (opts: RenewerOptions, signal: AbortSignal): Promise<void> => {
  const p = dataPaths(opts.dataDir);
  while (!signal.aborted) {
    const identity = parseNodeCertificate(readFileSync(p.cert, 'utf8'));
    const due = renewalDue(identity, Math.random).getTime();
    try {
      while (Date.now() < due) await sleep(Math.min(MAX_WAIT_MS, due - Date.now()), signal);
      const { keyPem, csrPem } = await createNodeKeyAndCsr({ nodeId: identity.nodeId });
      const cert = await opts.renew(csrPem);
      // Key first, then certificate: a crash between the two leaves the old pair's certificate with the new key
      // unreadable as a pair, so write both before anyone reads them (the daemon reads them only at start).
      writeFileAtomic(p.key, keyPem, 0o600);
      writeFileAtomic(p.cert, cert, 0o644);
      const tls: NodeTls = { ca: readFileSync(p.ca, 'utf8'), cert, key: keyPem };
      opts.logger.info('node certificate renewed', { notAfter: parseNodeCertificate(cert).notAfter.toISOString() });
      opts.onRenewed(tls);
    } catch (e) {
      if (signal.aborted) return;
      opts.logger.warn('certificate renewal failed; retrying', { error: e instanceof Error ? e.message : String(e) });
      await sleep(RETRY_MS, signal).catch(() => undefined);
    }
  }
};

/**
 * Asks the managers, in order, for a certificate for `csrPem` in the node's current role, authenticated by the node's
 * current certificate (mutual TLS). A promoted worker also sends `manager` (its admin token digest and address).
 */
export const renewThroughManagers = async (managers: string[], tls: NodeTls, body: RenewRequest): Promise<RenewResponse> => {
  const { ca, cert, key } = tls;
  const failures: string[] = [];
  for (const addr of managers) {
    let r: { status: number; body: unknown };
    try {
      r = await httpsJson(addr, `${API_PREFIX}/renew`, { servername: MANAGER_TLS_NAME, ca, cert, key, body, timeoutMs: 5000 });
    } catch (e) {
      failures.push(`${addr}: ${(e as Error).message}`);
      continue;
    }
    if (r.status !== 200) throw new Error(`the manager at ${addr} refused to renew (HTTP ${r.status}): ${JSON.stringify(r.body).slice(0, 300)}`);
    return r.body as RenewResponse;
  }
  throw new Error(`no manager answered the renewal (${failures.join('; ') || 'no manager known'})`);
};

/** A worker renews through the managers it knows. */
export const renewThroughManager =
  (managers: () => string[], tls: () => NodeTls) =>
  async (csrPem: string): Promise<string> =>
    (await renewThroughManagers(managers(), tls(), { csr: csrPem })).cert;
