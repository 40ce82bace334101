// Slots: at most `size` holders at once; waiters are served first come, first served, those that are not background
// before those that are.

export class Slots {
  private held = 0;
  private readonly waiting: { first: (() => void)[]; background: (() => void)[] } = { first: [], background: [] };

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`slots: size must be a positive integer, got ${size}`);
  }

  /** Holders now, and waiters. */
  get load(): { held: number; waiting: number } {
    return { held: this.held, waiting: this.waiting.first.length + this.waiting.background.length };
  }

  /** Runs `fn` in a slot, waiting for one if all are held. */
  async run<T>(fn: () => Promise<T>, background = false): Promise<T> {
    if (this.held < this.size) this.held++;
    // A released slot is handed over to the waiter (held stays as it is), so no newcomer can take it first.
    else await new Promise<void>((resolve) => (background ? this.waiting.background : this.waiting.first).push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.first.shift() ?? this.waiting.background.shift();
      if (next) next();
      else this.held--;
    }
  }
}
