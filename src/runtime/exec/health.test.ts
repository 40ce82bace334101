// The exec runtime's health rules (Docker's): what a check means, how results add up, how a check is run.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initialRecord, judge, probeOf, runProbe, type HealthRecord } from './health.js';

const timings = { intervalMs: 0, timeoutMs: 0, retries: 0, startPeriodMs: 0 };
const pass = (at: number): { exitCode: number; output: string; at: number } => ({ exitCode: 0, output: 'ok', at });
const fail = (at: number): { exitCode: number; output: string; at: number } => ({ exitCode: 1, output: 'bad', at });

/** The statuses after each result in turn, from a container started at 0. */
const run = (results: { exitCode: number; output: string; at: number }[], probe: { retries: number; startPeriodMs: number }): HealthRecord['status'][] => {
  let rec = initialRecord(0);
  return results.map((r) => (rec = judge(rec, r, probe)).status);
};

describe('exec health checks', () => {
  it('reads CMD as argv and CMD-SHELL through /bin/sh, zeros as Docker defaults; NONE, [] and no check are none', () => {
    assert.deepEqual(probeOf({ test: ['CMD', 'curl', '-f', 'x'], ...timings }), { argv: ['curl', '-f', 'x'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 });
    assert.deepEqual(probeOf({ test: ['CMD-SHELL', 'test -f a'], intervalMs: 200, timeoutMs: 100, retries: 1, startPeriodMs: 5 })?.argv, ['/bin/sh', '-c', 'test -f a']);
    assert.equal(probeOf({ test: ['NONE'], ...timings }), undefined);
    assert.equal(probeOf({ test: [], ...timings }), undefined);
    assert.equal(probeOf(undefined), undefined);
  });

  it('is unhealthy after `retries` failures in a row; a pass resets the count and makes it healthy again', () => {
    const p = { retries: 2, startPeriodMs: 0 };
    assert.deepEqual(run([fail(1), fail(2)], p), ['starting', 'unhealthy']);
    assert.deepEqual(run([pass(1), fail(2), pass(3), fail(4), fail(5), pass(6)], p), ['healthy', 'healthy', 'healthy', 'healthy', 'unhealthy', 'healthy']);
  });

  it('does not count failures in the start period unless a check passed before', () => {
    const p = { retries: 1, startPeriodMs: 100 };
    assert.deepEqual(run([fail(10), fail(99), fail(100)], p), ['starting', 'starting', 'unhealthy']);
    assert.deepEqual(run([pass(10), fail(20)], p), ['healthy', 'unhealthy']);
  });

  it('runs a check with its environment and directory, keeps its output, and kills it at the timeout', async () => {
    const signal = new AbortController().signal;
    const probe = { intervalMs: 1, timeoutMs: 5000, retries: 1, startPeriodMs: 0 };
    const ok = await runProbe({ ...probe, argv: ['/bin/sh', '-c', 'echo "$WHO in $(pwd)"; echo err >&2'] }, { env: { WHO: 'me', PATH: '/usr/bin:/bin' }, cwd: '/', signal });
    assert.deepEqual([ok.exitCode, ok.output], [0, 'me in /\nerr\n']);
    const t0 = Date.now();
    const hung = await runProbe({ ...probe, timeoutMs: 200, argv: ['/bin/sh', '-c', 'sleep 20 & sleep 20'] }, { env: { PATH: '/usr/bin:/bin' }, cwd: '/', signal });
    assert.ok(Date.now() - t0 < 3000, 'the check and what it started were killed at the timeout');
    assert.equal(hung.exitCode, -1);
    assert.match(hung.output, /exceeded its timeout \(200ms\)/);
    const missing = await runProbe({ ...probe, argv: ['/no/such/check'] }, { env: {}, cwd: '/', signal });
    assert.equal(missing.exitCode, -1);
    assert.match(missing.output, /cannot run the health check/);
  });
});
