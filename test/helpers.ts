// Shared support for integration suites: temporary nodes (in-process or as a real CLI daemon), the Docker Engine
// seen directly (to check what really runs), and bounded waiting.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import https from 'node:https';
import Docker from 'dockerode';
import { MANAGER_TLS_NAME } from '../src/protocol/index.js';
import { ShoalClient } from '../src/cli/client.js';
import { silentLogger } from '../src/lib/logger.js';
import { startDaemon, type Daemon } from '../src/manager/daemon.js';
import { initDataDir, readDataDir, readNodeTls, type NodeTls, type RuntimeName } from '../src/manager/data-dir.js';

export const TEST_IMAGE = 'shoal-test/busybox';
export const docker = new Docker({ socketPath: '/var/run/docker.sock' });
export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export const tempDir = (prefix = 'shoal-test-'): string => mkdtempSync(join(tmpdir(), prefix));

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs` saying what it waited for. */
export const eventually = async <T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
};

/** Containers of a node as the Engine sees them (all states). */
export const containersOfNode = async (nodeId: string): Promise<Docker.ContainerInfo[]> =>
  docker.listContainers({ all: true, filters: { label: [`shoal.node.id=${nodeId}`] } });

export const runningContainersOfService = async (serviceId: string): Promise<Docker.ContainerInfo[]> =>
  docker.listContainers({ filters: { label: [`shoal.service.id=${serviceId}`], status: ['running'] } });

/** Removes every container a test node made (by label), whatever state it is in. */
export const removeNodeContainers = async (nodeId: string): Promise<void> => {
  for (const c of await containersOfNode(nodeId)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
};

/**
 * Builds a throwaway image from `dockerfile` (FROM the test image; no registry is reachable) and returns its tag,
 * `shoal-test/<name>:<random>`; remove it with `docker.getImage(tag).remove()`.
 */
export const buildTestImage = (name: string, dockerfile: string): string => {
  const tag = `shoal-test/${name}:${randomBytes(4).toString('hex')}`;
  const built = spawnSync('docker', ['build', '-q', '-t', tag, '-'], { input: dockerfile, encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '0' }, timeout: 60_000 });
  assert.equal(built.status, 0, `docker build failed: ${built.stderr}`);
  return tag;
};

/** Kills the exec-runtime task processes of every node data dir under `dir` (they outlive a stopped daemon, by design). */
export const killExecTasks = (dir: string): void => {
  spawnSync('/bin/sh', ['-c', `for f in ${dir}/*/exec/containers/*/pid; do kill -9 -"$(cut -d' ' -f1 "$f")" 2>/dev/null; done; true`]);
};

/** A free loopback TCP port (for daemons that run as separate processes and need a fixed address). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });

export interface TestNode {
  dataDir: string;
  /** The node's TLS material (cluster CA, node certificate and key). */
  tls: NodeTls;
  nodeId: string;
  daemon: Daemon;
  client: ShoalClient;
  /** Stops the daemon (containers keep running), as `shoal stop` does. */
  stop(): Promise<void>;
  /** Starts the daemon again on the same data dir (agent restart: must adopt its containers). */
  restart(): Promise<void>;
  /** Stops the daemon, removes its containers and its data dir. */
  destroy(): Promise<void>;
}

/** A one-node cluster in this process, on a temp data dir and a free loopback port. */
export const startTestNode = async (opts: { runtime?: RuntimeName } = {}): Promise<TestNode> => {
  const dataDir = tempDir();
  await initDataDir(dataDir, { listenAddr: '127.0.0.1:0', runtime: opts.runtime ?? 'docker' });
  const dd = readDataDir(dataDir);
  if (!dd) throw new Error('initDataDir wrote nothing');
  let daemon = await startDaemon({ dataDir, logger: silentLogger });
  const node: TestNode = {
    dataDir,
    nodeId: dd.config.nodeId,
    get daemon() {
      return daemon;
    },
    tls: readNodeTls(dataDir),
    client: new ShoalClient({ hosts: [daemon.manager.address], token: dd.credentials.adminToken, ca: readNodeTls(dataDir).ca }),
    stop: () => daemon.close(),
    restart: async () => {
      // Same port, so the client keeps working.
      daemon = await startDaemon({ dataDir, logger: silentLogger, listenAddr: daemon.manager.address });
    },
    destroy: async () => {
      node.client.close();
      await daemon.close();
      await removeNodeContainers(dd.config.nodeId);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return node;
};

/** An HTTPS request to a manager trusting its CA, with optional headers, body and client certificate; never throws on status. */
export const httpsRequest = (
  address: string,
  path: string,
  opts: { ca: string; method?: string; headers?: Record<string, string>; body?: string; cert?: string; key?: string },
): Promise<{ status: number; json: unknown }> =>
  new Promise((resolve, reject) => {
    const i = address.lastIndexOf(':');
    const req = https.request(
      { hostname: address.slice(0, i), port: address.slice(i + 1), path, method: opts.method ?? 'GET', ca: opts.ca, servername: MANAGER_TLS_NAME, headers: opts.headers ?? {}, ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = text;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });

/** Runs the real `shoal` CLI with its own context file; returns exit code and output. */
export const shoal = (args: string[], env: Record<string, string>, timeoutMs = 120_000): { code: number; stdout: string; stderr: string } => {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};

/** The CLI run without blocking this process (so the test can watch something while the command runs). */
/** Runs the real `shoal` CLI without blocking the event loop; `input` is written to its stdin (then closed). */
export const shoalAsync = (args: string[], env: Record<string, string>, timeoutMs = 300_000, input = ''): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs });
    child.stdin.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });

/** `run` (any outcome), `ok` (asserts exit 0, returns stdout) and `json` (parses ok's output) for a CLI context. */
export const cliWith = (env: () => Record<string, string>) => {
  const run = (...args: string[]): { code: number; stdout: string; stderr: string } => shoal(args, env());
  const ok = (...args: string[]): string => {
    const r = run(...args);
    assert.equal(r.code, 0, `shoal ${args.join(' ')} failed:\n${r.stderr}`);
    return r.stdout;
  };
  const json = <T>(...args: string[]): T => JSON.parse(ok(...args)) as T;
  return { run, ok, json };
};
