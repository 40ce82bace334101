// Two nodes, each its own process and data dir on loopback, sharing one Docker Engine: joining with tokens,
// refusals (wrong token, a CA the token does not pin, worker certificates on the user API), spreading, failover
// when a worker is SIGKILLed, and a worker that comes back without excess replicas.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TEST_IMAGE, containersOfNode, eventually, freePort, httpsRequest, removeNodeContainers, cliWith, tempDir } from './helpers.js';

describe('a cluster of a manager and a worker', () => {
  let dir: string;
  let env: Record<string, string>;
  let managerAddr = '';
  const ids = { manager: '', worker: '', short: '' };
  const { run, ok, json } = cliWith(() => env);
  const nodeId = (d: string): string => (JSON.parse(readFileSync(join(dir, d, 'node.json'), 'utf8')) as { nodeId: string }).nodeId;
  const running = async (node: string, service: string): Promise<number> =>
    (await containersOfNode(node)).filter((c) => c.State === 'running' && c.Labels['shoal.service.name'] === service).length;

  before(async () => {
    dir = tempDir('shoal-cluster-');
    env = { SHOAL_CONFIG: join(dir, 'config.json') };
    managerAddr = `127.0.0.1:${await freePort()}`;
    ok('init', '--detach', '--data-dir', join(dir, 'manager'), '--listen-addr', managerAddr);
    ids.manager = nodeId('manager');
  });

  after(async () => {
    if (!dir) return;
    run('stop', '--data-dir', join(dir, 'worker'));
    run('stop', '--data-dir', join(dir, 'short'));
    run('stop', '--data-dir', join(dir, 'manager'));
    for (const id of Object.values(ids)) if (id) await removeNodeContainers(id);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a join with a wrong secret, or with a token that pins another CA', () => {
    const token = ok('join-token', 'worker', '-q').trim();
    assert.match(token, /^SHOAL-1-[0-9a-f]{64}-[0-9a-f]+$/);
    const wrongSecret = token.replace(/-[0-9a-f]+$/, '-0123456789abcdef0123456789abcdef');
    const r1 = run('join', '--token', wrongSecret, '--data-dir', join(dir, 'bad1'), managerAddr);
    assert.notEqual(r1.code, 0);
    assert.match(r1.stderr, /not a current join token/);
    const otherCa = token.replace(/^SHOAL-1-[0-9a-f]{64}/, `SHOAL-1-${'ab'.repeat(32)}`);
    const r2 = run('join', '--token', otherCa, '--data-dir', join(dir, 'bad2'), managerAddr);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /refusing to join: the manager at .* presents a CA with digest/);
    assert.equal(json<unknown[]>('node', 'ls', '--format', 'json').length, 1, 'no node was added');
  });

  it('joins a worker with the worker token; both nodes are ready', async () => {
    const token = ok('join-token', 'worker', '-q').trim();
    const out = ok('join', '--token', token, '--data-dir', join(dir, 'worker'), '--advertise-addr', '127.0.0.9:4000', '--detach', managerAddr);
    assert.match(out, /joined cluster .* as worker/);
    ids.worker = nodeId('worker');
    await eventually('both nodes ready', () => {
      const nodes = json<{ id: string; role: string; status: string }[]>('node', 'ls', '--format', 'json');
      return nodes.length === 2 && nodes.every((n) => n.status === 'ready') && nodes;
    });
    const nodes = json<{ id: string; role: string; address: string }[]>('node', 'ls', '--format', 'json');
    assert.deepEqual(nodes.map((n) => [n.id, n.role, n.address]).sort(), [[ids.manager, 'manager', managerAddr], [ids.worker, 'worker', '127.0.0.9:4000']].sort());
  });

  it("refuses the worker's certificate on the user API", async () => {
    const ca = readFileSync(join(dir, 'worker', 'ca.pem'), 'utf8');
    const cert = readFileSync(join(dir, 'worker', 'node.pem'), 'utf8');
    const key = readFileSync(join(dir, 'worker', 'node-key.pem'), 'utf8');
    const r = await httpsRequest(managerAddr, '/v1/services', { ca, cert, key });
    assert.equal(r.status, 403);
    assert.match(JSON.stringify(r.json), /worker certificate grants only the node session protocol/);
  });

  it('refuses a manager token, a promotion and the demotion of the last manager on the embedded store', () => {
    const asManager = run('join', '--token', ok('join-token', 'manager', '-q').trim(), '--data-dir', join(dir, 'm2'), managerAddr);
    assert.notEqual(asManager.code, 0);
    assert.match(asManager.stderr, /needs a shared store/);
    const promote = run('node', 'promote', ids.worker);
    assert.notEqual(promote.code, 0);
    assert.match(promote.stderr, /cannot promote node .*embedded SQLite store/);
    const demote = run('node', 'demote', ids.manager);
    assert.notEqual(demote.code, 0);
    assert.match(demote.stderr, /cannot demote node .*the last manager/);
    const roles = json<{ id: string; role: string }[]>('node', 'ls', '--format', 'json').map((n) => [n.id, n.role]);
    assert.deepEqual(roles.sort(), [[ids.manager, 'manager'], [ids.worker, 'worker']].sort(), 'no role changed');
  });

  it('spreads replicas over both nodes', async () => {
    const r = run('service', 'create', '--name', 'web', '--replicas', '4', TEST_IMAGE, 'sleep', '3600');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await running(ids.manager, 'web'), 2);
    assert.equal(await running(ids.worker, 'web'), 2);
  });

  it('moves the tasks of a SIGKILLed worker to the manager within seconds', async () => {
    const pid = Number(readFileSync(join(dir, 'worker', 'shoal.pid'), 'utf8'));
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    await eventually('4 replicas running on the manager', async () => (await running(ids.manager, 'web')) === 4, 30_000);
    const took = Date.now() - t0;
    assert.ok(took < 15_000, `failover took ${took}ms`);
    await eventually('the worker marked down', () => json<{ id: string; status: string }[]>('node', 'ls', '--format', 'json').find((n) => n.id === ids.worker)?.status === 'down');
  });

  it('shuts down the stale tasks of a worker that comes back: never more replicas than asked', async () => {
    const out = ok('join', '--data-dir', join(dir, 'worker'), '--detach');
    assert.match(out, /Restarting worker/);
    await eventually('the stale containers on the worker stopped', async () => (await running(ids.worker, 'web')) === 0, 20_000);
    assert.equal(await running(ids.manager, 'web'), 4);
    const ls = json<{ name: string; replicas: { desired: number; running: number } }[]>('service', 'ls', '--format', 'json');
    assert.deepEqual(ls.map((s) => [s.name, s.replicas.running, s.replicas.desired]), [['web', 4, 4]]);
  });

  it('runs a global service on every node and follows drain', async () => {
    const r = run('service', 'create', '--name', 'everywhere', '--mode', 'global', TEST_IMAGE, 'sleep', '3600');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await running(ids.manager, 'everywhere'), 1);
    assert.equal(await running(ids.worker, 'everywhere'), 1);
    ok('node', 'update', '--availability', 'drain', ids.worker);
    await eventually('the global task gone from the drained worker', async () => (await running(ids.worker, 'everywhere')) === 0);
    assert.equal(await running(ids.manager, 'everywhere'), 1);
  });

  it('keeps joined nodes working after the token is rotated', async () => {
    const before = ok('join-token', 'worker', '-q').trim();
    const after = ok('join-token', 'worker', '--rotate', '-q').trim();
    assert.notEqual(after, before);
    const r = run('join', '--token', before, '--data-dir', join(dir, 'late'), managerAddr);
    assert.notEqual(r.code, 0, 'the old token no longer joins');
    ok('node', 'update', '--availability', 'active', ids.worker);
    await eventually('the worker runs the global task again', async () => (await running(ids.worker, 'everywhere')) === 1);
  });

  it('a worker frozen with SIGSTOP is replaced, and after SIGCONT its stale tasks stop: no excess replicas', async () => {
    ok('service', 'scale', 'web=6');
    await eventually('web spread over both nodes', async () => (await running(ids.worker, 'web')) > 0 && (await running(ids.manager, 'web')) + (await running(ids.worker, 'web')) === 6);
    const pid = Number(readFileSync(join(dir, 'worker', 'shoal.pid'), 'utf8'));
    process.kill(pid, 'SIGSTOP');
    try {
      await eventually('all 6 running on the manager', async () => (await running(ids.manager, 'web')) === 6, 30_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await eventually('the resumed worker stopped its stale web tasks', async () => (await running(ids.worker, 'web')) === 0, 20_000);
    await eventually('the worker ready again', () => json<{ id: string; status: string }[]>('node', 'ls', '--format', 'json').find((n) => n.id === ids.worker)?.status === 'ready');
    assert.equal(await running(ids.manager, 'web'), 6);
    ok('service', 'scale', 'web=4');
  });

  it('removes a node: refused while ready without --force, then its certificate is refused and its tasks move', async () => {
    const r = run('node', 'rm', ids.worker);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /is ready; drain it and stop it first, or remove it with --force/);
    ok('node', 'rm', '--force', ids.worker);
    await eventually('the worker stopped its containers', async () => (await running(ids.worker, 'everywhere')) === 0 && (await running(ids.worker, 'web')) === 0);
    await new Promise((res) => setTimeout(res, 1500));
    const nodes = json<{ id: string }[]>('node', 'ls', '--format', 'json');
    assert.deepEqual(nodes.map((n) => n.id), [ids.manager], 'the removed worker did not come back');
    assert.match(readFileSync(join(dir, 'worker', 'shoal.log'), 'utf8'), /401/);
    assert.equal(await running(ids.manager, 'web'), 4);
  });

  it('renews node certificates before they expire; an expired certificate is refused', async () => {
    ok('cluster', 'update', '--cert-expiry', '8s');
    const token = ok('join-token', 'worker', '-q').trim();
    ok('join', '--token', token, '--data-dir', join(dir, 'short'), '--detach', managerAddr);
    ids.short = nodeId('short');
    const first = readFileSync(join(dir, 'short', 'node.pem'), 'utf8');
    const firstKey = readFileSync(join(dir, 'short', 'node-key.pem'), 'utf8');
    await eventually('a renewed certificate', () => readFileSync(join(dir, 'short', 'node.pem'), 'utf8') !== first, 15_000);
    // Past the first certificate's expiry the node is still ready: it reconnected with the renewed one.
    await new Promise((res) => setTimeout(res, 9000));
    const me = json<{ id: string; status: string; address: string }[]>('node', 'ls', '--format', 'json').find((n) => n.id === ids.short);
    assert.equal(me?.status, 'ready');
    assert.equal(me?.address, '127.0.0.1', 'a worker that names no address is known by where its session comes from');
    const { WebSocket } = await import('ws');
    const ca = readFileSync(join(dir, 'short', 'ca.pem'), 'utf8');
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`wss://${managerAddr}/v1/session`, { ca, cert: first, key: firstKey, servername: 'shoal-manager' } as Record<string, unknown>);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => resolve(-1));
    });
    assert.equal(status, 401, 'the expired certificate opens no session');
    run('stop', '--data-dir', join(dir, 'short'));
  });
});
