// Every API route × every kind of user on a running manager: the outcome (allowed, or refused for lack of a grant)
// matches docs/authorization.md. Plus the limits of self-service routes and of project grants.

import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApiError, ShoalClient } from '../src/cli/client.js';
import { declaredRoutes, readAuthorizationTable, TABLE_SUBJECTS } from '../src/api/routes.test.js';
import { MANAGER_TLS_NAME, type TokenCreateResponse } from '../src/protocol/index.js';
import { eventually, killExecTasks, startTestNode, type TestNode } from './helpers.js';

interface Answer {
  status: number;
  message: string;
}

/** One request; streaming answers are cut after their headers (their status is what matters here). */
const call = (node: TestNode, method: string, path: string, token: string | undefined, body?: unknown): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const address = node.daemon.manager.address;
    const i = address.lastIndexOf(':');
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(text ? { 'content-type': 'application/json' } : {}) };
    const req = https.request({ hostname: address.slice(0, i), port: address.slice(i + 1), path, method, ca: node.tls.ca, servername: MANAGER_TLS_NAME, headers, timeout: 15_000 }, (res) => {
      const status = res.statusCode ?? 0;
      if (status < 400) {
        res.destroy();
        resolve({ status, message: '' });
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let message = raw;
        try {
          message = (JSON.parse(raw) as { error: { message: string } }).error.message;
        } catch {
          // not JSON: keep the text
        }
        resolve({ status, message });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 15 s`)));
    req.on('error', reject);
    req.end(text);
  });

/** Refused for who is asking (not for what was asked): a 403, or a 401 about the credential itself. */
const refused = (a: Answer): boolean => a.status === 403 || (a.status === 401 && /^(missing|invalid) credentials/.test(a.message));

const clientAs = (node: TestNode, token: string): ShoalClient => new ShoalClient({ hosts: [node.daemon.manager.address], token, ca: node.tls.ca });

const slug = (column: string): string => column.replace(/\s+/g, '-');

describe('authorization of every route for every role', () => {
  let node: TestNode;
  let admin: ShoalClient;
  /** Per table column: the user's name, token, and a spare token of theirs to revoke. */
  const subjects = new Map<string, { user: string; token: string; spare?: string }>();

  const token = async (user: string): Promise<TokenCreateResponse> => (await admin.raw('POST', '/tokens', { user, description: 'authz test' })) as TokenCreateResponse;

  before(async () => {
    node = await startTestNode({ runtime: 'exec' });
    admin = node.client;
    for (const s of TABLE_SUBJECTS) {
      const user = `u-${slug(s.column)}`;
      await admin.raw('POST', '/users', { name: user });
      if (s.role && s.scope) await admin.raw('POST', '/grants', { user, role: s.role, ...('cluster' in s.scope ? { cluster: true } : { project: s.scope.project }) });
      subjects.set(s.column, { user, token: (await token(user)).token });
    }
  });
  after(async () => {
    if (node) killExecTasks(node.dataDir);
    await node?.destroy();
  });

  /** The objects the routes name, (re)made before each request: an allowed DELETE removes them. */
  const fixtures = async (column: string): Promise<Record<string, string>> => {
    const exists = (path: string): Promise<boolean> =>
      admin.raw('GET', path).then(
        () => true,
        (e: unknown) => {
          if (e instanceof ApiError && e.status === 404) return false;
          throw e;
        },
      );
    if (!(await exists('/templates/tpl'))) await admin.raw('POST', '/templates', { source: templateYaml });
    // The service the routes name is deployed from a template: then every project role's rule applies to it.
    if (!(await exists('/services/svc'))) await admin.raw('POST', '/templates/tpl/deploy', { name: 'svc', replicas: 1 });
    const task = await eventually('a task of svc', async () => ((await admin.raw('GET', '/services/svc/tasks')) as { id: string }[])[0]?.id);
    if (!(await exists('/users/victim'))) await admin.raw('POST', '/users', { name: 'victim' });
    if (!(await exists('/teams/crew'))) await admin.raw('POST', '/teams', { name: 'crew' });
    let grants = (await admin.raw('GET', '/grants?user=victim')) as { id: string }[];
    if (grants.length === 0) grants = [(await admin.raw('POST', '/grants', { user: 'victim', role: 'viewer', project: 'p9' })) as { id: string }];
    if (!(await exists('/policies/pol'))) await admin.raw('POST', '/policies', { source: policyYaml('pol') });
    const s = subjects.get(column);
    assert.ok(s);
    s.spare ??= (await token(s.user)).id;
    return { ref: 'svc', id: task, name: 'victim', team: 'crew', grant: grants[0]?.id ?? '', policy: 'pol', token: s.spare, self: s.user };
  };

  /** The request each route gets: its path with the fixtures' names, and a body that passes validation. */
  const requestFor = (method: string, pattern: string, f: Record<string, string>, column: string): { path: string; body?: unknown } => {
    const c = slug(column);
    const param = (name: string): string => {
      if (pattern.startsWith('/v1/nodes/')) return method === 'GET' ? node.nodeId : 'no-such-node';
      if (pattern.startsWith('/v1/users/') && pattern.endsWith('/password')) return f.self ?? '';
      const byPrefix: Record<string, string | undefined> = { services: f.ref, tasks: f.id, users: f.name, teams: f.team, tokens: f.token, grants: f.grant, policies: f.policy, templates: 'tpl' };
      return byPrefix[pattern.split('/')[2] ?? ''] ?? name;
    };
    const path = pattern.replace(/:([a-z]+)/g, (_m, name: string) => encodeURIComponent(param(name)));
    const bodies: Record<string, unknown> = {
      'POST /v1/services': { name: `c-${c}`, project: 'p1', mode: { replicated: { replicas: 0 } }, task: { container: { image: 'sh' } } },
      'POST /v1/services/:ref/scale': { replicas: 1 },
      'POST /v1/services/:ref/update': undefined,
      'POST /v1/services/:ref/rollback': {},
      'POST /v1/nodes/:ref/update': {},
      'POST /v1/cluster/update': {},
      'POST /v1/join': { token: 'SHOAL-1-x-y', csr: 'x' },
      'POST /v1/renew': { csr: 'x' },
      'POST /v1/join-tokens/rotate': { role: 'worker' },
      'POST /v1/login': { user: `nobody-${c}`, password: 'not-a-password' },
      'POST /v1/users': { name: `n-${c}` },
      'POST /v1/users/:name/password': { password: 'a long enough password' },
      'POST /v1/teams': { name: `t-${c}` },
      'POST /v1/teams/:name/members': { add: [] },
      'POST /v1/tokens': { description: 'authz' },
      'POST /v1/grants': { user: 'victim', role: 'viewer', project: `p-${c}` },
      'POST /v1/policies': { source: policyYaml(`a-${c}`) },
      'POST /v1/policies/test': { source: policyYaml(`a-${c}`) },
      'POST /v1/templates': { source: templateYaml },
      'POST /v1/templates/:name/deploy': { name: `d-${c}`, replicas: 0 },
    };
    return { path, ...(method === 'POST' ? { body: bodies[`${method} ${pattern}`] ?? {} } : {}) };
  };

  it('allows and refuses each route per docs/authorization.md', async () => {
    const table = readAuthorizationTable('docs/authorization.md');
    const routes = declaredRoutes();
    assert.equal(table.length, routes.length);
    const mismatches: string[] = [];
    for (const r of routes) {
      const row = table.find((x) => x.method === r.method && x.path === r.pattern);
      assert.ok(row, `no table row for ${r.method} ${r.pattern}`);
      for (const s of TABLE_SUBJECTS) {
        const f = await fixtures(s.column);
        const req = requestFor(r.method, r.pattern, f, s.column);
        if (r.pattern === '/v1/services/:ref/update') req.body = { spec: ((await admin.raw('GET', '/services/svc')) as { spec: unknown }).spec };
        // Public routes are called without credentials: they must not need any.
        const who = 'public' in r.access ? undefined : subjects.get(s.column)?.token;
        const answer = await call(node, r.method, req.path, who, req.body);
        assert.ok(answer.status < 500, `${r.method} ${req.path} as ${s.column}: ${answer.status} ${answer.message}`);
        const got = refused(answer) ? 'deny' : 'allow';
        if (got !== row.cells[s.column]) mismatches.push(`${r.method} ${r.pattern} as ${s.column}: table says ${row.cells[s.column]}, got ${answer.status} ${answer.message}`);
      }
    }
    assert.deepEqual(mismatches, []);
  });

  it('explains a refusal: who, what, and the grants they have', async () => {
    const viewer = subjects.get('viewer');
    assert.ok(viewer);
    const a = await call(node, 'POST', '/v1/services/svc/scale', viewer.token, { replicas: 2 });
    assert.equal(a.status, 403);
    assert.match(a.message, /user 'u-viewer' may not service\.scale in project 'p1': it needs admin or developer on the project or the cluster \(grants: role viewer on project p1\)/);
  });

  it('keeps project grants to their project, and listings to what the user may read', async () => {
    await admin.raw('POST', '/services', { name: 'other', project: 'p2', mode: { replicated: { replicas: 0 } }, task: { container: { image: 'sh' } } });
    const dev = subjects.get('developer');
    assert.ok(dev);
    assert.equal((await call(node, 'GET', '/v1/services/other', dev.token)).status, 403);
    assert.equal((await call(node, 'POST', '/v1/services/other/scale', dev.token, { replicas: 1 })).status, 403);
    const created = await call(node, 'POST', '/v1/services', dev.token, { name: 'sneaky', project: 'p2', task: { container: { image: 'sh' } } });
    assert.equal(created.status, 403, 'creating in a project without a grant');
    const svcUpdate = ((await admin.raw('GET', '/services/svc')) as { spec: Record<string, unknown> }).spec;
    const moved = await call(node, 'POST', '/v1/services/svc/update', dev.token, { spec: { ...svcUpdate, project: 'p2' } });
    assert.equal(moved.status, 403, 'moving a service into a project without a grant');
    const devClient = clientAs(node, dev.token);
    const names = ((await devClient.raw('GET', '/services')) as { name: string }[]).map((s) => s.name);
    assert.ok(names.includes('svc') && !names.includes('other'), `listing: ${names.join(',')}`);
  });

  it('lets a provisioner deploy templates, scale their services within bounds and remove them — nothing raw; policies apply as deploy', async () => {
    await admin.raw('POST', '/users', { name: 'prov' });
    await admin.raw('POST', '/grants', { user: 'prov', role: 'provisioner', project: 'p1' });
    const prov = clientAs(node, ((await admin.raw('POST', '/tokens', { user: 'prov' })) as TokenCreateResponse).token);
    const refusal = (p: Promise<unknown>): Promise<ApiError> => p.then(() => assert.fail('expected a refusal'), (e: unknown) => (e instanceof ApiError ? e : assert.fail(String(e))));
    await admin.raw('POST', '/templates', { source: templateYaml.replace('name: tpl', 'name: capped').replace('max: 3', 'max: 10').replace('image: sh', 'image: registry.example/x:1') });
    await admin.raw('POST', '/policies', { source: readFileSync(fileURLToPath(new URL('../../docs/policies/replica-cap.yaml', import.meta.url)), 'utf8') });
    try {
      const overCap = await refusal(prov.raw('POST', '/templates/capped/deploy', { name: 'cap-a', replicas: 6 }));
      assert.equal(overCap.status, 403);
      assert.match(overCap.message, /Cannot deploy service 'cap-a': policy 'x-replica-cap' denies user 'prov'/);
      const deployed = (await prov.raw('POST', '/templates/capped/deploy', { name: 'cap-a', replicas: 0 })) as { spec: { project: string; labels: Record<string, string> } };
      assert.equal(deployed.spec.project, 'p1');
      assert.equal(deployed.spec.labels['shoal.template'], 'capped');
      await prov.raw('POST', '/services/cap-a/scale', { replicas: 3 });
      assert.match((await refusal(prov.raw('POST', '/services/cap-a/scale', { replicas: 6 }))).message, /policy 'x-replica-cap'/);
      const outOfBounds = await refusal(prov.raw('POST', '/services/cap-a/scale', { replicas: 11 }));
      assert.equal(outOfBounds.status, 400);
      assert.match(outOfBounds.message, /template 'capped' allows 0 to 10 replicas, not 11/);
      // Raw specs and services not deployed from a template are out of a provisioner's reach.
      await admin.raw('POST', '/services', { name: 'raw', project: 'p1', mode: { replicated: { replicas: 0 } }, task: { container: { image: 'sh' } } });
      assert.match((await refusal(prov.raw('POST', '/services/raw/scale', { replicas: 1 }))).message, /it was not deployed from a template/);
      assert.equal((await refusal(prov.raw('DELETE', '/services/raw'))).status, 403);
      assert.equal((await refusal(prov.raw('POST', '/services', { name: 'raw2', project: 'p1', task: { container: { image: 'sh' } } }))).status, 403);
      assert.equal((await refusal(prov.raw('POST', '/services/cap-a/update', { spec: deployed.spec }))).status, 403);
      await prov.raw('DELETE', '/services/cap-a');
    } finally {
      await admin.raw('DELETE', '/policies/x-replica-cap');
      prov.close();
    }
  });

  it('slows password guessing: after 5 failed sign-ins a user name must wait, even with the right password', async () => {
    await admin.raw('POST', '/users', { name: 'guessed', password: 'the right password' });
    for (let i = 0; i < 5; i++) assert.equal((await call(node, 'POST', '/v1/login', undefined, { user: 'guessed', password: `guess ${i}` })).status, 401);
    const locked = await call(node, 'POST', '/v1/login', undefined, { user: 'guessed', password: 'the right password' });
    assert.equal(locked.status, 429);
    assert.match(locked.message, /too many failed sign-ins for 'guessed': try again in \d+ s/);
    // Other users are not affected.
    await admin.raw('POST', '/users', { name: 'unguessed', password: 'another password' });
    assert.equal((await call(node, 'POST', '/v1/login', undefined, { user: 'unguessed', password: 'another password' })).status, 200);
    const audit = (await admin.raw('GET', '/audit?user=guessed')) as { action: string; outcome: string }[];
    assert.deepEqual(audit.map((e) => `${e.action} ${e.outcome}`), Array(6).fill('POST /v1/login denied'));
  });

  it('lets users manage only their own tokens and password', async () => {
    const dev = subjects.get('developer');
    const view = subjects.get('viewer');
    assert.ok(dev && view);
    const viewersToken = await token(view.user);
    assert.equal((await call(node, 'DELETE', `/v1/tokens/${viewersToken.id}`, dev.token)).status, 404, "another user's token is not found");
    assert.equal((await call(node, 'GET', `/v1/tokens?user=${view.user}`, dev.token)).status, 403);
    assert.equal((await call(node, 'POST', '/v1/tokens', dev.token, { user: view.user })).status, 403);
    assert.equal((await call(node, 'POST', `/v1/users/${view.user}/password`, dev.token, { password: 'a long enough password' })).status, 403);
    const own = (await clientAs(node, dev.token).raw('GET', '/tokens')) as { user: string }[];
    assert.ok(own.length > 0 && own.every((t) => t.user === dev.user));
    // The revoked token stops working at once.
    assert.equal((await call(node, 'GET', '/v1/whoami', viewersToken.token)).status, 200);
    await admin.raw('DELETE', `/tokens/${viewersToken.id}`);
    assert.equal((await call(node, 'GET', '/v1/whoami', viewersToken.token)).status, 401);
  });
});

const templateYaml = `kind: Template
name: tpl
project: p1
replicas: {min: 0, max: 3, default: 1}
service:
  task:
    container: {image: sh, command: [/bin/sh, -c, exec sleep 300]}
    restartPolicy: {delayMs: 0}
`;

const policyYaml = (name: string): string => `kind: Policy
name: ${name}
match: {services: ["never-matches-anything"]}
validations:
  - expression: "true"
    message: "never fails"
action: audit
`;
