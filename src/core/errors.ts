// The error registry: every failure Shoal reports carries a stable code that maps to one HTTP status.

/** Stable error codes. Clients match on these, never on message text. */
export const ERROR_CODES = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  failed_precondition: 412,
  resource_exhausted: 429,
  unavailable: 503,
  deadline_exceeded: 504,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One field-level problem in a request: where (a dotted path) and why. */
export interface FieldViolation {
  field: string;
  reason: string;
}

/** The one error type of the domain; `api` maps it to HTTP via ERROR_CODES. */
export class ShoalError extends Error {
  readonly code: ErrorCode;
  readonly violations: FieldViolation[];

  constructor(code: ErrorCode, message: string, opts: { violations?: FieldViolation[]; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ShoalError';
    this.code = code;
    this.violations = opts.violations ?? [];
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code];
  }
}

export const isShoalError = (e: unknown, code?: ErrorCode): e is ShoalError =>
  e instanceof ShoalError && (code === undefined || e.code === code);

export const notFound = (what: string): ShoalError => new ShoalError('not_found', `${what} not found`);
export const invalid = (field: string, reason: string): ShoalError =>
  new ShoalError('invalid_argument', `invalid ${field}: ${reason}`, { violations: [{ field, reason }] });
