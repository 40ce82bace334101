// Query parameters naming a point in time (`since`, `until` of events and logs), as `docker events` takes them.

import { invalid, parseDuration } from '../core/index.js';

/**
 * Epoch ms of a time given as RFC 3339 (`2024-05-01T10:00:00Z`), Unix seconds (`1714557600`, `1714557600.5`) or a
 * duration before `nowMs` (`10m`, `1h30m`); undefined when absent or empty.
 */
export const parseTimeQuery = (text: string | null, nowMs: number, field: string): number | undefined => {
  if (text === null || text.trim() === '') return undefined;
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  if (/^\d+(\.\d+)?(ms|s|m|h)/.test(t)) return nowMs - parseDuration(t, field);
  const ms = /^\d{4}-\d{2}-\d{2}/.test(t) ? Date.parse(t) : NaN;
  if (Number.isNaN(ms)) throw invalid(field, `'${text}' is not a time: use RFC 3339 (2024-05-01T10:00:00Z), Unix seconds, or a duration before now (10m)`);
  return ms;
};
