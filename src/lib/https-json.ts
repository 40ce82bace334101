// One JSON request over HTTPS to HOST:PORT, with the TLS options a Shoal node needs (pinned CA, client certificate).

import { request } from 'node:https';

export interface HttpsJsonOptions {
  method?: 'GET' | 'POST';
  body?: unknown;
  /** Trusted CA (PEM). Without it the server is not verified at all: only for fetching a CA to check by digest. */
  ca?: string;
  /** Client certificate and key (PEM), for mutual TLS. */
  cert?: string;
  key?: string;
  /** Name the server certificate must carry. */
  servername: string;
  timeoutMs?: number;
}

/** Sends the request and resolves with the status and the parsed body (undefined when not JSON); rejects on network errors. */
export const httpsJson = (address: string, path: string, opts: HttpsJsonOptions): Promise<{ status: number; body: unknown }> =>
  new Promise((resolve, reject) => {
    const i = address.lastIndexOf(':');
    const text = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = request(
      {
        hostname: address.slice(0, i).replace(/^\[|\]$/g, ''),
        port: address.slice(i + 1),
        path,
        method: opts.method ?? (text === undefined ? 'GET' : 'POST'),
        servername: opts.servername,
        agent: false,
        ...(opts.ca ? { ca: opts.ca } : { rejectUnauthorized: false }),
        ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}),
        headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
        timeout: opts.timeoutMs ?? 15_000,
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
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timed out after ${opts.timeoutMs ?? 15_000}ms`)));
    req.on('error', reject);
    req.end(text);
  });
