// Admission by declarative policies: compile a policy document once, then decide each write request against all of them.

import type { ParseResult } from '@marcbachmann/cel-js';
import { ShoalError, isShoalError, type FieldViolation, type PolicyAction, type PolicyDocument, type PolicyOperation, type ServiceSpec } from '../core/index.js';
import { compileExpression, typedVariables } from './cel.js';
import { MAX_POLICY_COST } from './limits.js';
import { compileMatch, matchSubject, matchesSubject, type CompiledMatch } from './match.js';
import { celParams, policyObject, type PolicyObject } from './object.js';

export interface CompiledValidation {
  expression: string;
  message: string;
  evaluate: ParseResult;
  cost: number;
}

/** A policy ready to evaluate: compile it when it is applied (or loaded), never per request. */
export interface CompiledPolicy {
  name: string;
  action: PolicyAction;
  match: CompiledMatch;
  validations: readonly CompiledValidation[];
  /** `params` with integers as BigInt, as CEL wants them. */
  params: unknown;
  /** Estimated worst-case cost of all validations (at most MAX_POLICY_COST). */
  cost: number;
  document: PolicyDocument;
}

const overBudget = (cost: number): string =>
  `estimated cost ${cost} exceeds the budget of ${MAX_POLICY_COST} per policy (comprehensions multiply by the size of what they iterate, nested ones multiply again)`;

/**
 * Compiles a policy document. Refuses (invalid_argument) an expression that does not parse or type-check, is not a
 * bool, uses an unsafe regular expression, or a policy whose estimated cost exceeds the budget — with the field and
 * the position in the expression: `policy 'x': validations[0].expression: … at line 1, column 17`.
 */
export const compilePolicy = (doc: PolicyDocument): CompiledPolicy => {
  const params = celParams(doc.params ?? {});
  const violations: FieldViolation[] = [];
  const validations = doc.validations.flatMap((v, i): CompiledValidation[] => {
    try {
      const compiled = compileExpression(v.expression, params);
      if (compiled.cost > MAX_POLICY_COST) violations.push({ field: `validations[${i}].expression`, reason: overBudget(compiled.cost) });
      return [{ ...v, ...compiled }];
    } catch (e) {
      if (!isShoalError(e)) throw e;
      violations.push({ field: `validations[${i}].expression`, reason: e.message });
      return [];
    }
  });
  const cost = validations.reduce((s, v) => s + v.cost, 0);
  if (violations.length === 0 && cost > MAX_POLICY_COST) violations.push({ field: 'validations', reason: `together: ${overBudget(cost)}` });
  if (violations.length > 0) {
    throw new ShoalError('invalid_argument', `policy '${doc.name}': ${violations.map((v) => `${v.field}: ${v.reason}`).join('; ')}`, { violations });
  }
  return { name: doc.name, action: doc.action, match: compileMatch(doc.match), validations, params, cost, document: doc };
};

/** A write the policies judge: who asks, what operation, and the service spec it writes (the current one for remove). */
export interface AdmissionRequest {
  user: string;
  teams: readonly string[];
  operation: PolicyOperation;
  /** The spec as it would be stored; its project is `spec.project` (default `default`). */
  object: ServiceSpec;
  /** The stored spec before this write; absent on create. */
  oldObject?: ServiceSpec;
}

/** Whether a policy applies to a request (its `match`). */
export const matches = (policy: CompiledPolicy, request: AdmissionRequest): boolean => matchesSubject(policy.match, matchSubject(request.operation, request.object));

/** A validation that failed (false, or an evaluation error) in a policy that matched. */
export interface Violation {
  policy: string;
  action: PolicyAction;
  /** Index into the policy's validations. */
  validation: number;
  message: string;
  /** Set when the expression could not be evaluated (a deny policy then refuses: it fails closed). */
  error?: string;
}

/** An evaluation that took longer than `slowMs` (by the injected clock). */
export interface SlowEvaluation {
  policy: string;
  validation: number;
  ms: number;
}

export interface Decision {
  /** False iff some deny policy was violated. */
  allowed: boolean;
  denials: Violation[];
  warnings: Violation[];
  audits: Violation[];
  /** Names of the policies that matched and were evaluated, in order. */
  evaluated: string[];
  slow: SlowEvaluation[];
}

export interface AdmitOptions {
  /** Milliseconds from a monotonic clock (e.g. performance.now); only differences are used. */
  now: () => number;
  /** Evaluations slower than this are reported in `slow` (default 1 ms). */
  slowMs?: number;
}

/** What CEL sees of a request, converted once and shared by every policy. */
interface Variables {
  request: { user: string; teams: readonly string[]; operation: string };
  object: PolicyObject;
  oldObject: PolicyObject | null;
}

/** Runs one validation: the violation it makes, if any. Errors are violations too — never a silent pass. */
const check = (p: CompiledPolicy, index: number, vars: Variables): Violation | undefined => {
  const v = p.validations[index]!;
  let result: unknown;
  try {
    result = v.evaluate({ ...vars, params: p.params });
  } catch (e) {
    const error = (e as { summary?: string }).summary ?? (e as Error).message;
    const closed = p.action === 'deny' ? '; denied: a deny policy fails closed' : '';
    return { policy: p.name, action: p.action, validation: index, message: `${v.message} (validations[${index}] could not be evaluated: ${error}${closed})`, error };
  }
  return result === true ? undefined : { policy: p.name, action: p.action, validation: index, message: v.message };
};

/**
 * Decides a write request against the active policies: every matching policy's validations run in order, each
 * failing one is a violation of the policy's action. Allowed unless a deny policy was violated.
 */
export const admit = (policies: readonly CompiledPolicy[], request: AdmissionRequest, opts: AdmitOptions): Decision => {
  const slowMs = opts.slowMs ?? 1;
  const decision: Decision = { allowed: true, denials: [], warnings: [], audits: [], evaluated: [], slow: [] };
  const subject = matchSubject(request.operation, request.object);
  const applicable = policies.filter((p) => matchesSubject(p.match, subject));
  if (applicable.length === 0) return decision;
  const vars = typedVariables<Variables>({
    request: { user: request.user, teams: request.teams, operation: request.operation },
    object: policyObject(request.object),
    oldObject: request.oldObject === undefined ? null : policyObject(request.oldObject),
  });
  const sink = { deny: decision.denials, warn: decision.warnings, audit: decision.audits };
  for (const p of applicable) {
    decision.evaluated.push(p.name);
    for (let i = 0; i < p.validations.length; i++) {
      const start = opts.now();
      const violation = check(p, i, vars);
      const ms = opts.now() - start;
      if (ms > slowMs) decision.slow.push({ policy: p.name, validation: i, ms });
      if (violation !== undefined) sink[p.action].push(violation);
    }
  }
  decision.allowed = decision.denials.length === 0;
  return decision;
};

/** `policy 'name': message`: how a warning or an audit finding is shown. */
export const violationMessage = (v: Violation): string => `policy '${v.policy}': ${v.message}`;

/**
 * Why a request was refused, in the style of the error registry:
 * "Cannot scale service 'latte': policy 'latte-deployers' denies user 'dev-d': only dev-a, dev-b and dev-c may deploy latte".
 * Several denials are joined with "; ".
 */
export const denialMessage = (request: AdmissionRequest, decision: Decision): string =>
  `Cannot ${request.operation} service '${request.object.name}': ${decision.denials.map((v) => `policy '${v.policy}' denies user '${request.user}': ${v.message}`).join('; ')}`;
