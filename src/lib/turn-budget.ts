// A budget of event-loop time that background work shares, per turn of the loop, so that what comes in over the
// network (API requests above all) never waits behind more than one budget of it.
//
// A manager's background loops (the cache applying commits, controllers reconciling, the dispatcher sending and
// applying reports) each yielded on their own schedule, so in one turn each of them could run its own slice after
// the others: bench/scale measured turns of 100-200 ms while converging, and every API request waited that long for
// the loop to come round to its socket. Here they take turns within one budget: a loop asks for a slot before each
// unit of work; slots are granted at once while the current window lasts, and after that, first come first served,
// from the next turn on, once the loop has polled for I/O in between.

export class TurnBudget {
  private windowStart = 0;
  /** A window is open: its turn has not ended (the immediate that ends it is pending). */
  private open = false;
  /** Units waiting for a later turn: those that asked to go first, then the others, each first come first served. */
  private readonly waiting = { first: [] as (() => void)[], fair: [] as (() => void)[] };
  private granting = false;

  /**
   * @param budgetMs how long background work may run per window; a unit granted within it runs to its end, so a
   *   window overruns by the units granted last.
   */
  constructor(
    readonly budgetMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(budgetMs > 0)) throw new RangeError(`turn budget: budgetMs must be positive, got ${budgetMs}`);
  }

  /** Units waiting for a later turn. */
  get waiters(): number {
    return this.waiting.first.length + this.waiting.fair.length;
  }

  /** This window's time is used up: a loop running units back to back should `await slot()` before the next one. */
  spent(): boolean {
    return !this.open || this.now() - this.windowStart >= this.budgetMs;
  }

  /**
   * Resolves when the caller may run one unit of work: at once while this turn's window lasts, else in a later turn.
   * `first`: ahead of the waiting units that did not ask so (work the others wait for).
   */
  slot(lane: 'first' | 'fair' = 'fair'): Promise<void> {
    if (!this.open) {
      // Nothing ran in this turn yet: open its window. It ends after the next check phase of the loop, which follows
      // a poll for I/O (a window opened in a check phase ends in the next one; opened elsewhere, in the one after).
      this.openWindow(false);
      return Promise.resolve();
    }
    if (this.waiters === 0 && this.now() - this.windowStart < this.budgetMs) return Promise.resolve();
    return new Promise((resolve) => this.waiting[lane].push(resolve));
  }

  private openWindow(inCheckPhase: boolean): void {
    this.open = true;
    this.windowStart = this.now();
    // Immediates queued in a check phase run in the next one; queued in any other phase, in this turn's own (before
    // the next poll), so those wait for one more.
    if (inCheckPhase) setImmediate(() => this.endWindow());
    else setImmediate(() => setImmediate(() => this.endWindow()));
  }

  private endWindow(): void {
    this.open = false;
    if (this.waiters === 0) return;
    this.openWindow(true);
    this.grant();
  }

  /**
   * Lets waiters run one at a time while the window lasts: each grant queues the next check behind the granted unit's
   * continuation (a microtask queued before it), so the check sees the time that unit took.
   */
  private grant(): void {
    if (this.granting) return;
    this.granting = true;
    const next = (): void => {
      const resolve = this.now() - this.windowStart < this.budgetMs ? (this.waiting.first.shift() ?? this.waiting.fair.shift()) : undefined;
      if (resolve === undefined) {
        this.granting = false;
        return;
      }
      resolve();
      queueMicrotask(next);
    };
    next();
  }
}

/** 8 ms: a request waits for at most about this much background work, plus one unit, per turn. */
const BACKGROUND_BUDGET_MS = 8;

/** The budget that a process's background loops share (one event loop, one budget). */
export const background = new TurnBudget(BACKGROUND_BUDGET_MS);
