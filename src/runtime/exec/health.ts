// Health checks of the exec runtime: the check as a host command (Docker's rules for timings, retries and the start
// period), its record in the container's directory, and one monitor per running container that runs it.
//
// The record (health.json) survives the runtime: a later instance reports it and resumes checking (a listing adopts
// the containers it finds). Within one process at most one monitor runs per container, whichever instance started it;
// one process at a time serves a data dir (the daemon's pid file), so that is one monitor per container.

import { spawn } from 'node:child_process';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { HealthCheck } from '../../core/index.js';
import { sleep } from '../../lib/abort.js';
import type { HealthStatus } from '../runtime.js';
import { signalPid } from './proc.js';

/** A check ready to run: the argv and the timings with Docker's defaults in place of zeros. */
export interface Probe {
  argv: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
}

/** What health.json holds. */
export interface HealthRecord {
  status: HealthStatus;
  /** Consecutive failures that counted (not those in the start period before a first pass). */
  failingStreak: number;
  /** Output of the last check. */
  output: string;
  /** Epoch ms the container started: the start period runs from here. */
  startedAt: number;
}

export interface ProbeResult {
  exitCode: number;
  output: string;
  /** Epoch ms the check began. */
  at: number;
}

/** Docker keeps the first 4 KiB of a check's output. */
const OUTPUT_MAX = 4096;
const DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, retries: 3 };

/** The check to run, or undefined when there is none: absent, ['NONE'], or an empty test (there is no image to inherit one from). */
export const probeOf = (h: HealthCheck | undefined): Probe | undefined => {
  const [kind, ...rest] = h?.test ?? [];
  if (!h || (kind !== 'CMD' && kind !== 'CMD-SHELL') || rest.length === 0) return undefined;
  return {
    argv: kind === 'CMD' ? rest : ['/bin/sh', '-c', rest.join(' ')],
    intervalMs: h.intervalMs || DEFAULTS.intervalMs,
    timeoutMs: h.timeoutMs || DEFAULTS.timeoutMs,
    retries: h.retries || DEFAULTS.retries,
    startPeriodMs: h.startPeriodMs,
  };
};

export const initialRecord = (startedAt: number): HealthRecord => ({ status: 'starting', failingStreak: 0, output: '', startedAt });

/**
 * The record after one check, as Docker judges: a pass makes the container healthy and clears the streak; a failure
 * counts unless the container never passed and is still in its start period; `retries` counted failures in a row
 * make it unhealthy. Later passes make it healthy again.
 */
export const judge = (rec: HealthRecord, result: ProbeResult, probe: Pick<Probe, 'retries' | 'startPeriodMs'>): HealthRecord => {
  const output = result.output;
  if (result.exitCode === 0) return { ...rec, status: 'healthy', failingStreak: 0, output };
  if (rec.status === 'starting' && result.at - rec.startedAt < probe.startPeriodMs) return { ...rec, output };
  const failingStreak = rec.failingStreak + 1;
  return { ...rec, failingStreak, status: failingStreak >= probe.retries ? 'unhealthy' : rec.status, output };
};

export const readHealth = async (path: string): Promise<HealthRecord | undefined> => {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as HealthRecord;
  } catch {
    return undefined;
  }
};

/** Written whole, then renamed: a reader sees the old record or the new one. */
export const writeHealth = async (path: string, rec: HealthRecord): Promise<void> => {
  await writeFile(`${path}.tmp`, JSON.stringify(rec));
  await rename(`${path}.tmp`, path);
};

/**
 * Runs the check once, in its own process group (so a timeout or an abort kills whatever it started), with stdout
 * and stderr together as the output. A check that cannot be spawned or times out is a failure, as in Docker.
 */
export const runProbe = (probe: Probe, opts: { env: Record<string, string>; cwd: string; signal: AbortSignal }): Promise<ProbeResult> =>
  new Promise((resolve) => {
    const at = Date.now();
    const [program = '', ...args] = probe.argv;
    const chunks: Buffer[] = [];
    let size = 0;
    const keep = (c: Buffer): void => {
      if (size < OUTPUT_MAX) chunks.push(c.subarray(0, OUTPUT_MAX - size));
      size += c.length;
    };
    let timedOut = false;
    const child = spawn(program, args, { env: opts.env, cwd: opts.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const kill = (): void => {
      if (child.pid !== undefined) signalPid(-child.pid, 'SIGKILL');
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, probe.timeoutMs);
    opts.signal.addEventListener('abort', kill, { once: true });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const done = (): void => {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', kill);
    };
    child.once('error', (e) => {
      done();
      resolve({ exitCode: -1, output: `cannot run the health check: ${e.message}`, at });
    });
    child.once('close', (code) => {
      done();
      // A check killed by a signal (code null) failed too.
      if (timedOut) resolve({ exitCode: -1, output: `health check exceeded its timeout (${probe.timeoutMs}ms)`, at });
      else resolve({ exitCode: code ?? -1, output: Buffer.concat(chunks).toString('utf8'), at });
    });
  });

export interface MonitorTarget {
  /** The container's health.json. */
  file: string;
  probe: Probe;
  env: Record<string, string>;
  cwd: string;
  /** Whether the container's process still runs; checks stop when it does not. */
  running: () => Promise<boolean>;
  /** Called when the status changed. */
  changed: () => void;
}

/** Container directory → the abort of its monitor, across every runtime instance of this process. */
const monitors = new Map<string, AbortController>();

/** Ends the checks of a container (stopped or removed: an exec container never runs again). */
export const unmonitor = (key: string): void => monitors.get(key)?.abort();

/**
 * Starts checking a container unless a monitor of this process already does, until `signal` (the runtime instance
 * closing) aborts or the container stops; checks run `interval` after the previous one ended, as Docker's do.
 */
export const monitor = (key: string, target: MonitorTarget, signal: AbortSignal): void => {
  if (monitors.has(key) || signal.aborted) return;
  const ctl = new AbortController();
  monitors.set(key, ctl);
  const stop = AbortSignal.any([ctl.signal, signal]);
  void checkLoop(target, stop).finally(() => {
    if (monitors.get(key) === ctl) monitors.delete(key);
  });
};

const checkLoop = async (t: MonitorTarget, signal: AbortSignal): Promise<void> => {
  try {
    while (!signal.aborted) {
      await sleep(t.probe.intervalMs, signal);
      if (!(await t.running())) return;
      const result = await runProbe(t.probe, { env: t.env, cwd: t.cwd, signal });
      // A check that outlived its container (stopped, removed meanwhile) says nothing about it.
      if (signal.aborted || !(await t.running())) return;
      const rec = (await readHealth(t.file)) ?? initialRecord(result.at);
      const next = judge(rec, result, t.probe);
      await writeHealth(t.file, next);
      if (next.status !== rec.status) t.changed();
    }
  } catch {
    // Aborted (the runtime closed), or the container's directory went away: either way checking ends here.
  }
};
