// The periodic check of the nodes' sets: every session is checked within a period, a slice at a time.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkSlice } from './dispatcher.js';

/** Runs `ticks` ticks over `ids` and returns the ids of each tick. */
const run = (ids: string[], slices: number, ticks: number, cursor = 0): string[][] => {
  const out: string[][] = [];
  for (let i = 0; i < ticks; i++) {
    const s = checkSlice(ids, cursor, slices);
    cursor = s.cursor;
    out.push(s.ids);
  }
  return out;
};

describe('checkSlice', () => {
  it('checks every session within any `slices` ticks in a row, never more than ceil(n / slices) at a tick', () => {
    for (const n of [1, 7, 29, 30, 31, 1000]) {
      const ids = Array.from({ length: n }, (_, i) => `n${i}`);
      const ticks = run(ids, 30, 90);
      for (const t of ticks) assert.ok(t.length <= Math.ceil(n / 30), `${n} sessions: ${t.length} at one tick`);
      for (let start = 0; start + 30 <= ticks.length; start++) {
        const seen = new Set(ticks.slice(start, start + 30).flat());
        assert.equal(seen.size, n, `${n} sessions: every one within ticks ${start}..${start + 29}`);
      }
    }
  });

  it('spreads a thousand sessions evenly: 34 per tick, none twice in a period', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `n${i}`);
    const ticks = run(ids, 30, 29);
    assert.ok(ticks.every((t) => t.length === 34));
    assert.equal(new Set(ticks.flat()).size, 29 * 34);
  });

  it('carries on round the sessions there are when some leave or join', () => {
    const first = checkSlice(['a', 'b', 'c', 'd'], 0, 2);
    assert.deepEqual(first, { ids: ['a', 'b'], cursor: 2 });
    // 'b' left: the cursor wraps within the new list instead of running past its end.
    const second = checkSlice(['a', 'c', 'd'], first.cursor, 2);
    assert.deepEqual(second.ids, ['d', 'a']);
    assert.deepEqual(checkSlice([], 5, 30), { ids: [], cursor: 0 });
  });
});
