// Splitting work into pieces a bounded consumer (a store transaction) accepts.

/** `items` in order, in pieces of at most `size` (the last may be shorter; none when there are no items). */
export const chunked = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};
