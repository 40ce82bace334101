import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Slots } from './slots.js';

/** A task that runs until `finish` is called; records when it started. */
const gate = (log: string[], name: string): { task: () => Promise<string>; finish: () => void } => {
  let finish = (): void => undefined;
  const done = new Promise<void>((r) => (finish = r));
  return { task: async () => (log.push(name), await done, name), finish: () => finish() };
};
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Slots', () => {
  it('runs at most `size` at once; a freed slot goes to a waiter that is not background first, then in arrival order', async () => {
    const slots = new Slots(2);
    const log: string[] = [];
    const [a, b, bg1, c, bg2] = ['a', 'b', 'bg1', 'c', 'bg2'].map((n) => gate(log, n)) as [ReturnType<typeof gate>, ...ReturnType<typeof gate>[]];
    const runs = [slots.run(a.task), slots.run(b!.task), slots.run(bg1!.task, true), slots.run(c!.task), slots.run(bg2!.task, true)];
    await turn();
    assert.deepEqual(log, ['a', 'b']);
    assert.deepEqual(slots.load, { held: 2, waiting: 3 });
    a.finish();
    await turn();
    assert.deepEqual(log, ['a', 'b', 'c'], 'c came after bg1 but is not background');
    b!.finish();
    await turn();
    assert.deepEqual(log, ['a', 'b', 'c', 'bg1']);
    for (const g of [c, bg1, bg2]) g!.finish();
    assert.deepEqual(await Promise.all(runs), ['a', 'b', 'bg1', 'c', 'bg2']);
    assert.deepEqual(slots.load, { held: 0, waiting: 0 });
  });

  it('frees the slot of a task that failed', async () => {
    const slots = new Slots(1);
    await assert.rejects(slots.run(async () => { throw new Error('boom'); }), /boom/);
    assert.equal(await slots.run(async () => 'next'), 'next');
    assert.deepEqual(slots.load, { held: 0, waiting: 0 });
  });

  it('refuses a size that is not a positive integer', () => {
    for (const size of [0, -1, 1.5, Number.NaN]) assert.throws(() => new Slots(size), RangeError);
  });
});
