import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { TurnBudget } from './turn-budget.js';

/** A budget of 8 ms on a clock the test moves: each unit of work below "takes" 5 ms. */
const setup = (): { budget: TurnBudget; order: string[]; unit: (name: string) => void } => {
  let t = 0;
  const budget = new TurnBudget(8, () => t);
  const order: string[] = [];
  return { budget, order, unit: (name) => ((t += 5), order.push(name)) };
};

const loop = async (b: TurnBudget, unit: (name: string) => void, name: string, n: number, lane?: 'first' | 'fair'): Promise<void> => {
  for (let i = 0; i < n; i++) {
    await b.slot(lane);
    unit(`${name}${i}`);
  }
};

describe('TurnBudget', () => {
  it('runs units back to back while the window lasts, then lets the event loop poll for I/O before the next', async () => {
    const { budget, order, unit } = setup();
    const { port1, port2 } = new MessageChannel();
    const arrived = new Promise<void>((resolve) => port1.once('message', () => (order.push('message'), resolve())));
    port2.postMessage('a request');
    await Promise.all([loop(budget, unit, 'u', 5), arrived]);
    port1.close();
    // Two units fit in 8 ms (the second starts at 5 ms); the message waits for no more than them.
    assert.deepEqual(order, ['u0', 'u1', 'message', 'u2', 'u3', 'u4']);
    assert.equal(budget.waiters, 0);
  });

  it('shares one window among loops, first come first served, and serves the first lane ahead of the others', async () => {
    const { budget, order, unit } = setup();
    // Which turn of the event loop each unit ran in (a chain of immediates counts the check phases).
    let turn = 0;
    let counting = true;
    const count = (): void => void (counting && (turn++, setImmediate(count)));
    setImmediate(count);
    const turns: number[] = [];
    const mark = (name: string): void => {
      unit(name);
      turns.push(turn);
    };
    const a = loop(budget, mark, 'a', 3);
    const b = loop(budget, mark, 'b', 3);
    // Asks once both loops wait: it goes ahead of them.
    const f = new Promise<void>((resolve) => setImmediate(() => void loop(budget, mark, 'f', 1, 'first').then(resolve)));
    await Promise.all([a, b, f]);
    counting = false;
    // a asked for its second slot at 5 ms, within the first window; b at 10 ms, after it. f asked last and went first.
    assert.deepEqual(order, ['a0', 'b0', 'a1', 'f0', 'b1', 'a2', 'b2']);
    const perTurn = [...turns.reduce((m, t) => m.set(t, (m.get(t) ?? 0) + 1), new Map<number, number>()).values()];
    assert.deepEqual(perTurn, [3, 2, 2], 'three windows: 15, 10 and 10 ms of units');
  });

  it('tells a loop of small units when the window is spent', async () => {
    const { budget, unit } = setup();
    assert.equal(budget.spent(), true, 'no window is open before a slot is asked for');
    await budget.slot();
    let n = 0;
    do unit(`s${n++}`);
    while (!budget.spent());
    assert.equal(n, 2);
  });

  it('refuses a budget that is not positive', () => {
    assert.throws(() => new TurnBudget(0), /budgetMs must be positive/);
  });
});
