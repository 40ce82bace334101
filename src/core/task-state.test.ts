// Tests of the task state machine: states move forward only, terminal states are final, transition() drops the rest.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TASK_STATES, TERMINAL_STATES, canTransition, isTerminal, stateRank, transition } from './task-state.js';
import type { TaskState } from './task-state.js';

const TERMINAL: TaskState[] = ['complete', 'failed', 'shutdown', 'rejected', 'orphaned'];
const LIVE: TaskState[] = ['new', 'pending', 'assigned', 'accepted', 'preparing', 'starting', 'running'];

describe('task states', () => {
  it('lists the lifecycle in order, live states before terminal ones', () => {
    assert.deepEqual([...TASK_STATES], [...LIVE, ...TERMINAL]);
    assert.deepEqual([...TERMINAL_STATES].sort(), [...TERMINAL].sort());
  });

  it('knows which states are terminal', () => {
    for (const s of TERMINAL) assert.equal(isTerminal(s), true, s);
    for (const s of LIVE) assert.equal(isTerminal(s), false, s);
  });

  it('ranks live states in lifecycle order and all terminal states alike, above every live state', () => {
    for (let i = 1; i < LIVE.length; i++) assert.ok(stateRank(LIVE[i] as TaskState) > stateRank(LIVE[i - 1] as TaskState));
    const top = stateRank('complete');
    for (const s of TERMINAL) assert.equal(stateRank(s), top, s);
    assert.ok(top > stateRank('running'));
  });
});

describe('canTransition / transition', () => {
  it('allows every forward move between live states and refuses every backward one', () => {
    for (const [i, from] of LIVE.entries()) {
      for (const [j, to] of LIVE.entries()) {
        assert.equal(canTransition(from, to), j >= i, `${from} -> ${to}`);
      }
    }
  });

  it('allows any live state to end in any terminal state, skipping the states between', () => {
    for (const from of LIVE) for (const to of TERMINAL) assert.equal(transition(from, to), to, `${from} -> ${to}`);
  });

  it('treats a terminal state as final, even a repeat of itself or another terminal state', () => {
    for (const from of TERMINAL) {
      for (const to of TASK_STATES) assert.equal(transition(from, to), undefined, `${from} -> ${to}`);
    }
  });

  it('accepts a repeated report of the same live state (idempotent)', () => {
    for (const s of LIVE) assert.equal(transition(s, s), s);
  });

  it('examples: a late "starting" after "running" and a report after "failed" are dropped', () => {
    assert.equal(transition('running', 'starting'), undefined);
    assert.equal(transition('assigned', 'new'), undefined);
    assert.equal(transition('failed', 'running'), undefined);
    assert.equal(transition('failed', 'shutdown'), undefined);
    assert.equal(transition('pending', 'running'), 'running');
  });

  it('applying any sequence of reports only ever moves forward and stops at the first terminal state', () => {
    const stateArb = fc.constantFrom(...TASK_STATES);
    fc.assert(
      fc.property(stateArb, fc.array(stateArb, { maxLength: 30 }), (start, reports) => {
        let cur = start;
        for (const r of reports) {
          const next = transition(cur, r);
          if (next === undefined) continue;
          assert.equal(next, r);
          assert.ok(!isTerminal(cur), `moved out of terminal ${cur}`);
          assert.ok(stateRank(next) >= stateRank(cur), `${cur} -> ${next} goes back`);
          cur = next;
        }
        // Once terminal, the state equals the first terminal report accepted, whatever came later.
        const firstTerminal = isTerminal(start) ? start : reports.find(isTerminal);
        if (firstTerminal !== undefined) assert.equal(cur, firstTerminal);
      }),
      { numRuns: 200 },
    );
  });
});
