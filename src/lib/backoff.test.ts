// Tests of exponential backoff: doubling from the base, the cap, and jitter bounds with injected randomness.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { backoffDelay } from './backoff.js';

const opts = (random: number) => ({ baseMs: 100, maxMs: 5000, random: () => random });

describe('backoffDelay', () => {
  it('doubles from the base with no jitter at the middle of the random range', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, opts(0.5))),
      [100, 200, 400, 800, 1600, 3200],
    );
  });

  it('caps at the maximum', () => {
    assert.equal(backoffDelay(6, opts(0.5)), 5000);
    assert.equal(backoffDelay(100, opts(0.5)), 5000);
    assert.equal(backoffDelay(Number.MAX_SAFE_INTEGER, opts(0.5)), 5000);
  });

  it('jitters by at most 20% either way', () => {
    assert.equal(backoffDelay(0, opts(0)), 80);
    assert.equal(backoffDelay(3, opts(0)), 640);
    assert.equal(backoffDelay(3, opts(0.999999)), 960);
    assert.equal(backoffDelay(50, opts(0)), 4000);
    assert.equal(backoffDelay(50, opts(0.999999)), 6000);
  });

  it('stays within ±20% of min(max, base·2^attempt) and grows with the attempt for any randomness', () => {
    fc.assert(
      fc.property(
        fc.nat(60),
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, maxMs, r) => {
          const o = { baseMs, maxMs, random: () => r };
          const raw = Math.min(maxMs, baseMs * 2 ** attempt);
          const d = backoffDelay(attempt, o);
          assert.ok(d >= Math.floor(0.8 * raw) && d <= Math.ceil(1.2 * raw), `${d} outside ±20% of ${raw}`);
          assert.ok(backoffDelay(attempt + 1, o) >= d);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('uses real randomness when none is injected, still within bounds', () => {
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(2, { baseMs: 100, maxMs: 5000 });
      assert.ok(d >= 320 && d <= 480, String(d));
    }
  });
});
