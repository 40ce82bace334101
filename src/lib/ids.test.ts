// Tests of ids: length, alphabet, uniqueness and an even spread of characters.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newId } from './ids.js';

describe('newId', () => {
  it('makes ids of the asked length from lowercase base-36 characters, all different', () => {
    const ids = Array.from({ length: 20_000 }, () => newId());
    for (const id of ids) assert.match(id, /^[0-9a-z]{25}$/);
    assert.equal(new Set(ids).size, ids.length);
    assert.match(newId(7), /^[0-9a-z]{7}$/);
  });

  it('uses every character about equally often (no modulo bias towards the first ones)', () => {
    const counts = new Map<string, number>();
    const n = 36 * 10_000;
    for (const ch of newId(n)) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    assert.equal(counts.size, 36);
    // Each expected 10,000 times (sd 100); `b % 36` over all 256 byte values would give '0'-'3' about 11,250.
    for (const [ch, c] of counts) assert.ok(c > 9_500 && c < 10_500, `'${ch}' came ${c} times`);
  });
});
