// The manager process's own health, as Prometheus metrics: how late its event loop runs, its garbage-collection pauses,
// resident memory and CPU time. A late event loop is what every API request and every node session waits behind, so
// these tell an operator (and bench/scale) whether slow answers come from the control plane's work or from pauses.

import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import type { Histogram, Registry } from './metrics.js';

/** How often the event-loop probe asks to be woken; its lateness is the delay every other callback saw too. */
const PROBE_MS = 20;

const DELAY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const GC_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Node's GC kinds (perf_hooks' NODE_PERFORMANCE_GC_*) under the names Prometheus' Node.js client uses. */
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * Registers the process metrics and starts their probes; both stop when `signal` aborts. The probe timer is unref'd,
 * so it never keeps the process alive.
 */
export const registerProcessMetrics = (r: Registry, signal: AbortSignal): void => {
  const delay = r.histogram('shoal_event_loop_delay_seconds', `How late the event loop ran a timer due every ${PROBE_MS} ms: the wait every request and session callback shares.`, {
    buckets: DELAY_BUCKETS,
  });
  const gc: Histogram = r.histogram('shoal_gc_pause_seconds', 'Garbage-collection pauses of the main thread, by kind.', { buckets: GC_BUCKETS, labelNames: ['kind'] });
  r.gauge('process_resident_memory_bytes', 'Resident memory of the manager process.', () => process.memoryUsage.rss());
  r.gauge('process_cpu_seconds_total', 'User and system CPU time of the manager process (all threads).', () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  });
  if (signal.aborted) return;

  let due = performance.now() + PROBE_MS;
  const probe = setInterval(() => {
    const now = performance.now();
    delay.observe(Math.max(0, now - due) / 1000);
    due = now + PROBE_MS;
  }, PROBE_MS);
  probe.unref();

  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gc.observe(e.duration / 1000, { kind: gcKind(e) });
  });
  observer.observe({ entryTypes: ['gc'] });

  signal.addEventListener(
    'abort',
    () => {
      clearInterval(probe);
      observer.disconnect();
    },
    { once: true },
  );
};

const gcKind = (e: PerformanceEntry): string => {
  const kind = (e as PerformanceEntry & { detail?: { kind?: number } | null }).detail?.kind;
  return (kind !== undefined && GC_KINDS[kind]) || 'other';
};
