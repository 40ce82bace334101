// Proves node:tls accepts the certificates pki issues: a real mutual-TLS handshake on 127.0.0.1.

import assert from 'node:assert/strict';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { createRootCa, type CaKeyPair } from './ca.js';
import { createNodeKeyAndCsr } from './csr.js';
import { parseNodeCertificate, verifyNodeCertificate } from './identity.js';
import { roleServerName, signNodeCsr } from './issue.js';

const CLUSTER = 'cluster-tls';

interface Credentials {
  key: string;
  cert: string;
}

/** A key and certificate for `nodeId` issued by `ca`. Real time: OpenSSL checks validity against the system clock. */
const issue = async (ca: CaKeyPair, who: { nodeId: string; role: 'manager' | 'worker'; hosts?: string[] }): Promise<Credentials> => {
  const { nodeId, role, hosts } = who;
  const { keyPem, csrPem } = await createNodeKeyAndCsr({ nodeId });
  const cert = await signNodeCsr({ ca, csrPem, nodeId, role, clusterId: CLUSTER, now: new Date(), validityMs: 10 * 60_000, hosts: hosts ?? [] });
  return { key: keyPem, cert };
};

interface Outcome {
  /** What the server wrote back; only a server that accepted the client writes anything. */
  reply: string;
  error?: string;
  /** The server's certificate (DER) once the client has verified it. */
  peer?: Buffer;
}

/** Connects, sends a line and collects the reply until the connection ends; never waits more than 5 s. */
const attempt = (port: number, opts: tls.ConnectionOptions): Promise<Outcome> =>
  new Promise((resolve) => {
    const out: Outcome = { reply: '' };
    const socket = tls.connect({ host: '127.0.0.1', port, ...opts });
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), 5000);
    socket.setEncoding('utf8');
    socket.on('secureConnect', () => {
      out.peer = socket.getPeerCertificate().raw;
      socket.write('hello\n');
    });
    socket.on('data', (d: string) => (out.reply += d));
    socket.on('error', (e: Error) => (out.error ??= e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });

/** Starts a TLS server on 127.0.0.1 with an ephemeral port. */
const listen = async (server: tls.Server): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
};

/** TCP connections per server, tracked from the `connection` event so `close` can cut them. */
const open = new WeakMap<tls.Server, Set<Socket>>();

const track = (server: tls.Server): tls.Server => {
  const sockets = new Set<Socket>();
  open.set(server, sockets);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return server;
};

/** Stops a server, cutting any connection still open so teardown never waits on a peer. */
const close = async (server: tls.Server): Promise<void> => {
  const closed = new Promise((resolve) => server.close(resolve));
  for (const s of open.get(server) ?? []) s.destroy();
  await closed;
};

/** Replies `text` to a client and reads its input, so the client's end of stream reaches us and the socket closes. */
const reply = (socket: tls.TLSSocket, text: string): void => {
  socket.resume();
  socket.end(text);
};

describe('mutual TLS with pki certificates', () => {
  let ca: CaKeyPair;
  let otherCa: CaKeyPair;
  let manager: Credentials;
  let worker: Credentials;
  let server: tls.Server;
  let port: number;
  /** Errors of handshakes the server refused. */
  const refusals: string[] = [];

  before(async () => {
    ca = await createRootCa({ clusterId: CLUSTER, now: new Date(Date.now() - 60_000) });
    otherCa = await createRootCa({ clusterId: CLUSTER, now: new Date(Date.now() - 60_000) });
    manager = await issue(ca, { nodeId: 'manager-1', role: 'manager', hosts: ['127.0.0.1'] });
    worker = await issue(ca, { nodeId: 'worker-1', role: 'worker' });
    server = track(tls.createServer({ ...manager, ca: [ca.certPem], requestCert: true, rejectUnauthorized: true }, (socket) => {
      // What a manager does with a peer: read the identity of the verified certificate.
      const id = parseNodeCertificate(socket.getPeerCertificate().raw);
      reply(socket, `welcome ${id.role} ${id.nodeId} (${socket.getProtocol() ?? '?'})\n`);
    }));
    server.on('tlsClientError', (e) => refusals.push(e.message));
    port = await listen(server);
  });

  after(async () => {
    await close(server);
  });

  it('accepts a worker certificate signed by the CA, and the worker accepts the manager by role name', async () => {
    const out = await attempt(port, { ...worker, ca: [ca.certPem], servername: roleServerName('manager') });
    assert.equal(out.error, undefined);
    assert.match(out.reply, /^welcome worker worker-1 \(TLSv1\.[23]\)\n$/);
  });

  it('lets a client check the manager by its IP SAN too, and verify the peer identity afterwards', async () => {
    // No servername: node checks the dialled address, 127.0.0.1, against the certificate's IP SANs.
    const out = await attempt(port, { ...worker, ca: [ca.certPem] });
    assert.equal(out.error, undefined);
    assert.match(out.reply, /^welcome worker worker-1 /, 'the server accepted the worker too');
    assert.ok(out.peer);
    const id = verifyNodeCertificate(out.peer, { ca: ca.certPem, now: new Date() });
    assert.deepEqual([id.nodeId, id.role, id.clusterId], ['manager-1', 'manager', CLUSTER]);
  });

  it('refuses a worker certificate signed by another CA', async () => {
    const before = refusals.length;
    const impostor = await issue(otherCa, { nodeId: 'worker-1', role: 'worker' });
    const out = await attempt(port, { ...impostor, ca: [ca.certPem], servername: roleServerName('manager') });
    assert.equal(out.reply, '', 'the server handler never ran');
    // Node drops the connection without saying why (the client sees a bare close under TLS 1.3).
    assert.equal(refusals.length, before + 1);
    // So ask the TLS stack directly why: a server that only observes reports the verification error.
    const observer = track(tls.createServer({ ...manager, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false }, (s) =>
      reply(s, `${String(s.authorized)} ${String(s.authorizationError)}\n`)));
    try {
      const seen = await attempt(await listen(observer), { ...impostor, ca: [ca.certPem], servername: roleServerName('manager') });
      assert.equal(seen.reply, 'false UNABLE_TO_VERIFY_LEAF_SIGNATURE\n');
      const good = await attempt((observer.address() as AddressInfo).port, { ...worker, ca: [ca.certPem], servername: roleServerName('manager') });
      assert.equal(good.reply, 'true null\n');
    } finally {
      await close(observer);
    }
  });

  it('refuses a client with no certificate', async () => {
    const before = refusals.length;
    const out = await attempt(port, { ca: [ca.certPem], servername: roleServerName('manager') });
    assert.equal(out.reply, '');
    assert.ok(out.error);
    assert.equal(refusals.length, before + 1);
    assert.match(refusals.at(-1) ?? '', /peer did not return a certificate|certificate required/i);
  });

  it('lets a node refuse a server whose certificate another CA signed (a manager impersonator)', async () => {
    const fake = await issue(otherCa, { nodeId: 'manager-1', role: 'manager', hosts: ['127.0.0.1'] });
    const impostor = track(tls.createServer({ ...fake, ca: [otherCa.certPem], requestCert: true, rejectUnauthorized: true }, (s) => reply(s, 'hi\n')));
    const impostorPort = await listen(impostor);
    try {
      const out = await attempt(impostorPort, { ...worker, ca: [ca.certPem], servername: roleServerName('manager') });
      assert.equal(out.reply, '');
      assert.match(out.error ?? '', /unable to verify|self.signed|certificate/i);
    } finally {
      await close(impostor);
    }
  });

  it('lets a node refuse a worker posing as a manager, by the role name in the SAN', async () => {
    const posing = track(tls.createServer({ ...worker, ca: [ca.certPem], requestCert: true, rejectUnauthorized: true }, (s) => reply(s, 'hi\n')));
    const posingPort = await listen(posing);
    try {
      const out = await attempt(posingPort, { ...worker, ca: [ca.certPem], servername: roleServerName('manager') });
      assert.equal(out.reply, '');
      assert.match(out.error ?? '', /Hostname\/IP does not match certificate's altnames/);
    } finally {
      await close(posing);
    }
  });
});
