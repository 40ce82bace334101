// Parsing of human units on the command line and in specs: durations (5s, 1m30s) and sizes (512M, 1.5G).

import { invalid } from './errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go-style duration ("500ms", "5s", "1m30s", "0") into milliseconds. */
export const parseDuration = (text: string, field = 'duration'): number => {
  const t = text.trim();
  if (t === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] ?? ''] ?? 0);
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== t.length) throw invalid(field, `'${text}' is not a duration (e.g. 500ms, 5s, 1m30s)`);
  return Math.round(total);
};

export const formatDuration = (ms: number): string => {
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
};

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Parses a byte size like Docker does ("512m", "1.5G", "1024", "64KiB") into bytes. */
export const parseBytes = (text: string, field = 'size'): number => {
  // A unit letter may carry a "b" or "ib" suffix; a bare "b" means bytes. Nothing else ("1bb", "1ib") is a size.
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$/i.exec(text);
  if (!m) throw invalid(field, `'${text}' is not a size (e.g. 64M, 1.5G)`);
  return Math.round(Number(m[1]) * (SIZE_UNITS[(m[2] ?? '').toLowerCase()] ?? 1));
};

/** Parses a CPU count ("0.5", "2") into nano-CPUs. */
export const parseCpus = (text: string, field = 'cpus'): number => {
  const n = Number(text);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(text) || !Number.isFinite(n) || n < 0) {
    throw invalid(field, `'${text}' is not a CPU count (e.g. 0.5, 2)`);
  }
  return Math.round(n * 1e9);
};

export const formatBytes = (n: number): string => {
  for (const [u, f] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= f) return `${+(n / f).toFixed(2)}${u}`;
  }
  return `${n}B`;
};
