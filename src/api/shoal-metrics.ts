// Shoal's Prometheus metrics, served at GET /metrics by every manager (admin bearer token required, like the API).
//
// Gauges of the cluster (nodes, tasks, services) are counted from this manager's cache at scrape time, so every
// manager reports the same values once its cache has caught up. Scheduling latency and the reconcile queue depth
// come from the control loops, which run on the leader only: followers report an empty histogram and a depth of 0.

import { TASK_STATES, type NodeStatusState } from '../core/index.js';
import type { Cache } from '../store/cache.js';
import { Registry, type Histogram, type Sample } from './metrics.js';
import { registerProcessMetrics } from './process-metrics.js';

/** Every node status, so each appears (at 0 when no node has it) and a series never vanishes. */
const NODE_STATUSES = ['unknown', 'ready', 'down', 'disconnected'] as const satisfies readonly NodeStatusState[];

/** Seconds: from a millisecond request to a task waiting minutes for a node. */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export interface MetricsSources {
  cache: Cache;
  /** Whether this manager leads now. */
  leading: () => boolean;
  /** Keys waiting in the service controller's work queue (0 while not leading). */
  queueDepth: () => number;
  /** Stops the process probes (event-loop delay, GC pauses) when the manager closes. */
  signal: AbortSignal;
}

/** Counts of `values` in `items`, one sample per value (zeros included), labelled `label`. */
const countBy = <T>(items: readonly T[], label: string, values: readonly string[], of: (item: T) => string): Sample[] => {
  const counts = new Map<string, number>(values.map((v) => [v, 0]));
  for (const i of items) counts.set(of(i), (counts.get(of(i)) ?? 0) + 1);
  return [...counts].map(([v, n]) => ({ labels: { [label]: v }, value: n }));
};

export class ShoalMetrics {
  private readonly registry = new Registry();
  private readonly apiLatency: Histogram;
  private readonly schedulingLatency: Histogram;
  private readonly admissionLatency: Histogram;

  constructor(src: MetricsSources) {
    const r = this.registry;
    r.gauge('shoal_nodes', 'Nodes by status.', () => countBy(src.cache.list('node'), 'status', NODE_STATUSES, (n) => n.status.state));
    r.gauge('shoal_tasks', 'Tasks by current state (the agent-reported status, dead tasks kept as history included).', () =>
      countBy(src.cache.list('task'), 'state', TASK_STATES, (t) => t.status.state),
    );
    r.gauge('shoal_services', 'Services.', () => src.cache.count('service'));
    r.gauge('shoal_leader', '1 when this manager leads the cluster, else 0.', () => (src.leading() ? 1 : 0));
    r.gauge('shoal_reconcile_queue_depth', "Services waiting in the service controller's work queue (leader only).", () => src.queueDepth());
    this.schedulingLatency = r.histogram('shoal_scheduling_latency_seconds', 'Time from a task becoming pending to its assignment to a node (leader only).', {
      buckets: LATENCY_BUCKETS,
    });
    this.admissionLatency = r.histogram('shoal_admission_duration_seconds', 'Time to check one service write against the active policies.', {
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.05],
    });
    this.apiLatency = r.histogram('shoal_api_request_duration_seconds', 'API request durations (streams: until they end), by method, route pattern and status code.', {
      buckets: LATENCY_BUCKETS,
      labelNames: ['method', 'route', 'code'],
    });
    registerProcessMetrics(r, src.signal);
  }

  observeRequest(method: string, route: string, code: number, seconds: number): void {
    this.apiLatency.observe(seconds, { method, route, code: String(code) });
  }

  observeAdmission(seconds: number): void {
    this.admissionLatency.observe(seconds);
  }

  /** A task waited this long (ms) between becoming pending and being assigned. */
  observeSchedulingWait(ms: number): void {
    this.schedulingLatency.observe(Math.max(0, ms) / 1000);
  }

  render(): string {
    return this.registry.render();
  }
}
