// Tests of join token formatting and parsing, including the error each malformed token gets.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ShoalError } from '../core/index.js';
import { formatJoinToken, newJoinSecret, parseJoinToken } from './token.js';

const DIGEST = 'ab'.repeat(32);
const SECRET = '0123456789abcdef0123456789abcdef';

/** Asserts parsing `text` fails with invalid_argument on `token`, a message matching `why`, and no echo of the secret. */
const bad = (text: string, why: RegExp): void => {
  assert.throws(() => parseJoinToken(text), (e: unknown) => {
    assert.ok(e instanceof ShoalError, String(e));
    assert.equal(e.code, 'invalid_argument');
    assert.equal(e.violations[0]?.field, 'token');
    assert.match(e.message, why);
    assert.ok(!e.message.includes(SECRET), 'the message must not repeat the secret');
    return true;
  });
};

describe('join tokens', () => {
  it('formats SHOAL-1-<digest>-<secret> and parses back, forgiving surrounding whitespace', () => {
    const token = formatJoinToken(DIGEST, SECRET);
    assert.equal(token, `SHOAL-1-${DIGEST}-${SECRET}`);
    assert.deepEqual(parseJoinToken(token), { caDigest: DIGEST, secret: SECRET });
    assert.deepEqual(parseJoinToken(`  ${token}\n`), { caDigest: DIGEST, secret: SECRET });
  });

  it('makes 128-bit hex secrets that round-trip through a token', () => {
    const a = newJoinSecret();
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.notEqual(newJoinSecret(), a);
    assert.equal(parseJoinToken(formatJoinToken(DIGEST, a)).secret, a);
  });

  it('says what is wrong with a malformed token', () => {
    bad('', /it is empty/);
    bad(`SWMTKN-1-${DIGEST}-${SECRET}`, /does not start with "SHOAL-"/);
    bad(`shoal-1-${DIGEST}-${SECRET}`, /does not start with "SHOAL-"/);
    bad(`SHOAL-2-${DIGEST}-${SECRET}`, /version "2" is not supported/);
    bad('SHOAL', /version is missing/);
    bad(`SHOAL-1-${DIGEST}`, /3 dash-separated parts instead of 4/);
    bad(`SHOAL-1-${DIGEST}-${SECRET}-extra`, /5 dash-separated parts/);
    bad(`SHOAL-1-abc-${SECRET}`, /CA digest has 3 characters instead of 64/);
    bad(`SHOAL-1-${DIGEST.toUpperCase()}-${SECRET}`, /CA digest must be lowercase hex/);
    bad(`SHOAL-1-${'g'.repeat(64)}-${SECRET}`, /CA digest must be lowercase hex/);
    bad(`SHOAL-1-${DIGEST}-`, /secret has 0 characters/);
    bad(`SHOAL-1-${DIGEST}-short`, /secret has 5 characters/);
    bad(`SHOAL-1-${DIGEST}-${SECRET.toUpperCase()}`, /secret must be lowercase letters or digits/);
    // Every message shows the expected shape.
    bad('x', /looks like SHOAL-1-<64 hex digit CA digest>-<secret>/);
  });

  it('refuses to format a token from a bad digest or secret', () => {
    assert.throws(() => formatJoinToken('abc', SECRET), /caDigest/);
    assert.throws(() => formatJoinToken(DIGEST, 'has-dash-in-it-0000'), /secret/);
  });
});
