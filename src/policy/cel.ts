// The CEL environment of policy expressions, and compiling one expression: parse, type-check, and the static limits.

import { Environment, type ParseResult, type SourceRange } from '@marcbachmann/cel-js';
import { ShoalError } from '../core/index.js';
import { estimateCost, regexProblem } from './limits.js';
import { POLICY_OBJECT_SCHEMA } from './object.js';

/**
 * Structural limits, checked while parsing: an expression is at most 4096 characters (the document schema) and these
 * bound the tree it can make, so parsing and the cost estimate are bounded too.
 */
export const CEL_LIMITS = { maxAstNodes: 1000, maxDepth: 32, maxListElements: 1000, maxMapEntries: 100, maxCallArguments: 16 };

/**
 * One environment for every policy (building one is expensive). `object` is typed by its schema, so a misspelt field
 * fails at apply time; `oldObject` is dyn because it is null on create (a typed variable cannot be compared to null);
 * `params` is whatever JSON the policy carries.
 */
const ENV = new Environment({ limits: CEL_LIMITS })
  .registerVariable('request', { schema: { user: 'string', teams: 'list<string>', operation: 'string' } })
  .registerVariable('object', { schema: POLICY_OBJECT_SCHEMA })
  .registerVariable('oldObject', 'dyn')
  .registerVariable('params', 'dyn');

const AS_REQUEST = ENV.parse('request');
const AS_OBJECT = ENV.parse('object');

/**
 * The variables as the environment's typed values. The library wraps `request` and `object` (plain objects) in its
 * schema types on every evaluation otherwise; evaluating each once per request and passing the wrappers to every
 * policy halves the cost of field access (measured: 0.99 → 0.45 µs for `object.resources.limits.memoryBytes > 0`).
 */
export const typedVariables = <V extends { request: object; object: object }>(vars: V): V => ({
  ...vars,
  request: AS_REQUEST(vars) as V['request'],
  object: AS_OBJECT(vars) as V['object'],
});

export interface CompiledExpression {
  evaluate: ParseResult;
  /** Estimated worst-case cost (see limits.ts). */
  cost: number;
}

/** ` at line L, column C` of a range's start in the expression. */
const position = (expression: string, range: SourceRange | undefined): string => {
  if (range === undefined) return '';
  const before = expression.slice(0, range.start).split('\n');
  return ` at line ${before.length}, column ${(before[before.length - 1]?.length ?? 0) + 1}`;
};

/** The library's errors carry a one-line `summary` and the range of the offending text. */
const describe = (expression: string, e: unknown): string => {
  const err = e as { summary?: string; message?: string; range?: SourceRange };
  return `${err.summary ?? err.message ?? String(e)}${position(expression, err.range)}`;
};

/**
 * Compiles a policy expression with the policy's (CEL-converted) params. Throws invalid_argument saying what is wrong
 * and where (`at line 1, column 17`, 1-based, in the expression) when known.
 */
export const compileExpression = (expression: string, params: unknown): CompiledExpression => {
  let evaluate: ParseResult;
  try {
    evaluate = ENV.parse(expression);
  } catch (e) {
    throw new ShoalError('invalid_argument', describe(expression, e));
  }
  const checked = evaluate.check();
  if (!checked.valid) throw new ShoalError('invalid_argument', describe(expression, checked.error));
  if (checked.type !== 'bool') throw new ShoalError('invalid_argument', `the expression must be a bool, it is ${checked.type ?? 'unknown'} (compare it: params.flag == true)`);
  const regex = regexProblem(evaluate.ast, params);
  if (regex !== undefined) throw new ShoalError('invalid_argument', `${regex.reason}${position(expression, regex.node.range)}`);
  return { evaluate, cost: estimateCost(evaluate.ast, params) };
};
