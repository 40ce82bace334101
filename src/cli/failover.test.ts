// Failover of the CLI client and of the agent between managers, against stand-in managers on 127.0.0.1: real HTTPS
// and WebSocket servers with certificates from a throwaway cluster CA, playing a dead manager (a closed port), a
// follower (503 naming the leader), a leader, and a manager that drops the connection once a request is in.
// (It lives in cli because only cli may import agent, pki and runtime together.)

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logger.js';
import { rawText } from '../lib/ws-text.js';
import { createNodeKeyAndCsr, createRootCa, signNodeCsr, type CaKeyPair } from '../pki/index.js';
import { LEADER_HEADER, MANAGERS_HEADER, SESSION_PATH, type ServiceSpecInput } from '../protocol/index.js';
import { ExecRuntime } from '../runtime/index.js';
import { ApiError, ShoalClient } from './client.js';
import { clientFor, writeContext } from './context.js';

const CLUSTER = 'failover-test';

interface KeyCert {
  key: string;
  cert: string;
}

const issue = async (ca: CaKeyPair, nodeId: string, role: 'manager' | 'worker'): Promise<KeyCert> => {
  const { keyPem, csrPem } = await createNodeKeyAndCsr({ nodeId });
  return { key: keyPem, cert: await signNodeCsr({ ca, csrPem, nodeId, role, clusterId: CLUSTER, now: new Date(), validityMs: 10 * 60_000 }) };
};

/** Rejects when `p` takes longer than `ms`: no wait in these tests is unbounded. */
const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
};

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
};

/** An address nothing listens on (a port just released). */
const deadAddress = async (tls: KeyCert): Promise<string> => {
  const s = createServer(tls);
  const address = await listen(s);
  await new Promise((resolve) => s.close(resolve));
  return address;
};

type Role = 'leader' | 'follower' | 'drops-requests';

/** A stand-in manager. The role can change while it runs (a follower that wins the election). */
class FakeManager {
  role: Role;
  /** What a follower names as the leader (absent: none known). */
  leader: string | undefined;
  /** The managers every answer lists (absent: no header). */
  managers: string[] | undefined;
  readonly requests: string[] = [];
  /** Times (performance.now) at which agents said hello. */
  readonly hellos: number[] = [];
  address = '';
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly server: Server;

  constructor(tls: KeyCert, role: Role) {
    this.role = role;
    this.server = createServer(tls, (req, res) => {
      this.requests.push(`${req.method ?? ''} ${req.url ?? ''}`);
      req.resume();
      req.on('end', () => {
        if (this.role === 'drops-requests') return void req.socket.destroy();
        if (this.role === 'follower') return void res.writeHead(503, this.headers(true)).end(JSON.stringify({ error: { code: 'unavailable', message: 'not the leader' } }));
        res.writeHead(200, { ...this.headers(false), 'content-type': 'application/json' }).end(req.method === 'GET' ? '[]' : '{}');
      });
    });
    this.server.on('upgrade', (req, socket, head) => {
      if (this.role !== 'leader' || req.url !== SESSION_PATH) {
        const headers = Object.entries(this.headers(true)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
        socket.end(`HTTP/1.1 503 Service Unavailable\r\n${headers}content-length: 0\r\nconnection: close\r\n\r\n`);
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data) => {
          const m = JSON.parse(rawText(data)) as { type: string; nodeId?: string };
          if (m.type !== 'hello') return;
          this.hellos.push(performance.now());
          ws.send(JSON.stringify({ type: 'welcome', nodeId: m.nodeId, heartbeatPeriodMs: 60_000, managers: this.managers ?? [], role: 'worker' }));
        });
      });
    });
  }

  async start(): Promise<this> {
    this.address = await listen(this.server);
    return this;
  }

  /** Dies: sessions and connections cut, the port closed. */
  async stop(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
    this.wss.close();
  }

  private headers(notLeader: boolean): Record<string, string> {
    return {
      ...(this.managers ? { [MANAGERS_HEADER]: this.managers.join(',') } : {}),
      ...(notLeader && this.leader ? { [LEADER_HEADER]: this.leader } : {}),
    };
  }
}

describe('failover between managers', () => {
  let ca: CaKeyPair;
  let managerTls: KeyCert;
  let workerTls: KeyCert;
  const running: FakeManager[] = [];
  const manager = async (role: Role): Promise<FakeManager> => {
    const m = await new FakeManager(managerTls, role).start();
    running.push(m);
    return m;
  };

  before(async () => {
    ca = await createRootCa({ clusterId: CLUSTER, now: new Date() });
    managerTls = await issue(ca, 'manager-1', 'manager');
    workerTls = await issue(ca, 'worker-1', 'worker');
  });
  after(async () => {
    await Promise.all(running.map((m) => m.stop().catch(() => undefined)));
  });

  describe('CLI client', () => {
    const spec: ServiceSpecInput = { name: 'web', task: { container: { image: 'busybox' } } };
    const client = (hosts: string[], onManagers?: (hosts: string[]) => void): ShoalClient =>
      new ShoalClient({ hosts, token: 'admin-token', ca: ca.certPem, connectTimeoutMs: 200, ...(onManagers ? { onManagers } : {}) });

    it('reaches the leader past a dead manager and a follower, learns the managers and starts there next time', async () => {
      const dead = await deadAddress(managerTls);
      const [leader, follower] = [await manager('leader'), await manager('follower')];
      follower.leader = leader.address;
      leader.managers = follower.managers = [leader.address, follower.address];
      const learned: string[][] = [];
      const c = client([dead, follower.address], (h) => learned.push(h));
      try {
        assert.deepEqual(await within(c.listServices(), 5000, 'listServices'), []);
        assert.deepEqual(leader.requests, ['GET /v1/services']);
        assert.deepEqual(follower.requests, ['GET /v1/services']);
        assert.deepEqual(c.hosts, [leader.address, follower.address]);
        assert.deepEqual(learned, [[leader.address, follower.address]]);
        await within(c.listNodes(), 5000, 'listNodes');
        assert.equal(follower.requests.length, 1, 'the second request goes straight to the leader');
        assert.equal(learned.length, 1, 'an unchanged list is not reported again');
      } finally {
        c.close();
      }
    });

    it('does not send a write again when the connection broke after it went out, but a read goes on to the next', async () => {
      const [dropper, leader] = [await manager('drops-requests'), await manager('leader')];
      const c = client([dropper.address, leader.address]);
      try {
        await assert.rejects(
          within(c.createService(spec), 5000, 'createService'),
          (e: unknown) => e instanceof ApiError && e.code === 'unavailable' && e.message.includes(dropper.address) && /may or may not have been done/.test(e.message),
        );
        assert.deepEqual(dropper.requests, ['POST /v1/services']);
        assert.deepEqual(leader.requests, [], 'the write was not sent to another manager');
        assert.deepEqual(await within(c.listServices(), 5000, 'listServices'), []);
        assert.deepEqual(leader.requests, ['GET /v1/services']);
      } finally {
        c.close();
      }
    });

    it('sends even a write on to the next manager when the connection never came up (timeout)', async () => {
      // Accepts TCP connections and never answers the TLS handshake, like a wedged machine.
      const sockets: Socket[] = [];
      const silent = createTcpServer((socket) => void sockets.push(socket));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const silentAddress = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const leader = await manager('leader');
      const c = client([silentAddress, leader.address]);
      try {
        const t0 = performance.now();
        assert.deepEqual(await within(c.createService(spec), 5000, 'createService'), {});
        assert.ok(performance.now() - t0 < 1000, 'the connect timeout, not more');
        assert.deepEqual(leader.requests, ['POST /v1/services']);
      } finally {
        c.close();
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => silent.close(resolve));
      }
    });

    it('names every manager it tried when none answers', async () => {
      const [a, b] = [await deadAddress(managerTls), await deadAddress(managerTls)];
      const c = client([a, b]);
      try {
        await assert.rejects(within(c.info(), 5000, 'info'), (e: unknown) => {
          assert.ok(e instanceof ApiError && e.code === 'unavailable');
          assert.match(e.message, new RegExp(`^cannot reach any Shoal manager \\(${a}: ECONNREFUSED, ${b}: ECONNREFUSED\\); is one running\\?`));
          return true;
        });
      } finally {
        c.close();
      }
    });

    it('follows a 503 to the named leader once only', async () => {
      const [x, y] = [await manager('follower'), await manager('follower')];
      x.leader = y.address;
      y.leader = x.address;
      const c = client([x.address]);
      try {
        await assert.rejects(within(c.info(), 5000, 'info'), (e: unknown) => e instanceof ApiError && e.status === 503 && e.code === 'unavailable');
        assert.deepEqual([x.requests.length, y.requests.length], [1, 1]);
      } finally {
        c.close();
      }
    });

    it('records the managers in the context file, unless the hosts came from --host', async () => {
      const leader = await manager('leader');
      const other = await deadAddress(managerTls);
      leader.managers = [leader.address, other];
      const dir = mkdtempSync(join(tmpdir(), 'shoal-failover-'));
      const saved = process.env.SHOAL_CONFIG;
      process.env.SHOAL_CONFIG = join(dir, 'config.json');
      const hostsInFile = (): unknown => (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { hosts: unknown }).hosts;
      try {
        writeContext({ hosts: [leader.address], token: 'admin-token', clusterId: CLUSTER, ca: ca.certPem });
        const flagged = clientFor({ host: leader.address });
        await within(flagged.info(), 5000, 'info with --host').finally(() => flagged.close());
        assert.deepEqual(hostsInFile(), [leader.address]);
        const fromFile = clientFor({});
        await within(fromFile.info(), 5000, 'info from the context').finally(() => fromFile.close());
        assert.deepEqual(hostsInFile(), [leader.address, other]);
      } finally {
        if (saved === undefined) delete process.env.SHOAL_CONFIG;
        else process.env.SHOAL_CONFIG = saved;
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('agent', () => {
    /** Runs an agent on `managers` until `body` is done; stops it and cleans up whatever happens. */
    const withAgent = async (managers: string[], onManagers: (m: string[]) => void, body: (agent: Agent) => Promise<void>): Promise<void> => {
      const dir = mkdtempSync(join(tmpdir(), 'shoal-agent-failover-'));
      const runtime = new ExecRuntime({ dir });
      const ctl = new AbortController();
      const agent = new Agent({ nodeId: 'worker-1', managers, onManagers, tls: { ca: ca.certPem, ...workerTls }, address: '127.0.0.1:0', role: 'worker', runtime, logger: silentLogger });
      const run = agent.run(ctl.signal);
      try {
        await body(agent);
      } finally {
        ctl.abort();
        await within(run, 5000, 'agent stop');
        await runtime.close();
        rmSync(dir, { recursive: true, force: true });
      }
    };

    it('reaches the leader at once past a dead manager and a follower, and reports the managers', async () => {
      const dead = await deadAddress(managerTls);
      const [leader, follower] = [await manager('leader'), await manager('follower')];
      follower.leader = leader.address;
      leader.managers = [leader.address, follower.address];
      const reported: string[][] = [];
      await withAgent([dead, follower.address], (m) => reported.push(m), async (agent) => {
        const t0 = performance.now();
        await within(agent.connected, 5000, 'session');
        assert.ok(performance.now() - t0 < 500, `welcomed after ${(performance.now() - t0).toFixed(0)} ms`);
        assert.equal(leader.hellos.length, 1);
        assert.deepEqual(reported, [[leader.address, follower.address]]);
      });
    });

    it('is welcomed by a new leader within half a second of its winning', async () => {
      const [first, second] = [await manager('leader'), await manager('follower')];
      first.managers = second.managers = [first.address, second.address];
      await withAgent([first.address, second.address], () => undefined, async (agent) => {
        await within(agent.connected, 5000, 'first session');
        // The leader dies; the follower knows no leader for a while (the election), then wins.
        await first.stop();
        await new Promise((resolve) => setTimeout(resolve, 700));
        second.role = 'leader';
        const won = performance.now();
        for (let i = 0; i < 100 && second.hellos.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        const [hello] = second.hellos;
        assert.ok(hello !== undefined, 'the agent never reached the new leader');
        assert.ok(hello - won < 500, `welcomed ${(hello - won).toFixed(0)} ms after the new leader won`);
      });
    });
  });
});
