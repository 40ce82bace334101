// HTTP plumbing for the API: a tiny path router, JSON bodies with a size cap, and the one error → HTTP mapping.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { ZodError } from 'zod';
import { ERROR_CODES, ShoalError, type AuditEvent, type FieldViolation } from '../core/index.js';
import type { Permission, Principal } from '../policy/authorize.js';
import type { ErrorBody } from '../protocol/index.js';

/** Largest request body accepted, in bytes: specs are small, and a cap keeps a client from exhausting memory. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  /** Who is asking (anonymous on public routes). */
  who: Principal;
  /** What the audit log records of this request; handlers add the target and the rule that decided. */
  audit: AuditNote;
  /** The route permission that allowed the request (of `permission` and `or`). */
  allowedBy?: Permission;
}

export interface AuditNote {
  /** `service/latte`, `user/dev-a`, …; the route's path parameters when a handler does not say. */
  target?: string;
  project?: string;
  /** The user, when the request names one the credential does not (login). */
  user?: string;
  /** The rules that decided, in order (grant, then policies). */
  rules: string[];
  warnings: string[];
  audits: string[];
  /**
   * For a write: the request's entry as allowed, committed in the same transaction as its first write (the log never
   * lacks a write, and the caller waits for one commit, not two). `committed` is set once it is.
   */
  withWrite?: { event: () => AuditEvent; committed: boolean };
}

export type Handler = (ctx: RequestContext) => Promise<void>;

/**
 * Who may call a route:
 * - public: anyone, without credentials (the reason says why);
 * - signedIn: any authenticated user (the handler limits them to their own objects);
 * - permission: a user with the permission. For a project permission, `project` finds the project of the object the
 *   request names; without it the route needs the permission in some project and the handler checks the project of
 *   each object (listings filter, creates check the project in the body).
 */
export type RouteAccess =
  | { public: string }
  | { signedIn: true }
  | { permission: Permission; project?: (c: Pick<RequestContext, 'params'>) => string }
  /** Either permission; the handler sees which one allowed (`allowedBy`) and limits the second to what it covers. */
  | { permission: Permission; or: Permission; project: (c: Pick<RequestContext, 'params'>) => string };

export interface RouteInfo {
  method: string;
  pattern: string;
  access: RouteAccess;
}

interface Route extends RouteInfo {
  parts: string[];
  handler: Handler;
}

/** The route pattern (`/v1/services/:ref`) of a request no route takes, for metrics. */
export const UNMATCHED_ROUTE = '(unmatched)';

/** Routes by method and path pattern (`/v1/services/:id`); `match` returns the handler and the path params. */
export class Router {
  private readonly routes: Route[] = [];

  /** Every route declares who may call it: a route without a rule cannot be added. */
  add(method: string, pattern: string, access: RouteAccess, handler: Handler): this {
    this.routes.push({ method, pattern, access, parts: pattern.split('/').filter(Boolean), handler });
    return this;
  }

  /** Every route with its access rule (the authorization table the docs and tests check). */
  list(): RouteInfo[] {
    return this.routes.map(({ method, pattern, access }) => ({ method, pattern, access }));
  }

  /** The handler for a request and its route pattern, or the reason there is none (404 for unknown paths, 405 for known paths). */
  match(method: string, path: string): { handler: Handler; params: Record<string, string>; pattern: string; access: RouteAccess } | { error: ShoalError } {
    const parts = path.split('/').filter(Boolean);
    let pathKnown = false;
    for (const r of this.routes) {
      if (r.parts.length !== parts.length) continue;
      const params: Record<string, string> = {};
      const ok = r.parts.every((p, i) => {
        const v = parts[i] ?? '';
        if (p.startsWith(':')) {
          params[p.slice(1)] = decodeURIComponent(v);
          return true;
        }
        return p === v;
      });
      if (!ok) continue;
      pathKnown = true;
      if (r.method === method) return { handler: r.handler, params, pattern: r.pattern, access: r.access };
    }
    return {
      error: pathKnown
        ? new ShoalError('invalid_argument', `method ${method} is not allowed on ${path}`)
        : new ShoalError('not_found', `no API route ${method} ${path}`),
    };
  }
}

/** A boolean query parameter: present as `1` or `true`. */
export const queryFlag = (query: URLSearchParams, name: string): boolean => query.get(name) === '1' || query.get(name) === 'true';

/** Reads and parses a JSON body; a body that is too large or not JSON is an invalid_argument naming why. */
export const readJson = async (req: IncomingMessage): Promise<unknown> => {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY_BYTES) throw new ShoalError('invalid_argument', `request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new ShoalError('invalid_argument', 'request body is empty; expected a JSON object', { violations: [{ field: 'body', reason: 'empty' }] });
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ShoalError('invalid_argument', `request body is not valid JSON: ${(e as Error).message}`, { violations: [{ field: 'body', reason: 'not JSON' }] });
  }
};

/** Turns a zod failure into the domain's invalid_argument with one violation per field. */
export const fromZod = (e: ZodError, what: string): ShoalError => {
  const violations: FieldViolation[] = e.issues.map((i) => {
    const field = i.path.map(String).join('.') || '(root)';
    const reason = i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.map((k) => `'${k}'`).join(', ')}` : i.message;
    return { field, reason };
  });
  const summary = violations.map((v) => `${v.field}: ${v.reason}`).join('; ');
  return new ShoalError('invalid_argument', `invalid ${what}: ${summary}`, { violations });
};

export const sendJson = (res: ServerResponse, status: number, body: unknown): void => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

/** The single place that maps any thrown error to an HTTP response. Unknown errors are internal and not detailed. */
export const sendError = (res: ServerResponse, e: unknown, onInternal: (e: unknown) => void): void => {
  let err: ShoalError;
  if (e instanceof ShoalError) err = e;
  else if (e instanceof ZodError) err = fromZod(e, 'request');
  else {
    onInternal(e);
    err = new ShoalError('internal', 'internal error; see the manager log');
  }
  const body: ErrorBody = { error: { code: err.code, message: err.message, violations: err.violations } };
  if (res.headersSent) {
    // A streaming response already started: report the error as the last line and end it.
    res.end(JSON.stringify(body) + '\n');
    return;
  }
  const status = err.code === 'invalid_argument' && /method .* is not allowed/.test(err.message) ? 405 : ERROR_CODES[err.code];
  sendJson(res, status, body);
};

/** Defers `res.end` until the returned release is called: a write's answer leaves only once its audit entry is stored. */
export const holdResponse = (res: ServerResponse): (() => void) => {
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  let held: unknown[] | undefined;
  res.end = ((...args: unknown[]) => {
    held = args;
    return res;
  }) as ServerResponse['end'];
  return () => {
    res.end = end as ServerResponse['end'];
    if (held) end(...held);
  };
};
