// The HTTP API's contract: every request authenticated, invalid input refused with the field and reason and
// nothing written, names unique, the OpenAPI document served.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiError, ShoalClient } from '../src/cli/client.js';
import type { ErrorBody } from '../src/protocol/index.js';
import type { WatchEvent } from '../src/store/store.js';
import { createNodeKeyAndCsr, createRootCa, signNodeCsr } from '../src/pki/index.js';
import { MANAGER_TLS_NAME } from '../src/protocol/index.js';
import { TEST_IMAGE, httpsRequest, startTestNode, type TestNode } from './helpers.js';

describe('API', () => {
  let node: TestNode;
  before(async () => {
    node = await startTestNode();
  });
  after(async () => {
    await node?.destroy();
  });

  const post = async (body: unknown): Promise<{ status: number; body: ErrorBody }> => {
    try {
      await node.client.raw('POST', '/services', body);
      return { status: 200, body: { error: { code: '', message: '', violations: [] } } };
    } catch (e) {
      assert.ok(e instanceof ApiError, String(e));
      return { status: e.status, body: { error: { code: e.code, message: e.message, violations: e.violations } } };
    }
  };

  it('refuses requests without a valid admin token', async () => {
    const address = node.daemon.manager.address;
    const none = await httpsRequest(address, '/v1/services', { ca: node.tls.ca });
    assert.equal(none.status, 401);
    assert.equal((none.json as ErrorBody).error.code, 'unauthenticated');
    const wrong = await httpsRequest(address, '/v1/services', { ca: node.tls.ca, headers: { authorization: 'Bearer not-the-token' } });
    assert.equal(wrong.status, 401);
    const spec = await httpsRequest(address, '/v1/openapi.json', { ca: node.tls.ca });
    assert.equal(spec.status, 401, 'even the OpenAPI document needs credentials');
    const bad = new ShoalClient({ hosts: [address], token: 'x', ca: node.tls.ca });
    await assert.rejects(bad.createService({ name: 'nope', task: { container: { image: TEST_IMAGE } } }), (e: ApiError) => e.status === 401);
    bad.close();
    assert.deepEqual(await node.client.listServices(), []);
  });

  it('serves only TLS, and clients refuse a manager whose certificate another CA issued', async () => {
    const other = await createRootCa({ clusterId: 'othercluster', now: new Date() });
    await assert.rejects(httpsRequest(node.daemon.manager.address, '/v1/info', { ca: other.certPem }), /self[- ]signed|unable to verify|certificate/i);
    const plain = await fetch(`http://${node.daemon.manager.address}/v1/info`).then(() => 'answered', () => 'refused');
    assert.equal(plain, 'refused', 'no plain-HTTP answer');
  });

  it('opens agent sessions only with a node certificate issued by the cluster CA (mutual TLS)', async () => {
    const { WebSocket } = await import('ws');
    const status = (opts: Record<string, unknown>): Promise<number> =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`wss://${node.daemon.manager.address}/v1/session`, { ca: node.tls.ca, servername: MANAGER_TLS_NAME, ...opts } as Record<string, unknown>);
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('error', () => resolve(-1));
      });
    assert.equal(await status({}), 401, 'no client certificate');
    const foreignCa = await createRootCa({ clusterId: node.daemon.manager.nodeId, now: new Date() });
    const { keyPem, csrPem } = await createNodeKeyAndCsr({ nodeId: 'intruder' });
    const foreign = await signNodeCsr({ ca: foreignCa, csrPem, nodeId: 'intruder', role: 'worker', clusterId: node.daemon.manager.nodeId, now: new Date() });
    assert.equal(await status({ cert: foreign, key: keyPem }), 401, 'a certificate from another CA');
    assert.equal(await status({ cert: node.tls.cert, key: node.tls.key }), 101, "the node's own certificate");
  });

  it('rejects invalid specs with the field and the reason, and writes nothing', async () => {
    const started = Date.now();
    const revision = await node.daemon.manager.store.revision();
    const cases: { body: unknown; field: string; reason: RegExp }[] = [
      { body: { name: 'a', mode: { replicated: { replicas: -1 } }, task: { container: { image: TEST_IMAGE } } }, field: 'mode.replicated.replicas', reason: />=\s*0|too small/i },
      { body: { name: 'a', mode: { replicated: { replicas: 'three' } }, task: { container: { image: TEST_IMAGE } } }, field: 'mode.replicated.replicas', reason: /number/i },
      { body: { name: 'a', task: { container: { image: TEST_IMAGE } }, bogus: 1 }, field: '(root)', reason: /unknown field.*bogus/ },
      { body: { name: 'a', task: { container: { image: TEST_IMAGE }, placement: { constraints: ['node.labels.zone=eu'] } } }, field: 'task.placement.constraints.0', reason: /KEY==VALUE/ },
      { body: { name: 'a', task: { container: { image: TEST_IMAGE }, placement: { constraints: ['node.colour==red'] } } }, field: 'task.placement.constraints.0', reason: /unknown key/ },
      { body: { name: 'a', task: { container: { image: '' } } }, field: 'task.container.image', reason: /image is required/ },
      { body: { name: 'bad name!', task: { container: { image: TEST_IMAGE } } }, field: 'name', reason: /letters, digits/ },
      { body: { name: 'a', task: { container: { image: TEST_IMAGE, env: ['NOEQUALS'] } } }, field: 'task.container.env.0', reason: /KEY=VALUE/ },
      { body: { name: 'a', task: { container: { image: TEST_IMAGE }, restartPolicy: { condition: 'sometimes' } } }, field: 'task.restartPolicy.condition', reason: /none|on-failure|any/ },
      { body: { name: 'a', task: { container: { image: TEST_IMAGE }, resources: { limits: { memoryBytes: 1024 } } } }, field: 'task.resources.limits.memoryBytes', reason: /at least 6MiB/ },
      { body: 'not an object', field: '(root)', reason: /object/i },
      // Only a template deploy marks a service as the template's (which lets provisioners scale and remove it).
      { body: { name: 'a', labels: { 'shoal.template': 'web' }, task: { container: { image: TEST_IMAGE } } }, field: 'labels', reason: /template deploy/ },
    ];
    for (const c of cases) {
      const r = await post(c.body);
      assert.equal(r.status, 400, `status for ${JSON.stringify(c.body)}`);
      assert.equal(r.body.error.code, 'invalid_argument');
      const v = r.body.error.violations.find((x) => x.field === c.field);
      assert.ok(v, `violation on ${c.field} in ${JSON.stringify(r.body.error.violations)}`);
      assert.match(v.reason, c.reason);
    }
    const token = (node.client as unknown as { opts: { token: string } }).opts.token;
    const raw = await httpsRequest(node.daemon.manager.address, '/v1/services', { ca: node.tls.ca, method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{"name":' });
    assert.equal(raw.status, 400);
    assert.match((raw.json as ErrorBody).error.message, /not valid JSON/);
    // The only writes are the audit log's: one entry per refused request, each saying why.
    const audit = (await node.daemon.manager.store.list('audit')).items.filter((e) => Number(e.id.slice(0, 15)) >= started);
    assert.equal(await node.daemon.manager.store.revision(), revision + audit.length, 'no write but the audit entries');
    assert.equal(audit.length, cases.length + 1);
    assert.ok(audit.every((e) => e.outcome === 'failed' && e.action === 'service.create' && /invalid|not valid/.test(e.message)), JSON.stringify(audit));
    assert.deepEqual(await node.client.listServices(), []);
  });

  it('refuses a duplicate name with 409 and keeps the first service', async () => {
    const first = await node.client.createService({ name: 'dup', mode: { replicated: { replicas: 0 } }, task: { container: { image: TEST_IMAGE } } });
    const results = await Promise.allSettled([1, 2, 3].map(() => node.client.createService({ name: 'dup', task: { container: { image: TEST_IMAGE } } })));
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.equal((r.reason as ApiError).status, 409);
      assert.match((r.reason as ApiError).message, /'dup' already exists/);
    }
    const all = await node.client.listServices();
    assert.deepEqual(all.map((s) => s.id), [first.id]);
  });

  it('creates services sent at once, each name once: the rest of one name get 409', async () => {
    const names = ['many-a', 'many-b', 'many-c', 'many-d', 'many-b', 'many-e', 'many-b', 'many-f'];
    const results = await Promise.allSettled(names.map((name) => node.client.createService({ name, mode: { replicated: { replicas: 0 } }, task: { container: { image: TEST_IMAGE } } })));
    const created = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    assert.deepEqual(created.map((s) => s.spec.name).sort(), ['many-a', 'many-b', 'many-c', 'many-d', 'many-e', 'many-f']);
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as ApiError] : []));
    assert.equal(refused.length, 2);
    for (const e of refused) assert.ok(e.status === 409 && /'many-b' already exists/.test(e.message), e.message);
    // Each answer is the stored service, readable at once.
    for (const s of created) {
      assert.equal(s.meta.version, 1);
      assert.equal((await node.client.inspectService(s.spec.name)).id, s.id);
    }
    await Promise.all(created.map((s) => node.client.removeService(s.id)));
  });

  it('commits each allowed write in one transaction with its audit entry, and a refused one alone', async () => {
    const { store } = node.daemon.manager;
    const from = (await store.revision()) + 1;
    const names = ['tx-a', 'tx-b', 'tx-c', 'tx-a'];
    const created = await Promise.allSettled(names.map((name) => node.client.createService({ name, mode: { replicated: { replicas: 0 } }, task: { container: { image: TEST_IMAGE } } })));
    assert.deepEqual(created.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    await node.client.scaleService('tx-a', 0);
    await node.client.removeService('tx-b');
    const to = await store.revision();
    const events: WatchEvent[] = [];
    const ctl = new AbortController();
    for await (const batch of store.watch({ fromRevision: from, signal: ctl.signal })) {
      events.push(...batch);
      if ((batch.at(-1)?.revision ?? to) >= to) break;
    }
    ctl.abort();
    const audit = events.flatMap((e) => (e.object.kind === 'audit' ? [{ revision: e.revision, entry: e.object }] : []));
    assert.equal(audit.length, 6, `one entry per request: ${JSON.stringify(audit)}`);
    // Every allowed write's entry is in the revision of the change it records; the refused create's is alone.
    const serviceChanges = events.filter((e) => e.kind === 'service');
    for (const { revision, entry } of audit) {
      const name = entry.target.replace(/^service\//, '');
      const changed = serviceChanges.filter((e) => e.revision === revision).map((e) => (e.object.kind === 'service' ? e.object.spec.name : ''));
      if (entry.outcome === 'allowed') assert.ok(changed.includes(name), `${entry.action} ${entry.target} is committed with its write (revision ${revision} changed ${changed.join(',')})`);
      else assert.deepEqual([entry.outcome, entry.target, changed], ['failed', 'service/tx-a', []]);
    }
    assert.deepEqual(audit.map((a) => `${a.entry.action} ${a.entry.outcome}`).sort(), ['service.create allowed', 'service.create allowed', 'service.create allowed', 'service.create failed', 'service.remove allowed', 'service.scale allowed']);
    await Promise.all(['tx-a', 'tx-c'].map((n) => node.client.removeService(n)));
  });

  it('validates scale requests and reports unknown services', async () => {
    await assert.rejects(node.client.raw('POST', '/services/dup/scale', { replicas: -2 }), (e: ApiError) => e.status === 400 && e.violations[0]?.field === 'replicas');
    await assert.rejects(node.client.scaleService('no-such-service', 2), (e: ApiError) => e.status === 404 && /service 'no-such-service' not found/.test(e.message));
    await assert.rejects(node.client.raw('PUT', '/services'), (e: ApiError) => e.status === 405);
    await assert.rejects(node.client.raw('GET', '/nothing-here'), (e: ApiError) => e.status === 404);
    const s = await node.client.scaleService('dup', 0);
    assert.equal('replicated' in s.spec.mode && s.spec.mode.replicated.replicas, 0);
  });

  it('serves an OpenAPI document describing the routes and the service spec', async () => {
    const doc = (await node.client.raw('GET', '/openapi.json')) as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, { properties?: Record<string, unknown> }> } };
    assert.equal(doc.openapi, '3.1.0');
    for (const p of ['/services', '/services/{ref}', '/services/{ref}/scale', '/services/{ref}/tasks', '/services/{ref}/logs', '/nodes', '/info']) assert.ok(doc.paths[p], p);
    assert.ok(doc.components.schemas.ServiceSpec?.properties?.task);
  });

  it('lists nodes with the stable fields', async () => {
    const nodes = await node.client.listNodes();
    assert.equal(nodes.length, 1);
    const [n] = nodes;
    assert.deepEqual(Object.keys(n ?? {}).sort(), ['address', 'availability', 'hostname', 'id', 'managerStatus', 'role', 'status']);
    assert.equal(n?.managerStatus, 'leader', 'the one manager leads');
    assert.equal(n?.id, node.nodeId);
    assert.equal(n?.role, 'manager');
    assert.equal(n?.status, 'ready');
    assert.equal(n?.availability, 'active');
  });
});
