// Tests of the work queue with short real timers: dedup, one run per key at a time, re-runs, requeues, backoff, abort.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createLogger, silentLogger } from '../lib/logger.js';
import { WorkQueue } from './workqueue.js';
import type { Reconcile } from './workqueue.js';

/** Polls `cond` every 2 ms; fails after `timeoutMs`. */
const waitUntil = async (cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
};

/** Runs a queue over `reconcile` for the duration of `body`, then aborts it and checks that run() returns promptly. */
const withQueue = async (
  reconcile: Reconcile,
  body: (queue: WorkQueue, ctl: AbortController) => Promise<void>,
  opts: { concurrency?: number; logger?: ReturnType<typeof createLogger> } = {},
): Promise<void> => {
  const queue = new WorkQueue('test', reconcile, { logger: opts.logger ?? silentLogger, concurrency: opts.concurrency ?? 4 });
  const ctl = new AbortController();
  let finished = false;
  const done = queue.run(ctl.signal).then(() => {
    finished = true;
  });
  try {
    await body(queue, ctl);
  } finally {
    ctl.abort();
    await waitUntil(() => finished, 'run() to return after abort', 1000);
    await done;
  }
};

/** Counts runs per key. */
const counter = () => {
  const runs = new Map<string, number>();
  const reconcile: Reconcile = async (key) => {
    runs.set(key, (runs.get(key) ?? 0) + 1);
  };
  return { runs, reconcile, total: () => [...runs.values()].reduce((a, b) => a + b, 0) };
};

describe('WorkQueue', () => {
  it('deduplicates a key added several times before it is processed', async () => {
    const { runs, reconcile, total } = counter();
    const queue = new WorkQueue('test', reconcile, { logger: silentLogger });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.add('a');
    assert.equal(queue.depth, 2);
    const ctl = new AbortController();
    const done = queue.run(ctl.signal);
    await waitUntil(() => total() === 2, 'both keys to run');
    await sleep(30);
    ctl.abort();
    await done;
    assert.deepEqual(Object.fromEntries(runs), { a: 1, b: 1 });
    assert.equal(queue.depth, 0);
  });

  it('never processes one key twice at once, but processes different keys in parallel', async () => {
    const active = new Map<string, number>();
    let maxPerKey = 0;
    let maxAll = 0;
    let runs = 0;
    const reconcile: Reconcile = async (key) => {
      active.set(key, (active.get(key) ?? 0) + 1);
      maxPerKey = Math.max(maxPerKey, active.get(key) ?? 0);
      maxAll = Math.max(maxAll, [...active.values()].reduce((a, b) => a + b, 0));
      await sleep(10);
      active.set(key, (active.get(key) ?? 0) - 1);
      runs++;
    };
    await withQueue(reconcile, async (queue) => {
      for (let i = 0; i < 15; i++) {
        for (const k of ['a', 'a', 'b', 'c']) queue.add(k);
        await sleep(3);
      }
      await waitUntil(() => [...active.values()].every((n) => n === 0) && queue.depth === 0, 'the queue to drain');
    });
    assert.equal(maxPerKey, 1);
    assert.ok(maxAll >= 2, `keys ran one at a time (max ${maxAll})`);
    assert.ok(runs >= 3);
  });

  it('runs a key again, once, after the run during which it was re-added', async () => {
    const events: string[] = [];
    let release: (() => void) | undefined;
    const gate = new Promise<void>((r) => (release = r));
    const reconcile: Reconcile = async (key) => {
      const n = events.filter((e) => e.startsWith('start')).length + 1;
      events.push(`start${n}:${key}`);
      if (n === 1) await gate;
      events.push(`end${n}:${key}`);
    };
    await withQueue(reconcile, async (queue) => {
      queue.add('a');
      await waitUntil(() => events.length === 1, 'the first run to start');
      queue.add('a');
      queue.add('a');
      queue.add('a');
      await sleep(20);
      assert.deepEqual(events, ['start1:a'], 'not run again while still running');
      release?.();
      await waitUntil(() => events.length === 4, 'the second run');
      await sleep(30);
    });
    assert.deepEqual(events, ['start1:a', 'end1:a', 'start2:a', 'end2:a']);
  });

  it('requeues a key after requeueAfterMs, and only when asked', async () => {
    const times: number[] = [];
    const reconcile: Reconcile = async () => {
      times.push(performance.now());
      return times.length === 1 ? { requeueAfterMs: 40 } : {};
    };
    await withQueue(reconcile, async (queue) => {
      queue.add('a');
      await waitUntil(() => times.length === 2, 'the requeued run');
      await sleep(80);
    });
    assert.equal(times.length, 2);
    assert.ok((times[1] ?? 0) - (times[0] ?? 0) >= 38, `requeued after ${(times[1] ?? 0) - (times[0] ?? 0)} ms`);
  });

  it('keeps the earlier of two delayed adds of a key', async () => {
    const { runs, reconcile } = counter();
    const started = performance.now();
    const firstRun = new Map<string, number>();
    const timed: Reconcile = async (key, signal) => {
      if (!firstRun.has(key)) firstRun.set(key, performance.now() - started);
      await reconcile(key, signal);
    };
    await withQueue(timed, async (queue) => {
      queue.add('late-then-early', 80);
      queue.add('late-then-early', 10);
      queue.add('early-then-late', 10);
      queue.add('early-then-late', 80);
      await sleep(150);
    });
    assert.deepEqual(Object.fromEntries(runs), { 'late-then-early': 1, 'early-then-late': 1 });
    for (const [key, at] of firstRun) assert.ok(at < 70, `${key} first ran after ${at} ms`);
  });

  it('backs off exponentially while a key fails, and starts over after a success', async () => {
    const times: number[] = [];
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    let failuresLeft = 3;
    const reconcile: Reconcile = async () => {
      times.push(performance.now());
      if (failuresLeft-- > 0) throw new Error('conflict');
    };
    await withQueue(
      reconcile,
      async (queue) => {
        queue.add('a');
        await waitUntil(() => times.length === 4, 'three retries');
        failuresLeft = 1;
        queue.add('a');
        await waitUntil(() => times.length === 6, 'the retry after a new failure');
        await sleep(20);
      },
      { logger },
    );
    assert.equal(times.length, 6);
    // Base 20 ms doubling, with at most 20% jitter below: gaps of at least 16, 32 and 64 ms.
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
    for (const [i, min] of [16, 32, 64].entries()) assert.ok((gaps[i] ?? 0) >= min - 1, `gap ${i} is ${gaps[i]} ms`);
    assert.deepEqual(
      lines.map((l) => [l.msg, l.item, l.attempt, l.error]),
      [
        ['test: reconcile failed, retrying', 'a', 1, 'conflict'],
        ['test: reconcile failed, retrying', 'a', 2, 'conflict'],
        ['test: reconcile failed, retrying', 'a', 3, 'conflict'],
        ['test: reconcile failed, retrying', 'a', 1, 'conflict'],
      ],
    );
  });

  it('stops on abort: an idle queue returns, delayed keys never run, later adds are ignored', async () => {
    const { runs, reconcile } = counter();
    const queue = new WorkQueue('test', reconcile, { logger: silentLogger });
    const ctl = new AbortController();
    const done = queue.run(ctl.signal);
    queue.add('delayed', 30);
    await sleep(5);
    ctl.abort();
    await done;
    queue.add('after');
    assert.equal(queue.depth, 0);
    await sleep(50);
    assert.equal(runs.size, 0);
  });

  it('aborts the signal of a running reconcile and waits for it to return, without retrying its failure', async () => {
    let sawAbort = false;
    let runs = 0;
    const reconcile: Reconcile = async (_key, signal) => {
      runs++;
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      sawAbort = signal.aborted;
      throw new Error('aborted');
    };
    const queue = new WorkQueue('test', reconcile, { logger: silentLogger });
    const ctl = new AbortController();
    const done = queue.run(ctl.signal);
    queue.add('a');
    await waitUntil(() => runs === 1, 'the run to start');
    ctl.abort();
    await done;
    assert.equal(sawAbort, true);
    await sleep(40);
    assert.equal(runs, 1);
  });

  it('frees the worker while a key settles, keeps the key busy until then, and retries it when settling fails', async () => {
    const runs: string[] = [];
    const settles = new Map<string, { resolve: () => void; reject: (e: unknown) => void }>();
    const reconcile: Reconcile = async (key) => {
      runs.push(key);
      if (key !== 'a' || runs.filter((k) => k === 'a').length > 2) return;
      return { settled: new Promise<void>((resolve, reject) => settles.set(`${key}${runs.length}`, { resolve, reject })) };
    };
    await withQueue(
      reconcile,
      async (queue) => {
        queue.add('a');
        await waitUntil(() => settles.has('a1'), 'a to be committed');
        // One worker: b runs while a settles; a re-added meanwhile waits for a to settle.
        queue.add('b');
        queue.add('a');
        await waitUntil(() => runs.includes('b'), 'b to run while a settles');
        await sleep(20);
        assert.deepEqual(runs, ['a', 'b']);
        settles.get('a1')?.resolve();
        await waitUntil(() => runs.length === 3, 'a to run again once settled');
        // A failure while settling is a failed reconcile: retried after a backoff.
        settles.get('a3')?.reject(new Error('a later chunk failed'));
        await waitUntil(() => runs.length === 4, 'a to be retried');
        assert.deepEqual(runs, ['a', 'b', 'a', 'a']);
      },
      { concurrency: 1 },
    );
  });

  it('lets many keys settle at once on its signal without a listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    const settles: (() => void)[] = [];
    // As a controller does: each key settles by waiting, with the queue's signal, for something to come.
    const reconcile: Reconcile = async (_key, signal) => ({
      settled: new Promise<void>((resolve) => {
        const onAbort = (): void => resolve();
        signal.addEventListener('abort', onAbort, { once: true });
        settles.push(() => (signal.removeEventListener('abort', onAbort), resolve()));
      }),
    });
    try {
      await withQueue(reconcile, async (queue) => {
        for (let i = 0; i < 20; i++) queue.add(`k${i}`);
        await waitUntil(() => settles.length === 20, 'every key to be settling');
        for (const settle of settles) settle();
      });
      await sleep(10); // warnings are emitted on the next tick
      assert.deepEqual(warnings.filter((n) => n === 'MaxListenersExceededWarning'), []);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('returns at once when run with an aborted signal', async () => {
    const { runs, reconcile } = counter();
    const queue = new WorkQueue('test', reconcile, { logger: silentLogger });
    queue.add('a');
    await queue.run(AbortSignal.abort());
    assert.equal(runs.size, 0);
  });
});
