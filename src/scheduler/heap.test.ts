// Tests of the scheduler's binary heap: ordering after heapify, push and pop, and re-sinking a grown top key.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Heap } from './heap.js';

const numLess = (a: number, b: number): boolean => a < b;

/** Pops everything, in heap order. */
const drain = <T>(heap: Heap<T>): T[] => {
  const out: T[] = [];
  for (let x = heap.pop(); x !== undefined; x = heap.pop()) out.push(x);
  return out;
};

describe('Heap', () => {
  it('is empty when built from nothing', () => {
    const heap = new Heap(numLess);
    assert.equal(heap.size, 0);
    assert.equal(heap.peek(), undefined);
    assert.equal(heap.pop(), undefined);
  });

  it('pops in ascending order after building from an array', () => {
    fc.assert(
      fc.property(fc.array(fc.integer()), (xs) => {
        const heap = new Heap(numLess, [...xs]);
        assert.equal(heap.size, xs.length);
        assert.deepEqual(drain(heap), [...xs].sort((a, b) => a - b));
      }),
      { numRuns: 200 },
    );
  });

  it('keeps its order through interleaved pushes and pops', () => {
    const op = fc.oneof(fc.record({ push: fc.integer({ min: -50, max: 50 }) }), fc.constant({ pop: true as const }));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -50, max: 50 })), fc.array(op, { maxLength: 60 }), (init, ops) => {
        const heap = new Heap(numLess, [...init]);
        const model = [...init];
        for (const o of ops) {
          if ('push' in o) {
            heap.push(o.push);
            model.push(o.push);
          } else {
            model.sort((a, b) => a - b);
            assert.equal(heap.pop(), model.shift());
          }
          assert.equal(heap.size, model.length);
          assert.equal(heap.peek(), model.length === 0 ? undefined : Math.min(...model));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('restores the order when the top key grows in place', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(100), { minLength: 1 }), fc.array(fc.nat(20), { maxLength: 40 }), (keys, bumps) => {
        const items = keys.map((key, id) => ({ key, id }));
        const heap = new Heap<{ key: number; id: number }>((a, b) => a.key < b.key || (a.key === b.key && a.id < b.id), [...items]);
        for (const bump of bumps) {
          const top = heap.peek() as { key: number; id: number };
          top.key += bump;
          heap.topChanged();
          const min = items.reduce((m, x) => (x.key < m.key || (x.key === m.key && x.id < m.id) ? x : m));
          assert.equal(heap.peek(), min);
        }
      }),
      { numRuns: 200 },
    );
  });
});
