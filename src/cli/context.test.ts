// Tests of the CLI context file: the shape with every manager, an older file with one host, recording what a client
// learns of the managers, and which managers clientFor talks to.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { clientFor, parseContext, readContext, rememberManagers, writeContext } from './context.js';

const A = '127.0.0.1:7420';
const B = '10.0.0.2:7420';
const C = '10.0.0.3:7420';
const secrets = { token: 'tok', clusterId: 'c1', ca: 'PEM' };

describe('CLI context', () => {
  let dir = '';
  let file = '';
  const saved = { config: process.env.SHOAL_CONFIG, host: process.env.SHOAL_HOST };
  const fileText = (): unknown => JSON.parse(readFileSync(file, 'utf8'));

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-context-'));
    file = join(dir, 'sub', 'config.json');
    process.env.SHOAL_CONFIG = file;
    delete process.env.SHOAL_HOST;
  });
  afterEach(() => {
    rmSync(join(dir, 'sub'), { recursive: true, force: true });
    delete process.env.SHOAL_HOST;
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    for (const [k, v] of [['SHOAL_CONFIG', saved.config], ['SHOAL_HOST', saved.host]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('reads the shape with every manager, and an older file with one host', () => {
    assert.deepEqual(parseContext(JSON.stringify({ hosts: [A, B], ...secrets })), { hosts: [A, B], ...secrets });
    assert.deepEqual(parseContext(JSON.stringify({ host: A, ...secrets })), { hosts: [A], ...secrets });
  });

  it('takes a file without a manager, credential or CA, or not JSON, as no context', () => {
    assert.equal(parseContext('{'), undefined);
    assert.equal(parseContext('null'), undefined);
    assert.equal(parseContext(JSON.stringify({ hosts: [], ...secrets })), undefined);
    assert.equal(parseContext(JSON.stringify({ hosts: [A], token: 'tok', clusterId: 'c1' })), undefined);
  });

  it('writes the managers without repeats, readable by the owner only', () => {
    writeContext({ hosts: [A, B, A], ...secrets });
    assert.deepEqual(fileText(), { hosts: [A, B], ...secrets });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readContext(), { hosts: [A, B], ...secrets });
  });

  it('records a learned list keeping the first host first while it is named, and writes only on a change', () => {
    writeContext({ hosts: [A], ...secrets });
    rememberManagers([B, A, C]);
    assert.deepEqual(fileText(), { hosts: [A, B, C], ...secrets });
    // The client's list from another manager: the same once A is first, so nothing is written (the marker stays).
    writeFileSync(file, JSON.stringify({ hosts: [A, B, C], ...secrets, marker: 1 }));
    rememberManagers([B, C, A]);
    assert.deepEqual(fileText(), { hosts: [A, B, C], ...secrets, marker: 1 });
    // A new leader (first in the cluster's list) reorders the rest.
    rememberManagers([C, B, A]);
    assert.deepEqual(fileText(), { hosts: [A, C, B], ...secrets });
    // The first host is no longer a manager: the client's order stands.
    rememberManagers([C, B]);
    assert.deepEqual(fileText(), { hosts: [C, B], ...secrets });
  });

  it('migrates an older file when it records a list', () => {
    process.env.SHOAL_CONFIG = join(dir, 'old.json');
    try {
      writeFileSync(process.env.SHOAL_CONFIG, JSON.stringify({ host: A, ...secrets }));
      rememberManagers([B, A]);
      assert.deepEqual(JSON.parse(readFileSync(process.env.SHOAL_CONFIG, 'utf8')), { hosts: [A, B], ...secrets });
    } finally {
      process.env.SHOAL_CONFIG = file;
    }
  });

  it('clientFor: --host, else SHOAL_HOST (comma-separated lists), else the context', () => {
    writeContext({ hosts: [A, B], ...secrets });
    const fromContext = clientFor({});
    assert.deepEqual(fromContext.hosts, [A, B]);
    process.env.SHOAL_HOST = `${C}, ${B}`;
    const fromEnv = clientFor({});
    assert.deepEqual(fromEnv.hosts, [C, B]);
    const fromFlag = clientFor({ host: `${B},${A}` });
    assert.deepEqual(fromFlag.hosts, [B, A]);
    for (const c of [fromContext, fromEnv, fromFlag]) c.close();
  });

  it('clientFor without a context names the file and how to make one', () => {
    assert.throws(() => clientFor({ host: A }), /no Shoal context at .*config\.json: run 'shoal init'/);
  });
});
