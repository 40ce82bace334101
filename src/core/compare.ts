// Ordering text by its UTF-16 code units: ids, names made of [a-z0-9-], and ISO 8601 times in UTC, whose code-unit order
// is their order. Faster than localeCompare and the same everywhere (no locale).

/** Negative, zero or positive as `a` sorts before, with or after `b`. */
export const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
