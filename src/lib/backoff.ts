// Exponential backoff with jitter, for reconnects and requeues.

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** Source of randomness in [0,1); injected so tests are deterministic. */
  random?: () => number;
}

/** Delay before attempt `attempt` (0-based): base·2^attempt capped at max, with ±20% jitter. */
export const backoffDelay = (attempt: number, opts: BackoffOptions): number => {
  const raw = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(attempt, 30));
  const r = (opts.random ?? Math.random)();
  return Math.round(raw * (0.8 + 0.4 * r));
};
