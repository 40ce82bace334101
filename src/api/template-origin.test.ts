// Tests of the template-origin checks a provisioner's scale and remove go through (TemplateApi.checkScale and
// checkOrigin), over a real SQLite store and the real Cache; templates are applied through StoreWriter.applyByName.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { TEMPLATE_LABEL, type ErrorCode, type Service } from '../core/index.js';
import { systemClock } from '../lib/clock.js';
import { silentLogger } from '../lib/logger.js';
import { parseTemplateDocuments, templateFields, type PolicyApplyResult } from '../protocol/index.js';
import { Cache } from '../store/cache.js';
import { sampleService, within } from '../store/contract.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { Admission } from './admission.js';
import { TemplateApi } from './template-routes.js';
import { StoreWriter } from './writes.js';

/** A template of project `shop` named `web`, with the given replica bounds. */
const templateYaml = (min: number, max: number, project = 'shop'): string => `kind: Template
name: web
project: ${project}
replicas: {min: ${min}, max: ${max}}
service:
  task:
    container: {image: registry.example/shop/web:1.4}
`;

/** What assert.throws expects of a ShoalError with this code and a message matching `message`. */
const shoalError = (code: ErrorCode, message: RegExp): { name: string; code: ErrorCode; message: RegExp } => ({ name: 'ShoalError', code, message });

describe('TemplateApi origin checks', () => {
  let dir: string;
  let store: SqliteStore;
  let ctl: AbortController;
  let cache: Cache;
  let writer: StoreWriter;
  let api: TemplateApi;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-template-origin-'));
    store = SqliteStore.open(join(dir, 'store.db'));
    ctl = new AbortController();
    cache = await Cache.start(store, { signal: ctl.signal });
    writer = new StoreWriter({ store, cache });
    api = new TemplateApi({ cache, clock: systemClock, logger: silentLogger, newId: randomUUID, writer, admission: new Admission({ cache, logger: silentLogger }) });
  });

  afterEach(async () => {
    ctl.abort();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Applies the template document as the API's apply does. */
  const applyTemplate = (yaml: string): Promise<PolicyApplyResult[]> =>
    within(writer.applyByName('template', parseTemplateDocuments(yaml).map((doc) => ({ name: doc.name, content: templateFields(doc) })), systemClock, { signal: ctl.signal }), 'the template apply');

  /** Stores a service (as a deploy or a raw create would) and returns it as the cache has it. */
  const storeService = async (name: string, opts: { replicas: number; project: string; labels: Record<string, string> }): Promise<Service> => {
    const s = sampleService(name, opts.replicas);
    const [stored] = await within(writer.commit([{ op: 'create', object: { ...s, spec: { ...s.spec, project: opts.project, labels: opts.labels } } }], { signal: ctl.signal }), 'the service create');
    const cached = cache.get('service', stored?.id ?? '');
    assert.ok(cached, `service '${name}' is in the cache after its commit`);
    return cached;
  };

  /** A service as `template deploy web` makes it: in the template's project, labelled with its name. */
  const deployed = (name: string, replicas: number): Promise<Service> => storeService(name, { replicas, project: 'shop', labels: { [TEMPLATE_LABEL]: 'web' } });

  it('lets a service deployed from a template scale anywhere within its bounds, both ends included', async () => {
    assert.deepEqual(await applyTemplate(templateYaml(1, 5)), [{ name: 'web', version: 1, result: 'created' }]);
    const s = await deployed('front', 2);
    for (const replicas of [1, 2, 3, 5]) api.checkScale(s, replicas);
    assert.equal(api.checkOrigin(s, 'remove').id, 'web');
  });

  it('refuses a scale outside the bounds with a message naming them', async () => {
    await applyTemplate(templateYaml(1, 5));
    const s = await deployed('front', 2);
    assert.throws(() => api.checkScale(s, 6), shoalError('invalid_argument', /^invalid replicas: template 'web' allows 1 to 5 replicas, not 6$/));
    assert.throws(() => api.checkScale(s, 0), shoalError('invalid_argument', /^invalid replicas: template 'web' allows 1 to 5 replicas, not 0$/));
  });

  it('refuses to scale or remove a service not deployed from a template', async () => {
    await applyTemplate(templateYaml(1, 5));
    const raw = await storeService('raw', { replicas: 1, project: 'shop', labels: {} });
    const notFromTemplate = /^cannot (scale|remove) service 'raw': it was not deployed from a template, and a template grant covers only template services$/;
    assert.throws(() => api.checkScale(raw, 2), shoalError('permission_denied', notFromTemplate));
    assert.throws(() => api.checkOrigin(raw, 'remove'), shoalError('permission_denied', notFromTemplate));
    // A label that names no template is no origin either.
    const stray = await storeService('stray', { replicas: 1, project: 'shop', labels: { [TEMPLATE_LABEL]: '' } });
    assert.throws(() => api.checkOrigin(stray, 'remove'), shoalError('permission_denied', /^cannot remove service 'stray': it was not deployed from a template, and/));
  });

  it('refuses a service whose template was removed, even within the old bounds', async () => {
    await applyTemplate(templateYaml(1, 5));
    const s = await deployed('front', 2);
    await within(writer.removeCurrent(() => cache.get('template', 'web') ?? assert.fail('template web is stored'), { signal: ctl.signal }), 'the template remove');
    assert.equal(cache.get('template', 'web'), undefined);
    assert.throws(() => api.checkScale(s, 3), shoalError('permission_denied', /^cannot scale service 'front': it was not deployed from a template \(its template 'web' is gone\)/));
    assert.throws(() => api.checkOrigin(s, 'remove'), shoalError('permission_denied', /^cannot remove service 'front': .*\(its template 'web' is gone\)/));
  });

  it("applies the template's bounds as they are now, once it changed", async () => {
    await applyTemplate(templateYaml(1, 5));
    const s = await deployed('front', 5);
    assert.deepEqual(await applyTemplate(templateYaml(1, 5)), [{ name: 'web', version: 1, result: 'unchanged' }]);
    assert.deepEqual(await applyTemplate(templateYaml(2, 3)), [{ name: 'web', version: 2, result: 'updated' }]);
    assert.deepEqual(cache.get('template', 'web')?.replicas, { min: 2, max: 3, default: 2 });
    assert.throws(() => api.checkScale(s, 4), shoalError('invalid_argument', /template 'web' allows 2 to 3 replicas, not 4/));
    assert.throws(() => api.checkScale(s, 1), shoalError('invalid_argument', /template 'web' allows 2 to 3 replicas, not 1/));
    // A service left above the new maximum may be brought back within the bounds, and removed.
    api.checkScale(s, 3);
    api.checkScale(s, 2);
    assert.equal(api.checkOrigin(s, 'remove').replicas.max, 3);
  });

  it("refuses a service outside its template's project: moved there, or its template now deploys elsewhere", async () => {
    await applyTemplate(templateYaml(1, 5));
    const moved = await storeService('moved', { replicas: 1, project: 'other', labels: { [TEMPLATE_LABEL]: 'web' } });
    assert.throws(() => api.checkScale(moved, 2), shoalError('permission_denied', /^cannot scale service 'moved': it is in project 'other' but its template 'web' deploys into project 'shop'/));
    const s = await deployed('front', 2);
    await applyTemplate(templateYaml(1, 5, 'elsewhere'));
    assert.throws(() => api.checkOrigin(s, 'remove'), shoalError('permission_denied', /^cannot remove service 'front': it is in project 'shop' but its template 'web' deploys into project 'elsewhere'/));
  });
});
