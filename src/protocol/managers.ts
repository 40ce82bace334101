// Lists of manager addresses as the cluster sends them (a header, a welcome): parsed, compared, reordered. Shared
// by agents and CLI clients.

/** Addresses (HOST:PORT) from a header value or a message field: trimmed, blanks and repeats dropped, order kept. */
export const parseManagerList = (value: unknown): string[] => {
  const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : [];
  const out: string[] = [];
  for (const item of items) {
    const a = typeof item === 'string' ? item.trim() : '';
    if (a !== '' && !out.includes(a)) out.push(a);
  }
  return out;
};

/** `list` with `address` moved to the front when it is in it (the rest in their order); a copy either way. */
export const preferFirst = (list: readonly string[], address: string | undefined): string[] =>
  address !== undefined && list.includes(address) ? [address, ...list.filter((a) => a !== address)] : [...list];

export const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
