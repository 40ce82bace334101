// Test harness: real etcd clusters (the Debian etcd-server binary, 1 or 3 members) on loopback ports in a temp dir,
// optionally with TLS (a throwaway CA, server and client certificates made with openssl), for the etcd store suites
// and the manager HA suites. Members can be SIGKILLed and restarted on their data dirs; close() removes everything.
// A TCP proxy in front of a member can cut, heal and reset one client's connections, to play network failures.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePort, tempDir } from './helpers.js';

const ETCD = '/usr/bin/etcd';
/** How long a member may take to report healthy after it was started. */
const HEALTHY_WITHIN_MS = 15_000;
/** How long a signalled member may take to exit. */
const EXIT_WITHIN_MS = 5_000;

export interface EtcdTlsFiles {
  /** PEM of the CA that signed the server and client certificates. */
  ca: string;
  /** PEM of a client certificate the members accept (they require one). */
  cert: string;
  key: string;
}

export interface EtcdMember {
  name: string;
  /** http(s)://127.0.0.1:port */
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  /** The running process id, or undefined while the member is stopped. */
  pid(): number | undefined;
  /** Sends `signal` (default SIGKILL) and waits for the process to exit; SIGSTOP and SIGCONT are only sent. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the member again on its data dir and waits until it reports healthy. */
  start(): Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Client URLs of all members, http(s)://127.0.0.1:port. */
  endpoints: string[];
  /** The same as a Shoal store URL: etcd://127.0.0.1:p1,127.0.0.1:p2 (etcds:// with TLS). */
  url: string;
  tls?: EtcdTlsFiles;
  /** Kills every member and removes the temp dir. */
  close(): Promise<void>;
}

/** Extra members than 1 or 3 are not needed: 3 is the smallest cluster that survives the loss of one. */
export const startEtcd = async (opts: { members?: 1 | 3; tls?: boolean } = {}): Promise<EtcdCluster> => {
  // A port picked free may be taken again before etcd binds it: start over with new ports a few times.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startCluster(opts.members ?? 1, opts.tls ?? false);
    } catch (e) {
      if (attempt >= 3 || !(e instanceof PortTakenError)) throw e;
    }
  }
};

class PortTakenError extends Error {}

const startCluster = async (size: number, tls: boolean): Promise<EtcdCluster> => {
  const root = tempDir('shoal-etcd-');
  const scheme = tls ? 'https' : 'http';
  const token = `shoal-test-${process.pid}-${Date.now()}`;
  const files = tls ? makeCertificates(join(root, 'tls')) : undefined;
  const specs: { name: string; clientUrl: string; peerUrl: string; dataDir: string }[] = [];
  for (let i = 0; i < size; i++) {
    const name = `m${i}`;
    specs.push({
      name,
      clientUrl: `${scheme}://127.0.0.1:${await freePort()}`,
      // Peers talk plain http: only the client side is under test.
      peerUrl: `http://127.0.0.1:${await freePort()}`,
      dataDir: join(root, name),
    });
  }
  const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(',');
  const members = specs.map((s) =>
    makeMember(s, root, [
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${token}`,
      ...(files ? tlsArgs(join(root, 'tls')) : []),
    ], files),
  );
  const cluster: EtcdCluster = {
    members: members.map((m) => m.member),
    endpoints: specs.map((s) => s.clientUrl),
    url: `${tls ? 'etcds' : 'etcd'}://${specs.map((s) => new URL(s.clientUrl).host).join(',')}`,
    ...(files ? { tls: files } : {}),
    close: async () => {
      process.off('exit', killAll);
      await Promise.all(members.map((m) => m.member.kill('SIGKILL')));
      rmSync(root, { recursive: true, force: true });
    },
  };
  // A test that dies without close() must not leave etcd processes behind.
  const killAll = (): void => members.forEach((m) => m.killNow());
  process.on('exit', killAll);
  try {
    // Members of a new cluster wait for each other before any is healthy: spawn all, then wait for each.
    members.forEach((m) => m.spawnProcess());
    await Promise.all(members.map((m) => m.waitHealthy()));
    return cluster;
  } catch (e) {
    await cluster.close();
    throw e;
  }
};

interface MemberHandle {
  member: EtcdMember;
  spawnProcess(): void;
  waitHealthy(): Promise<void>;
  /** Synchronous SIGKILL, for the process 'exit' hook. */
  killNow(): void;
}

const makeMember = (
  spec: { name: string; clientUrl: string; peerUrl: string; dataDir: string },
  root: string,
  clusterArgs: string[],
  tls: EtcdTlsFiles | undefined,
): MemberHandle => {
  const logPath = join(root, `${spec.name}.log`);
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const args = [
    `--name=${spec.name}`,
    `--data-dir=${spec.dataDir}`,
    `--listen-client-urls=${spec.clientUrl}`,
    `--advertise-client-urls=${spec.clientUrl}`,
    `--listen-peer-urls=${spec.peerUrl}`,
    `--initial-advertise-peer-urls=${spec.peerUrl}`,
    // Fast elections keep failover tests short; loopback latency is far below these.
    '--heartbeat-interval=100',
    '--election-timeout=1000',
    '--snapshot-count=10000',
    '--logger=zap',
    '--log-outputs=stderr',
    ...clusterArgs,
  ];

  const spawnProcess = (): void => {
    const log = openSync(logPath, 'a');
    try {
      const c = spawn(ETCD, args, { stdio: ['ignore', log, log] });
      child = c;
      exited = new Promise((resolve) => {
        c.once('exit', () => {
          if (child === c) child = undefined;
          resolve();
        });
      });
    } finally {
      closeSync(log);
    }
  };

  const logTail = (): string => {
    try {
      return readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no log)';
    }
  };

  const waitHealthy = async (): Promise<void> => {
    const deadline = Date.now() + HEALTHY_WITHIN_MS;
    let last = '';
    while (Date.now() < deadline) {
      if (child === undefined) {
        const tail = logTail();
        if (tail.includes('address already in use')) throw new PortTakenError(tail);
        throw new Error(`etcd member ${spec.name} exited while starting; log tail:\n${tail}`);
      }
      last = await health(spec.clientUrl, tls).catch((e: Error) => e.message);
      if (last === 'true') return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd member ${spec.name} not healthy within ${HEALTHY_WITHIN_MS} ms (last: ${last}); log tail:\n${logTail()}`);
  };

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const c = child;
    if (c === undefined) return;
    c.kill(signal);
    // A stopped member hangs (as a partitioned one would) rather than exits.
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`etcd member ${spec.name} did not exit on ${signal} within ${EXIT_WITHIN_MS} ms`)), EXIT_WITHIN_MS);
    });
    try {
      await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  const member: EtcdMember = {
    ...spec,
    pid: () => child?.pid,
    kill,
    start: async () => {
      if (child !== undefined) throw new Error(`etcd member ${spec.name} is already running`);
      spawnProcess();
      await waitHealthy();
    },
  };
  return { member, spawnProcess, waitHealthy, killNow: () => void child?.kill('SIGKILL') };
};

/** The member's own view of its health (GET /health): 'true' once it is part of a cluster with a leader. */
const health = (clientUrl: string, tls: EtcdTlsFiles | undefined): Promise<string> =>
  new Promise((resolve, reject) => {
    const url = new URL('/health', clientUrl);
    const done = (res: IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(String((JSON.parse(body) as { health?: unknown }).health));
        } catch {
          resolve(body);
        }
      });
    };
    const req = tls ? httpsRequest(url, { ca: tls.ca, cert: tls.cert, key: tls.key, timeout: 1_000 }, done) : httpRequest(url, { timeout: 1_000 }, done);
    req.on('timeout', () => req.destroy(new Error('health check timed out')));
    req.on('error', reject);
    req.end();
  });

const tlsArgs = (dir: string): string[] => [
  `--cert-file=${join(dir, 'server.crt')}`,
  `--key-file=${join(dir, 'server.key')}`,
  `--trusted-ca-file=${join(dir, 'ca.crt')}`,
  '--client-cert-auth',
];

const openssl = (cwd: string, ...args: string[]): void => {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0] ?? ''} failed: ${r.stderr || String(r.error)}`);
};

/** A CA (ECDSA P-256) and, signed by it, a server certificate for 127.0.0.1 and a client certificate. */
const makeCertificates = (dir: string): EtcdTlsFiles => {
  mkdirSync(dir, { recursive: true });
  openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
  openssl(dir, 'req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=shoal-test-etcd-ca', '-days', '2', '-out', 'ca.crt',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const issue = (name: string, usage: string): void => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=${usage}\nkeyUsage=critical,digitalSignature\n`);
    openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    openssl(dir, 'req', '-new', '-key', `${name}.key`, '-subj', `/CN=shoal-test-etcd-${name}`, '-out', `${name}.csr`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
      '-extfile', `${name}.ext`, '-out', `${name}.crt`);
  };
  issue('server', 'serverAuth,clientAuth');
  issue('client', 'clientAuth');
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return { ca: read('ca.crt'), cert: read('client.crt'), key: read('client.key') };
};

export interface PartitionProxy {
  /** http://127.0.0.1:port, forwarding to the target member. */
  endpoint: string;
  /** Holds all traffic both ways (connections stay open, bytes wait), as a partition does. */
  cut(): void;
  /** Delivers what was held and forwards again. */
  heal(): void;
  /** Drops every open connection (new ones are forwarded), as a crashed middlebox or a member restart does. */
  reset(): void;
  close(): Promise<void>;
}

/** A TCP proxy to `target` (http://host:port) that can be cut, healed and reset. */
export const startProxy = async (target: string): Promise<PartitionProxy> => {
  const { hostname, port } = new URL(target);
  let cut = false;
  const held: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const forward = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => (cut ? held.push(() => to.write(chunk)) : to.write(chunk)));
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    cut: () => void (cut = true),
    heal: () => {
      cut = false;
      for (const deliver of held.splice(0)) deliver();
    },
    reset: () => sockets.forEach((s) => s.destroy()),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
