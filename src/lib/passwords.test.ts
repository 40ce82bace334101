import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hashPassword, verifyPassword } from './passwords.js';

test('a password hash verifies the password and nothing else, and never contains it', async () => {
  const h = await hashPassword('correct horse battery');
  assert.match(h, /^scrypt\$32768\$8\$1\$/);
  assert.ok(!h.includes('correct horse'));
  assert.equal(await verifyPassword('correct horse battery', h), true);
  assert.equal(await verifyPassword('correct horse batterY', h), false);
  assert.equal(await verifyPassword('correct horse battery', 'garbage'), false);
});

test('two hashes of one password differ (salted)', async () => {
  assert.notEqual(await hashPassword('same password'), await hashPassword('same password'));
});
