// Output for humans and machines: aligned tables, JSON, and relative times. Only the CLI prints.

/** Prints rows as a table with a header, columns separated by at least three spaces (like docker). */
export const printTable = (header: string[], rows: string[][]): void => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
      .join('')
      .trimEnd();
  process.stdout.write([line(header), ...rows.map(line)].join('\n') + '\n');
};

export const printJson = (value: unknown): void => {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
};

export type Format = 'table' | 'json';

export const parseFormat = (text: string | undefined): Format => {
  if (text === undefined || text === 'table') return 'table';
  if (text === 'json') return 'json';
  throw new Error(`invalid --format '${text}': use 'table' or 'json'`);
};

/** "5 seconds ago", "3 minutes ago": how docker shows times. */
export const ago = (iso: string, now = Date.now()): string => {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'} ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'} ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'} ago`;
  return `${Math.round(h / 24)} days ago`;
};

export const shortId = (id: string): string => id.slice(0, 12);
