// Users, tokens, grants, policies and the audit log end to end through the `shoal` CLI, as the docs show them: an
// admin sets up developers, the docs' example policies (docs/policies/*.yaml, used as written) refuse what they must
// on every write path, warn and audit policies allow, and tokens stop working once revoked. One node on the exec
// runtime, so no Docker is needed.

import assert from 'node:assert/strict';
import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { AuditEntry, GrantView, PolicyTestResult, ServiceListItem, WhoAmIResponse } from '../src/protocol/index.js';
import { readDataDir } from '../src/manager/data-dir.js';
import { ExecRuntime } from '../src/runtime/index.js';
import { shoalAsync, startTestNode, tempDir, type TestNode } from './helpers.js';

const policyFile = (name: string): string => fileURLToPath(new URL(`../../docs/policies/${name}`, import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('access and policies through the CLI', () => {
  let node: TestNode;
  let dir = '';
  /** The admin's environment: the context file `shoal init` would write, with the cluster's admin token. */
  let admin: Record<string, string> = {};
  const tokens: Record<string, string> = {};

  /** `shoal ARGS` as `who` (a user with a token, or the admin); `input` goes to stdin. */
  const run = (who: string, args: string[], input?: string): Promise<Run> => shoalAsync(args, who === 'admin' ? admin : { ...admin, SHOAL_TOKEN: tokens[who] ?? '' }, 60_000, input);
  const ok = async (who: string, ...args: string[]): Promise<string> => {
    const r = await run(who, args);
    assert.equal(r.code, 0, `shoal ${args.join(' ')} as ${who} failed:\n${r.stderr}`);
    return r.stdout;
  };
  const json = async <T>(who: string, ...args: string[]): Promise<T> => JSON.parse(await ok(who, ...args)) as T;
  /** Asserts the command fails with exit code 1 and returns its stderr. */
  const refused = async (who: string, ...args: string[]): Promise<string> => {
    const r = await run(who, args);
    assert.equal(r.code, 1, `shoal ${args.join(' ')} as ${who} should have failed (exit ${r.code}):\n${r.stdout}${r.stderr}`);
    return r.stderr;
  };
  const writePolicy = (name: string, text: string): string => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  /** A user with a developer (or other) grant on project default, and an API token in `tokens`. */
  const addUser = async (name: string, role = 'developer'): Promise<void> => {
    assert.equal(await ok('admin', 'user', 'create', name), `${name}\n`);
    tokens[name] = (await ok('admin', 'token', 'create', '--user', name, '--description', 'test', '-q')).trim();
    assert.match(tokens[name] ?? '', /^shoal_[a-z0-9]{16}_\S+$/);
    assert.match(await ok('admin', 'grant', 'add', '--user', name, '--role', role, '--project', 'default'), /^\S+\n$/);
  };
  const auditOf = async (user: string): Promise<AuditEntry[]> => json<AuditEntry[]>('admin', 'audit', 'ls', '--user', user, '--format', 'json');

  before(async () => {
    node = await startTestNode({ runtime: 'exec' });
    dir = tempDir('shoal-access-cli-');
    const dd = readDataDir(node.dataDir);
    assert.ok(dd);
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ hosts: [node.daemon.manager.address], token: dd.credentials.adminToken, clusterId: dd.config.clusterId, ca: node.tls.ca }), { mode: 0o600 });
    admin = { SHOAL_CONFIG: config, SHOAL_HOST: '', SHOAL_TOKEN: '' };
  });
  after(async () => {
    await node?.stop();
    // Exec tasks outlive the daemon by design: remove them before the data dir goes.
    const rt = node && new ExecRuntime({ dir: join(node.dataDir, 'exec') });
    for (const c of (await rt?.list()) ?? []) await rt?.remove(c.id);
    await rt?.close();
    await node?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('latte: only its deployers may change it, and every decision is in the audit log', async () => {
    await Promise.all([addUser('dev-a'), addUser('dev-d')]);
    const grants = await json<GrantView[]>('admin', 'grant', 'ls', '--user', 'dev-a', '--format', 'json');
    assert.deepEqual(grants.map((g) => [g.subject, g.role, g.scope]), [[{ user: 'dev-a' }, 'developer', { project: 'default' }]]);

    const created = await run('dev-a', ['service', 'create', '--name', 'latte', 'sh', 'sleep', '300']);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stderr, /latte: converged/);

    assert.equal(await ok('admin', 'policy', 'apply', '-f', policyFile('latte-deployers.yaml')), 'policy/latte-deployers created\n');
    assert.equal(await ok('admin', 'policy', 'apply', '-f', policyFile('latte-deployers.yaml')), 'policy/latte-deployers unchanged\n');

    const denied = await refused('dev-d', 'service', 'scale', 'latte=2', '-d');
    assert.match(denied, /latte-deployers/);
    assert.match(denied, /only dev-a, dev-b and dev-c may deploy latte/);
    assert.equal(await ok('dev-a', 'service', 'scale', 'latte=2', '-d'), 'latte scaled to 2\n');

    const entries = await json<AuditEntry[]>('admin', 'audit', 'ls', '--format', 'json');
    const scales = entries.filter((e) => e.action === 'service.scale' && e.target === 'service/latte');
    const d = scales.find((e) => e.user === 'dev-d');
    const a = scales.find((e) => e.user === 'dev-a');
    assert.equal(d?.outcome, 'denied', JSON.stringify(scales));
    assert.match(d.rule, /policy latte-deployers/);
    assert.equal(a?.outcome, 'allowed', JSON.stringify(scales));
    assert.match(a.rule, /role developer on project default/);
    assert.match(await ok('admin', 'audit', 'ls', '--user', 'dev-d', '--since', '10m'), /dev-d\s+service\.scale\s+service\/latte\s+denied/);
  });

  it('registry.example/x may not run more than 5 replicas: create, scale and update are each refused', async () => {
    assert.equal(await ok('admin', 'policy', 'apply', '-f', policyFile('replica-cap.yaml')), 'policy/x-replica-cap created\n');
    const cap = /x-replica-cap.*registry\.example\/x may not scale past 5 replicas/s;
    assert.match(await refused('dev-a', 'service', 'create', '--name', 'x', '--replicas', '6', '-d', 'registry.example/x', 'sleep', '300'), cap);
    await ok('dev-a', 'service', 'create', '--name', 'x', '--replicas', '5', '-d', 'registry.example/x', 'sleep', '300');
    assert.match(await refused('dev-a', 'service', 'scale', 'x=6', '-d'), cap);
    assert.match(await refused('dev-a', 'service', 'update', '--replicas', '6', '-d', 'x'), cap);
    const rows = await json<ServiceListItem[]>('dev-a', 'service', 'ls', '--format', 'json');
    assert.deepEqual(rows.map((s) => [s.name, s.project, s.replicas.desired]).sort(), [['latte', 'default', 2], ['x', 'default', 5]]);
  });

  it('a warn policy allows the write and prints its message; an audit policy only records it', async () => {
    const warn = writePolicy(
      'warn.yaml',
      'kind: Policy\nname: latte-team-label\nmatch: {operations: [scale], services: [latte]}\nvalidations:\n  - expression: "\'team\' in object.labels"\n    message: latte should carry a team label\naction: warn\n',
    );
    const audit = writePolicy(
      'audit.yaml',
      'kind: Policy\nname: latte-replicas\nmatch: {services: [latte]}\nvalidations:\n  - expression: "object.replicas <= 2"\n    message: latte runs more than 2 replicas\naction: audit\n',
    );
    assert.equal(await ok('admin', 'policy', 'apply', '-f', warn), 'policy/latte-team-label created\n');
    assert.equal(await ok('admin', 'policy', 'apply', '-f', audit), 'policy/latte-replicas created\n');

    const warned = await run('dev-a', ['service', 'scale', 'latte=3', '-d']);
    assert.equal(warned.code, 0, warned.stderr);
    assert.equal(warned.stdout, 'latte scaled to 3\n');
    assert.match(warned.stderr, /^Warning: policy latte-team-label: latte should carry a team label$/m);
    assert.doesNotMatch(warned.stderr, /more than 2 replicas/);

    const last = (await auditOf('dev-a')).filter((e) => e.action === 'service.scale').at(-1);
    assert.equal(last?.outcome, 'allowed');
    assert.deepEqual(last.warnings, ['policy latte-team-label: latte should carry a team label']);
    assert.deepEqual(last.audits, ['policy latte-replicas: latte runs more than 2 replicas']);
    assert.equal(await ok('admin', 'policy', 'rm', 'latte-team-label', 'latte-replicas'), 'latte-team-label\nlatte-replicas\n');
  });

  it('policy test lists existing violators and changes nothing; an expression that does not compile is refused with its position', async () => {
    // Reads only: run side by side.
    const [results, table] = await Promise.all([
      json<PolicyTestResult[]>('admin', 'policy', 'test', '-f', policyFile('memory-limit.yaml'), '--format', 'json'),
      ok('admin', 'policy', 'test', '-f', policyFile('memory-limit.yaml')),
    ]);
    assert.deepEqual(results.map((r) => [r.policy, r.service, r.outcome]), [['require-memory-limit', 'latte', 'deny'], ['require-memory-limit', 'x', 'deny']]);
    assert.match(table, /POLICY\s+SERVICE\s+PROJECT\s+OUTCOME\s+MESSAGE\nrequire-memory-limit\s+latte\s+default\s+deny\s+every service must set a memory limit/);
    // After the dry run: no policy stored, no service changed.
    const [policies, services] = await Promise.all([ok('admin', 'policy', 'ls'), json<ServiceListItem[]>('admin', 'service', 'ls', '--format', 'json')]);
    assert.match(policies, /^latte-deployers\s+deny\s+create,update,scale,rollback,remove,deploy\s+services=latte\s+1$/m);
    assert.match(policies, /^x-replica-cap\s+deny\s+create,update,scale,rollback,deploy\s+images=registry\.example\/x\s+1$/m);
    assert.doesNotMatch(policies, /require-memory-limit/);
    assert.deepEqual(services.map((s) => [s.name, s.replicas.desired]).sort(), [['latte', 3], ['x', 5]]);

    const bad = writePolicy('bad.yaml', 'kind: Policy\nname: broken\nvalidations:\n  - expression: "object.replicas <= "\n    message: never\naction: deny\n');
    assert.match(await refused('admin', 'policy', 'apply', '-f', bad), /line \d+, column \d+/);
    const [shown] = await json<{ id: string; document: { action: string } }[]>('admin', 'policy', 'show', 'x-replica-cap');
    assert.deepEqual([shown?.id, shown?.document.action], ['x-replica-cap', 'deny']);
  });

  it('templates: an admin applies one, a provisioner deploys it and scales within its bounds', async () => {
    await addUser('prov-a', 'provisioner');
    const file = writePolicy('template.yaml', `kind: Template
name: shop-web
description: the shop front end
project: default
replicas: {min: 1, max: 3, default: 1}
service:
  task:
    container: {image: sh, command: [/bin/sh, -c, exec sleep 300]}
    restartPolicy: {delayMs: 0}
`);
    assert.equal(await ok('admin', 'template', 'apply', '-f', file), 'template/shop-web created\n');
    assert.match(await ok('prov-a', 'template', 'ls'), /shop-web\s+default\s+sh\s+1\.\.3 \(default 1\)\s+the shop front end/);
    assert.match(await ok('prov-a', 'template', 'deploy', 'shop-web', '--name', 'front'), /service front \(\S+\) deployed from template shop-web into project default/);
    await ok('prov-a', 'service', 'scale', 'front=3', '--detach');
    assert.match(await refused('prov-a', 'service', 'scale', 'front=4', '--detach'), /template 'shop-web' allows 1 to 3 replicas, not 4/);
    assert.match(await refused('prov-a', 'service', 'create', '--name', 'raw', 'sh'), /may not service\.create/);
    assert.equal(await ok('prov-a', 'service', 'rm', 'front'), 'front\n');
  });

  it('login and whoami; a viewer cannot create; --token wins over SHOAL_TOKEN; a revoked token is refused', async () => {
    // Two independent stories, side by side to save time.
    await Promise.all([signIn(), viewerAndRevoke()]);
  });

  const signIn = async (): Promise<void> => {
    // Signing in replaces the context file's credential: a copy of the admin's, as on a developer's machine.
    const devConfig = join(dir, 'dev-a.json');
    copyFileSync(admin.SHOAL_CONFIG ?? '', devConfig);
    const dev = { ...admin, SHOAL_CONFIG: devConfig };
    assert.equal((await run('admin', ['user', 'passwd', 'dev-a', '--password-stdin'], 'first-secret\n')).code, 0);
    const noTty = await shoalAsync(['login', '--user', 'dev-a'], dev, 60_000);
    assert.equal(noTty.code, 1);
    assert.match(noTty.stderr, /not a terminal.*--password-stdin/);
    const login = await shoalAsync(['login', '--user', 'dev-a', '--password-stdin'], dev, 60_000, 'first-secret\n');
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stdout, /^Login Succeeded: dev-a until /);
    const me = JSON.parse((await shoalAsync(['whoami', '--format', 'json'], dev, 60_000)).stdout) as WhoAmIResponse;
    assert.equal(me.user, 'dev-a');
    assert.deepEqual(me.grants.map((g) => [g.role, g.scope]), [['developer', { project: 'default' }]]);
    // Your own password: the current one on the first line, the new one on the second.
    const wrong = await shoalAsync(['user', 'passwd', 'dev-a', '--password-stdin'], dev, 60_000, 'wrong-secret\nsecond-secret\n');
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /current password is wrong/);
  };

  const viewerAndRevoke = async (): Promise<void> => {
    await addUser('dev-v', 'viewer');
    const denied = await refused('dev-v', 'service', 'create', '--name', 'v', '-d', 'sh', 'sleep', '300');
    assert.match(denied, /'dev-v' may not service\.create .*role viewer on project default/);
    assert.match(await ok('dev-v', 'service', 'ls'), /^ID\s+NAME\s+PROJECT\s+MODE\s+REPLICAS\s+IMAGE$[\s\S]*\blatte\s+default\s+replicated\s+\d+\/3\s+sh$/m);
    assert.match(await ok('dev-v', '--token', tokens['dev-a'] ?? '', 'whoami'), /^User: dev-a$/m);

    const ids = (await ok('admin', 'token', 'ls', '--user', 'dev-d', '-q')).trim().split('\n');
    assert.equal(ids.length, 1);
    assert.equal(await ok('admin', 'token', 'revoke', tokens['dev-d'] ?? ''), `${ids[0]}\n`);
    assert.match(await refused('dev-d', 'service', 'ls'), /invalid credentials/);
  };
});
