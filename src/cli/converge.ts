// Waiting for a service to converge (or to be gone), as `service create`, `scale` and `rm` do, with the reasons
// a service cannot converge: a rejected task, a slot whose restarts gave up, no suitable node, repeated failures.

import type { Service, UpdateStatus } from '../core/index.js';
import type { TaskListItem } from '../protocol/index.js';
import type { ShoalClient } from './client.js';

export interface Progress {
  desired: number;
  running: number;
}

export class ConvergeError extends Error {
  override readonly name = 'ConvergeError';
}

const TERMINAL = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned']);
const live = (t: TaskListItem): boolean => t.desiredState === 'running' || t.desiredState === 'ready';

export interface ConvergeOptions {
  /** Running tasks wanted; 'global' means every live task (one per eligible node) running. */
  desired: number | 'global';
  onProgress?: (p: Progress) => void;
  /** Give up with an error after this long (default 5 minutes). */
  timeoutMs?: number;
  /** A problem (gave up, unschedulable) must persist this long before it counts, so a replacement can land first. */
  settleMs?: number;
  /** Failed tasks (since the wait began) after which the service is declared unable to converge (default 3). */
  maxFailures?: number;
  signal?: AbortSignal;
}

/** Why the service cannot converge given the tasks now, or undefined. `since` remembers when each problem was first seen. */
const problem = (
  tasks: TaskListItem[],
  since: Map<string, number>,
  now: number,
  opts: Required<Pick<ConvergeOptions, 'settleMs' | 'maxFailures'>> & { startedAt: number },
  failed: Set<string>,
): string | undefined => {
  const seen = new Set<string>();
  const persisted = (key: string): boolean => {
    seen.add(key);
    const first = since.get(key) ?? now;
    since.set(key, first);
    return now - first >= opts.settleMs;
  };
  let result: string | undefined;
  for (const t of tasks) {
    const name = `${t.serviceName}.${t.slot}`;
    // Failures of tasks made before this wait (history) do not count against it.
    const recent = Date.parse(t.createdAt) >= opts.startedAt;
    if (t.state === 'failed' && recent) failed.add(t.id);
    // A rejected task is replaced per the restart policy, but its node said it can never run: report at once.
    if (t.state === 'rejected' && recent) result ??= `task ${name} was rejected: ${t.error || t.message}`;
    if (!live(t)) continue;
    if (TERMINAL.has(t.state) && persisted(`gave-up:${t.id}`)) result ??= `task ${name} ${t.state} and its restart policy gave up${t.error ? `: ${t.error}` : ''}`;
    else if (t.state === 'pending' && /no suitable node/.test(t.message) && persisted(`pending:${t.id}`)) result ??= `task ${name} cannot be scheduled: ${t.message}`;
  }
  for (const k of [...since.keys()]) if (!seen.has(k)) since.delete(k);
  if (result === undefined && failed.size >= opts.maxFailures) {
    const last = tasks.find((t) => t.state === 'failed');
    result = `${failed.size} tasks failed${last?.error ? `; last error: ${last.error}` : ''}`;
  }
  return result;
};

/** Waits until `desired` live tasks run and no other live task remains; throws ConvergeError with the reason it cannot. */
export const waitConverged = async (client: ShoalClient, ref: string, opts: ConvergeOptions): Promise<void> => {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new ConvergeError(`service ${ref} did not converge within ${opts.timeoutMs ?? 300_000}ms`)), opts.timeoutMs ?? 300_000);
  const onAbort = (): void => ctl.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const since = new Map<string, number>();
  const failed = new Set<string>();
  // One second of slack for the clock difference between this client and the manager that stamps createdAt.
  const limits = { settleMs: opts.settleMs ?? 1500, maxFailures: opts.maxFailures ?? 3, startedAt: Date.now() - 1000 };
  let last = '';
  let latest: TaskListItem[] = [];
  let emptySince: number | undefined;
  // Re-evaluate now and then even without changes, so a problem that persists is noticed.
  const tick = setInterval(() => evaluate(), 250);
  let settle: (() => void) | undefined;
  let fail: ((e: Error) => void) | undefined;
  const evaluate = (): void => {
    const running = latest.filter((t) => live(t) && t.state === 'running').length;
    const liveCount = latest.filter(live).length;
    const desired = opts.desired === 'global' ? liveCount : opts.desired;
    const p = { desired, running };
    const key = `${running}/${desired}`;
    if (key !== last) opts.onProgress?.(p);
    last = key;
    // A global service has no tasks until the orchestrator has run; zero live tasks is not yet converged.
    if (running === desired && liveCount === desired && (opts.desired !== 'global' || liveCount > 0)) return settle?.();
    let why = problem(latest, since, Date.now(), limits, failed);
    emptySince = opts.desired === 'global' && liveCount === 0 ? (emptySince ?? Date.now()) : undefined;
    if (why === undefined && emptySince !== undefined && Date.now() - emptySince >= 2 * limits.settleMs) {
      why = 'no node is eligible for this global service (all down, drained, or failing its constraints)';
    }
    if (why !== undefined) fail?.(new ConvergeError(why));
  };
  try {
    await new Promise<void>((resolve, reject) => {
      settle = resolve;
      fail = reject;
      ctl.signal.addEventListener('abort', () => reject(ctl.signal.reason as Error), { once: true });
      void (async () => {
        try {
          for await (const tasks of client.watchServiceTasks(ref, ctl.signal)) {
            latest = tasks;
            evaluate();
          }
          reject(new ConvergeError(`service ${ref} was removed while waiting for it`));
        } catch (e) {
          reject(ctl.signal.aborted ? (ctl.signal.reason as Error) : (e as Error));
        }
      })();
    });
  } finally {
    clearTimeout(timer);
    clearInterval(tick);
    opts.signal?.removeEventListener('abort', onAbort);
    ctl.abort();
  }
};

/** Waits until a removed service's last task is gone (its containers removed). */
export const waitRemoved = async (client: ShoalClient, ref: string, opts: { timeoutMs?: number; onProgress?: (remaining: number) => void } = {}): Promise<void> => {
  const signal = AbortSignal.timeout(opts.timeoutMs ?? 120_000);
  try {
    for await (const tasks of client.watchServiceTasks(ref, signal)) opts.onProgress?.(tasks.length);
  } catch (e) {
    if (signal.aborted) throw new ConvergeError(`the tasks of ${ref} were not all removed within ${opts.timeoutMs ?? 120_000}ms`);
    // The service and its tasks were already gone before we started watching.
    if ((e as { code?: string }).code === 'not_found') return;
    throw e;
  }
};

export interface UpdateProgress {
  /** Live tasks that run the current spec and are running. */
  updated: number;
  total: number;
  state: UpdateStatus['state'];
  message: string;
  /** Tasks of the current spec being brought up now (`web.3`). */
  replacing: string[];
  /** Tasks of the current spec that failed since the update began. */
  failures: number;
}

/**
 * Follows a service's rolling update (or rollback) until it ends: resolves when it completed as `expect`ed; throws a
 * ConvergeError saying why when it paused, or when an update ended rolled back (its failure action).
 */
export const waitUpdated = async (
  client: ShoalClient,
  ref: string,
  opts: { expect: 'update' | 'rollback'; onProgress?: (p: UpdateProgress) => void; timeoutMs?: number },
): Promise<Service> => {
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
  for (;;) {
    const s = await client.inspectService(ref);
    const st = s.updateStatus;
    const all = await client.serviceTasks(ref);
    const tasks = all.filter(live);
    const total = 'replicated' in s.spec.mode ? s.spec.mode.replicated.replicas : tasks.length;
    const updated = tasks.filter((t) => t.upToDate === true && t.state === 'running').length;
    const state = st?.state ?? 'completed';
    const replacing = tasks.filter((t) => t.upToDate === true && !TERMINAL.has(t.state) && t.state !== 'running').map((t) => `${t.serviceName}.${t.slot}`);
    const since = Date.parse(st?.startedAt ?? '') || 0;
    const failures = all.filter((t) => t.upToDate === true && (t.state === 'failed' || t.state === 'rejected') && Date.parse(t.createdAt) >= since).length;
    opts.onProgress?.({ updated, total, state, message: st?.message ?? '', replacing, failures });
    if (state === (opts.expect === 'update' ? 'completed' : 'rollback_completed')) return s;
    if (state === 'paused' || state === 'rollback_paused') throw new ConvergeError(st?.message ?? state);
    if (state === 'rollback_completed') throw new ConvergeError(`the update failed and was rolled back: ${st?.message ?? ''}`);
    if (Date.now() > deadline) throw new ConvergeError(`the ${opts.expect} of ${ref} did not finish within ${(opts.timeoutMs ?? 600_000) / 1000}s (${state}: ${updated}/${total} updated)`);
    await new Promise((r) => setTimeout(r, 250));
  }
};
