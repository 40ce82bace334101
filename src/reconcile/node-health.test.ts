// Tests of node health over a real SQLite store and cache, with the heartbeat record given as the dispatcher would
// keep it and a clock the test moves: a node goes down after missed heartbeats, or after one period once its session
// broke and it did not reconnect.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import type { Node } from '../core/index.js';
import { newId } from '../lib/ids.js';
import { silentLogger } from '../lib/logger.js';
import { Cache } from '../store/cache.js';
import { sampleNode } from '../store/contract.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { ControllerContext } from './context.js';
import { NodeHealth, type HeartbeatSource } from './node-health.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The default heartbeat period (no cluster object in this store): down after 5 missed beats, 2,500 ms. */
const PERIOD = 500;

class Sessions implements HeartbeatSource {
  readonly beats = new Map<string, number>();
  readonly drops = new Map<string, number>();
  lastHeartbeat(id: string): number | undefined {
    return this.beats.get(id);
  }
  leftCleanly(): boolean {
    return false;
  }
  droppedAt(id: string): number | undefined {
    return this.drops.get(id);
  }
}

/** A store holding nodes `ids`, its cache, and a controller context on `clock`. */
const setup = async (ids: string[], clock: () => number, signal: AbortSignal): Promise<{ store: SqliteStore; cache: Cache; ctx: ControllerContext }> => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-health-'));
  dirs.push(dir);
  const store = SqliteStore.open(join(dir, 'store.db'));
  await store.commit(ids.map((id) => ({ op: 'create', object: sampleNode(id) })));
  const cache = await Cache.start(store, { signal });
  return { store, cache, ctx: { store, cache, clock: { now: clock }, logger: silentLogger, newId: () => newId() } };
};

it('finds a node whose session broke down after one heartbeat period, and a silent one after the missed beats', async () => {
  const ctl = new AbortController();
  const t0 = Date.now();
  let now = t0;
  const { store, cache, ctx } = await setup(['broke', 'silent', 'back'], () => now, ctl.signal);
  try {
    const sessions = new Sessions();
    // All three were heard from at t0. 'broke' lost its session then; 'back' lost it too but connected again.
    for (const id of ['broke', 'silent', 'back']) sessions.beats.set(id, t0);
    sessions.drops.set('broke', t0);
    const health = new NodeHealth(ctx, sessions);
    void health.run(ctl.signal);
    const states = (): Record<string, string> => Object.fromEntries(cache.list('node').map((n: Node) => [n.id, `${n.status.state}: ${n.status.message}`]));
    /** Moves the clock and waits (bounded) until `id` has `state`; returns every node's state at that revision. */
    const at = async (ms: number, id: string, state: string): Promise<Record<string, string>> => {
      now = t0 + ms;
      health.poke();
      for (let i = 0; i < 100 && cache.get('node', id)?.status.state !== state; i++) await new Promise((r) => setTimeout(r, 20));
      return states();
    };

    const early = await at(PERIOD - 100, 'broke', 'down');
    assert.match(early.broke ?? '', /^ready/, 'within one period a broken session may still reopen');
    const dropped = await at(PERIOD + 100, 'broke', 'down');
    assert.match(dropped.broke ?? '', /^down: session lost 600ms ago and not reopened/);
    assert.match(dropped.silent ?? '', /^ready/, 'a node that only missed one heartbeat is not down');
    assert.match(dropped.back ?? '', /^ready/, 'a node that reconnected is not down');
    const stalled = await at(4 * PERIOD + 100, 'silent', 'down');
    assert.match(stalled.silent ?? '', /^ready/, 'a node silent for four periods (a stalled agent) is not down yet');
    const silent = await at(5 * PERIOD + 100, 'silent', 'down');
    assert.match(silent.silent ?? '', /^down: no heartbeat for 2500ms/);
  } finally {
    ctl.abort();
    await store.close();
  }
});

it('checks a broken session the moment its period ends, not at the next periodic check', async () => {
  const ctl = new AbortController();
  const { store, cache, ctx } = await setup(['broke'], () => Date.now(), ctl.signal);
  try {
    const sessions = new Sessions();
    const started = Date.now();
    sessions.beats.set('broke', started);
    // Due 130 ms from now: the periodic checks (every period / 4 = 125 ms) would find it only at 250 ms.
    sessions.drops.set('broke', started - PERIOD + 130);
    void new NodeHealth(ctx, sessions).run(ctl.signal);
    while (cache.get('node', 'broke')?.status.state !== 'down' && Date.now() - started < 2000) await new Promise((r) => setTimeout(r, 5));
    const tookMs = Date.now() - started;
    assert.equal(cache.get('node', 'broke')?.status.state, 'down');
    assert.ok(tookMs >= 130 && tookMs < 240, `found down ${tookMs} ms after the start, where its period ended at 130 ms`);
  } finally {
    ctl.abort();
    await store.close();
  }
});
