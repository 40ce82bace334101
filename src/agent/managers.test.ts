// Tests of the manager list helpers and of the order and pace in which an agent tries managers (ManagerRounds).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ShoalError } from '../core/index.js';
import { parseManagerList, preferFirst, sameList } from '../protocol/index.js';
import { ManagerRounds, type SessionOutcome } from './managers.js';

const A = '10.0.0.1:7420';
const B = '10.0.0.2:7420';
const C = '10.0.0.3:7420';

const unreachable: SessionOutcome = { kind: 'unreachable' };
const noLeader: SessionOutcome = { kind: 'not-leader' };
const leaderIs = (leader: string): SessionOutcome => ({ kind: 'not-leader', leader });

/** Rounds with the jitter at its top (random just under 1): the delays are their largest. */
const rounds = (managers: string[]): ManagerRounds => new ManagerRounds(managers, () => 0.999999);

/** Tries the next manager, checks it is `expected`, records `outcome`; returns the delay asked for. */
const step = (r: ManagerRounds, expected: string, outcome: SessionOutcome): number => {
  assert.equal(r.next(), expected);
  return r.record(expected, outcome);
};

describe('parseManagerList', () => {
  it('reads a header value: trimmed, blanks and repeats dropped, order kept', () => {
    assert.deepEqual(parseManagerList(` ${B}, ${A},,${B} ,`), [B, A]);
    assert.deepEqual(parseManagerList([A, ' ', C, A]), [A, C]);
  });

  it('takes anything else (absent header, a bad welcome field) as no list', () => {
    assert.deepEqual(parseManagerList(undefined), []);
    assert.deepEqual(parseManagerList(''), []);
    assert.deepEqual(parseManagerList(42), []);
    assert.deepEqual(parseManagerList([1, null, A]), [A]);
  });
});

describe('preferFirst and sameList', () => {
  it('moves an address in the list to the front, keeping the others in order', () => {
    assert.deepEqual(preferFirst([A, B, C], C), [C, A, B]);
    assert.deepEqual(preferFirst([A, B, C], A), [A, B, C]);
  });

  it('leaves the list as it is when the address is not in it', () => {
    const list = [A, B];
    const out = preferFirst(list, C);
    assert.deepEqual(out, [A, B]);
    assert.notEqual(out, list);
    assert.deepEqual(preferFirst(list, undefined), [A, B]);
  });

  it('compares lists in order', () => {
    assert.ok(sameList([A, B], [A, B]));
    assert.ok(!sameList([A, B], [B, A]));
    assert.ok(!sameList([A], [A, B]));
  });
});

describe('ManagerRounds', () => {
  it('refuses an empty list', () => {
    assert.throws(() => new ManagerRounds([]), (e: unknown) => e instanceof ShoalError && e.code === 'invalid_argument');
    assert.throws(() => new ManagerRounds([' ']), ShoalError);
  });

  it('moves on at once past unreachable managers and backs off (to 2 s) only after whole rounds', () => {
    const r = rounds([A, B]);
    const delays: number[] = [];
    for (let round = 0; round < 7; round++) {
      assert.equal(step(r, A, unreachable), 0);
      delays.push(step(r, B, unreachable));
    }
    // Base 100 ms doubling, +20% jitter at the top, capped at 2 s (+20%).
    assert.deepEqual(delays, [120, 240, 480, 960, 1920, 2400, 2400]);
  });

  it('goes straight to the leader a 503 names, without waiting', () => {
    const r = rounds([A, B, C]);
    assert.equal(step(r, A, unreachable), 0);
    assert.equal(step(r, B, leaderIs(C)), 0);
    assert.equal(r.next(), C);
  });

  it('goes to a named leader that is not in the list yet', () => {
    const r = rounds([A]);
    const D = '10.0.0.4:7420';
    assert.equal(step(r, A, leaderIs(D)), 0);
    assert.equal(r.next(), D);
  });

  it('does not follow a leader tried in this round again (stale or looping names) but finishes the round', () => {
    const r = rounds([A, B, C]);
    assert.equal(step(r, A, leaderIs(B)), 0);
    assert.equal(step(r, B, leaderIs(A)), 0);
    assert.equal(r.next(), C);
  });

  it('waits at most 192 ms between rounds while managers answer without a leader', () => {
    const r = rounds([A, B]);
    const delays: number[] = [];
    for (let round = 0; round < 6; round++) {
      step(r, A, noLeader);
      delays.push(step(r, B, noLeader));
    }
    assert.deepEqual(delays, [60, 120, 192, 192, 192, 192]);
    assert.ok(delays.every((d) => d <= 200));
  });

  it('starts the next round with the managers that answered, and skips the unreachable while others answer', () => {
    const r = rounds([A, B, C]);
    step(r, A, unreachable);
    step(r, B, noLeader);
    assert.ok(step(r, C, noLeader) <= 200);
    // A (unreachable) is left out: B and C make the round.
    step(r, B, noLeader);
    assert.ok(step(r, C, noLeader) <= 200);
    assert.deepEqual(r.managers, [B, C, A]);
    // Named the leader, A is tried again.
    assert.equal(step(r, B, leaderIs(A)), 0);
    assert.equal(r.next(), A);
  });

  it('tries every manager again once none answers', () => {
    const r = rounds([A, B]);
    step(r, A, unreachable);
    step(r, B, noLeader);
    // Round 2 is B alone (A skipped); with B gone too, nobody is left to skip for: A at once, then the long backoff.
    assert.equal(step(r, B, unreachable), 0);
    assert.equal(step(r, A, unreachable), 240);
    assert.equal(step(r, B, unreachable), 0);
    assert.equal(r.next(), A);
  });

  it('counts a refusal (401/403) as no answer: the long backoff, no redirect', () => {
    const r = rounds([A]);
    const delays = [0, 1, 2, 3, 4, 5].map(() => step(r, A, { kind: 'refused' }));
    assert.deepEqual(delays, [120, 240, 480, 960, 1920, 2400]);
  });

  it('after a session ends, goes back to the same manager first, after a short pause, and forgets past failures', () => {
    const r = rounds([A, B, C]);
    for (let i = 0; i < 5; i++) {
      step(r, A, unreachable);
      step(r, B, unreachable);
      step(r, C, unreachable);
    }
    assert.equal(step(r, A, unreachable), 0);
    assert.equal(step(r, B, leaderIs(C)), 0);
    assert.equal(step(r, C, { kind: 'welcomed' }), 120);
    assert.deepEqual(r.managers, [C, A, B]);
    assert.equal(step(r, C, unreachable), 0);
    assert.equal(step(r, A, unreachable), 0);
    assert.equal(step(r, B, unreachable), 120);
  });

  it('adopts a welcome list, keeping the current manager first when it is in it', () => {
    const r = rounds([A, B]);
    assert.equal(r.adopt([C, B, A], B), true);
    assert.deepEqual(r.managers, [B, C, A]);
    assert.equal(r.adopt([B, C, A], B), false);
    assert.equal(r.adopt([C, A], B), true);
    assert.deepEqual(r.managers, [C, A]);
  });

  it('ignores a welcome without a list (an older manager)', () => {
    const r = rounds([A, B]);
    assert.equal(r.adopt(undefined, A), false);
    assert.equal(r.adopt([], A), false);
    assert.deepEqual(r.managers, [A, B]);
  });
});
