// A binary min-heap over an ordering function: the scheduler's way to find the best node without scanning them all.

/**
 * Array-backed binary heap. Invariant: for every index i > 0, `less(items[i], items[parent(i)])` is false,
 * so `peek()` is a minimum. The scheduler mutates the key of the top entry in place and calls
 * `topChanged()`; that is only sound because keys only grow during a batch (counts go up), so the entry
 * can only need to move down.
 */
export class Heap<T> {
  private readonly items: T[];
  private readonly less: (a: T, b: T) => boolean;

  /** Builds a heap from `items` in O(n). The array is taken over, not copied. */
  constructor(less: (a: T, b: T) => boolean, items: T[] = []) {
    this.less = less;
    this.items = items;
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p] as T;
      if (!this.less(item, parent)) break;
      items[i] = parent;
      i = p;
    }
    items[i] = item;
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  /** Restores the heap order after the top entry's key grew. */
  topChanged(): void {
    this.siftDown(0);
  }

  private siftDown(start: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[start];
    if (item === undefined) return;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.less(items[r] as T, items[l] as T)) c = r;
      const child = items[c] as T;
      if (!this.less(child, item)) break;
      items[i] = child;
      i = c;
    }
    items[i] = item;
  }
}
