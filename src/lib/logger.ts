// A small structured logger: one JSON line per event, with a redaction pass so secrets never reach a log.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/** Field names whose values are always replaced before a line is written. */
const SECRET_KEYS = /token|secret|password|passphrase|authorization|credential|cookie|(api|private|access|signing|encryption)[-_]?key$/i;

/** Replaces secret-named fields at any depth (bounded, so a cyclic object cannot loop). */
export const redact = (fields: Record<string, unknown>, depth = 0): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_KEYS.test(k)) out[k] = '[redacted]';
    else if (v instanceof Error) out[k] = v.message;
    else if (Array.isArray(v)) out[k] = depth >= 5 ? '[…]' : v.map((x: unknown) => (isPlain(x) ? redact(x, depth + 1) : x));
    else if (isPlain(v)) out[k] = depth >= 5 ? '[…]' : redact(v, depth + 1);
    else out[k] = v;
  }
  return out;
};

const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;

export const createLogger = (opts: { level?: Level; write?: (line: string) => void; base?: Record<string, unknown> } = {}): Logger => {
  const min = LEVELS[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const base = opts.base ?? {};
  const log = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (LEVELS[level] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...redact({ ...base, ...fields }) }));
  };
  return {
    debug: (m, f) => log('debug', m, f),
    info: (m, f) => log('info', m, f),
    warn: (m, f) => log('warn', m, f),
    error: (m, f) => log('error', m, f),
    child: (fields) => createLogger({ ...opts, base: { ...base, ...fields } }),
  };
};

export const silentLogger: Logger = createLogger({ level: 'error', write: () => undefined });
