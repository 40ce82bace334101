// Admission: every service write is checked against the cluster's policies before it is stored. Policies are
// compiled once per version and kept, so a check costs only the evaluation of the policies that match.

import { ShoalError, type Policy, type PolicyOperation, type ServiceSpec } from '../core/index.js';
import type { Logger } from '../lib/logger.js';
import { admit, compilePolicy, denialMessage, type CompiledPolicy, type Decision } from '../policy/index.js';
import { WARNINGS_HEADER } from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { RequestContext } from './http.js';

export class Admission {
  /** Compiled policies by name, with the version they were compiled from. */
  private readonly compiled = new Map<string, { version: number; policy: CompiledPolicy }>();

  constructor(private readonly deps: { cache: Cache; logger: Logger; observe?: (seconds: number) => void }) {
    // Compile when a policy changes, not on the next write: a write never pays for compiling.
    deps.cache.subscribe((events) => {
      if (events.some((e) => e.kind === 'policy')) this.refresh();
    });
  }

  /** Compiles what changed; a stored policy that no longer compiles (a newer engine?) is logged and left out. */
  private refresh(): void {
    try {
      this.active();
    } catch (e) {
      this.deps.logger.error('a stored policy does not compile', { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** The current policies, compiled (stored policies compiled when applied; a recompile is only a cache refill). */
  active(): CompiledPolicy[] {
    const stored = this.deps.cache.list('policy');
    if (stored.length !== this.compiled.size) for (const name of this.compiled.keys()) if (!this.deps.cache.get('policy', name)) this.compiled.delete(name);
    return stored.map((p) => this.compile(p));
  }

  private compile(p: Policy): CompiledPolicy {
    const hit = this.compiled.get(p.id);
    if (hit?.version === p.meta.version) return hit.policy;
    const policy = compilePolicy(p.document);
    this.compiled.set(p.id, { version: p.meta.version, policy });
    return policy;
  }

  /** Evaluates a write by the request's user against the policies; no policy matched or none failed: allowed. */
  evaluate(c: Pick<RequestContext, 'who'>, operation: PolicyOperation, spec: ServiceSpec, old?: ServiceSpec, policies = this.active()): Decision {
    const d = admit(policies, { user: c.who.user, teams: c.who.teams, operation, object: spec, ...(old === undefined ? {} : { oldObject: old }) }, { now: () => performance.now() });
    for (const slow of d.slow) this.deps.logger.warn('slow policy evaluation', { policy: slow.policy, validation: slow.validation, ms: Math.round(slow.ms * 1000) / 1000 });
    return d;
  }

  /**
   * Refuses the write when a deny policy fails ("Cannot scale service 'latte': policy 'latte-deployers' denies user
   * 'dev-d': …"); warn messages go back to the caller in a header, and warn and audit messages into the audit log.
   */
  check(c: RequestContext, operation: PolicyOperation, spec: ServiceSpec, old?: ServiceSpec): void {
    const started = performance.now();
    const d = this.evaluate(c, operation, spec, old);
    this.deps.observe?.((performance.now() - started) / 1000);
    for (const v of d.denials) c.audit.rules.push(`policy ${v.policy}`);
    c.audit.warnings.push(...d.warnings.map((v) => `policy ${v.policy}: ${v.message}`));
    c.audit.audits.push(...d.audits.map((v) => `policy ${v.policy}: ${v.message}`));
    if (!d.allowed) {
      throw new ShoalError('permission_denied', denialMessage({ user: c.who.user, teams: c.who.teams, operation, object: spec }, d));
    }
    if (d.evaluated.length > 0) c.audit.rules.push(`policies passed: ${d.evaluated.join(', ')}`);
    if (c.audit.warnings.length > 0) c.res.setHeader(WARNINGS_HEADER, encodeURIComponent(JSON.stringify(c.audit.warnings)));
  }
}
