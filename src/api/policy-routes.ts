// The policy API: apply (create or update by name), list, show, remove, dry-run policies; and read the audit log.

import { invalid, notFound, projectOf, type Policy, type PolicyOperation, type Service } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { compilePolicy, type CompiledPolicy } from '../policy/index.js';
import { API_PREFIX, parsePolicyDocuments, policySourceSchema, type PolicyTestResult } from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { Admission } from './admission.js';
import type { AuditLog } from './audit.js';
import { fromZod, readJson, sendJson, type RequestContext, type Router } from './http.js';
import { parseTimeQuery } from './time-query.js';
import type { StoreWriter } from './writes.js';

const p = API_PREFIX;

export interface PolicyDeps {
  cache: Cache;
  clock: Clock;
  logger: Logger;
  writer: StoreWriter;
  auditLog: AuditLog;
  admission: Admission;
}

export class PolicyApi {
  constructor(private readonly deps: PolicyDeps) {}

  register(router: Router): void {
    router
      .add('GET', `${p}/policies`, { permission: 'policy.read' }, async (c) => sendJson(c.res, 200, this.deps.cache.list('policy').sort((a, b) => a.id.localeCompare(b.id))))
      .add('POST', `${p}/policies`, { permission: 'policy.write' }, (c) => this.apply(c))
      // A dry run evaluates against every service, so it reads what only admins may read.
      .add('POST', `${p}/policies/test`, { permission: 'policy.write' }, (c) => this.test(c))
      .add('GET', `${p}/policies/:name`, { permission: 'policy.read' }, async (c) => sendJson(c.res, 200, this.policy(c.params.name)))
      .add('DELETE', `${p}/policies/:name`, { permission: 'policy.write' }, (c) => this.remove(c))
      .add('GET', `${p}/audit`, { permission: 'audit.read' }, (c) => this.listAudit(c));
  }

  private policy(name: string | undefined): Policy {
    const found = this.deps.cache.get('policy', name ?? '');
    if (!found) throw notFound(`policy '${name ?? ''}'`);
    return found;
  }

  /** Parses and compiles every document of the file before writing any: a file with one bad policy changes nothing. */
  private async read(c: RequestContext): Promise<{ doc: Policy['document']; compiled: CompiledPolicy }[]> {
    const parsed = policySourceSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'policy request');
    return parsePolicyDocuments(parsed.data.source).map((doc) => ({ doc, compiled: compilePolicy(doc) }));
  }

  private async apply(c: RequestContext): Promise<void> {
    const docs = await this.read(c);
    c.audit.target = docs.map((d) => `policy/${d.doc.name}`).join(',');
    const results = await this.deps.writer.applyByName('policy', docs.map(({ doc }) => ({ name: doc.name, content: { document: doc } })), this.deps.clock, c);
    this.deps.logger.info('policies applied', { policies: results.map((r) => `${r.name}:${r.result}`).join(',') });
    const changed = docs.filter((d) => results.find((r) => r.name === d.doc.name)?.result !== 'unchanged');
    // The background audit: existing services that the new rules flag are recorded, not touched.
    void this.auditExisting(changed.map((d) => d.compiled), c.who.user).catch((e: unknown) => this.deps.logger.warn('background policy audit failed', { error: String(e) }));
    sendJson(c.res, 200, results);
  }

  private async remove(c: RequestContext): Promise<void> {
    const name = c.params.name ?? '';
    c.audit.target = `policy/${name}`;
    await this.deps.writer.removeCurrent(() => this.policy(name), c);
    this.deps.logger.info('policy removed', { policy: name });
    sendJson(c.res, 200, { name });
  }

  /** A dry run: each policy of the file against every service, enforcing nothing and storing nothing. */
  private async test(c: RequestContext): Promise<void> {
    const docs = await this.read(c);
    c.audit.target = docs.map((d) => `policy/${d.doc.name}`).join(',');
    sendJson(c.res, 200, this.evaluateExisting(docs.map((d) => d.compiled), c.who.user));
  }

  /**
   * Every service as if `user` updated it to its current spec (with the policy's first operation when it names
   * some): what the policy would decide. Services the policy does not match are left out.
   */
  private evaluateExisting(policies: CompiledPolicy[], user: string): PolicyTestResult[] {
    const services = this.deps.cache.list('service').sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    const out: PolicyTestResult[] = [];
    for (const policy of policies) {
      const operation: PolicyOperation = policy.document.match.operations?.[0] ?? 'update';
      for (const s of services) out.push(...this.resultOf(policy, s, operation, user));
    }
    return out;
  }

  private resultOf(policy: CompiledPolicy, s: Service, operation: PolicyOperation, user: string): PolicyTestResult[] {
    const d = this.deps.admission.evaluate({ who: { user, teams: [], grants: [], superuser: false } }, operation, s.spec, s.spec, [policy]);
    if (!d.evaluated.includes(policy.document.name)) return [];
    const violations = [...d.denials, ...d.warnings, ...d.audits];
    const base = { policy: policy.document.name, service: s.spec.name, project: projectOf(s.spec) };
    return [violations.length === 0 ? { ...base, outcome: 'pass', messages: [] } : { ...base, outcome: policy.document.action, messages: violations.map((v) => v.message) }];
  }

  private async auditExisting(policies: CompiledPolicy[], user: string): Promise<void> {
    for (const r of this.evaluateExisting(policies, user)) {
      if (r.outcome === 'pass') continue;
      await this.deps.auditLog.record({
        user,
        action: 'policy.audit',
        target: `service/${r.service}`,
        project: r.project,
        outcome: 'violation',
        rule: `policy ${r.policy}`,
        message: `existing service '${r.service}' violates policy '${r.policy}' (${r.outcome}): ${r.messages.join('; ')}`,
      });
    }
  }

  private async listAudit(c: RequestContext): Promise<void> {
    const now = this.deps.clock.now();
    const since = parseTimeQuery(c.query.get('since'), now, 'since');
    const until = parseTimeQuery(c.query.get('until'), now, 'until');
    const limitText = c.query.get('limit');
    const limit = limitText === null ? undefined : Number(limitText);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw invalid('limit', `'${limitText ?? ''}' is not a positive whole number`);
    const user = c.query.get('user') ?? undefined;
    sendJson(c.res, 200, await this.deps.auditLog.list({ ...(user ? { user } : {}), ...(since === undefined ? {} : { since }), ...(until === undefined ? {} : { until }), ...(limit === undefined ? {} : { limit }) }));
  }
}
