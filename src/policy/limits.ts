// Static limits on a policy expression: an estimated worst-case cost, and only regular expressions that cannot backtrack badly.

import type { ASTNode } from '@marcbachmann/cel-js';

/**
 * Budget of one policy (the sum over its validations), in the units of `estimateCost`: about one unit per AST node
 * visited. Measured with this library, a unit takes 10–50 ns, so a policy at the budget evaluates in at most a few ms
 * — it cannot stall the manager — while ordinary policies cost tens of units. A nested loop over two 1000-entry
 * lists (4 million units, 35 ms measured) is refused.
 */
export const MAX_POLICY_COST = 100_000;

/**
 * Sizes assumed for what an expression can iterate or scan, like Kubernetes' CEL cost estimator: the upper bound of
 * the collection's entries (lists, maps) or of a string's length. Paths not listed get DEFAULT_BOUND. `params` is
 * known when the policy is compiled, so its real sizes are used.
 */
export const DEFAULT_BOUND = 1000;
const PATH_BOUNDS: Readonly<Record<string, number>> = {
  'request.user': 63,
  'request.operation': 8,
  'request.teams': 1000,
  'object.name': 63,
  'object.project': 63,
  'object.image': 512,
  'object.labels': 64,
  'object.containerLabels': 64,
  'object.constraints': 100,
  'object.preferences': 10,
};

/**
 * Functions that scan their receiver string: one unit per 100 characters. Measured, a native scan of a short string
 * costs a few percent of visiting an AST node (Kubernetes' 0.1 per character overweighted them tenfold here).
 */
const STRING_SCANS = new Set(['contains', 'startsWith', 'endsWith', 'matches', 'indexOf', 'lastIndexOf', 'split', 'lowerAscii', 'upperAscii', 'trim', 'substring', 'join']);
const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

type Node = ASTNode;

/** `object.labels` for a chain of field selections from a variable, else undefined. */
const pathOf = (n: Node): string | undefined => {
  if (n.op === 'id') return n.args;
  if (n.op === '.') {
    const base = pathOf(n.args[0]);
    return base === undefined ? undefined : `${base}.${n.args[1]}`;
  }
  return undefined;
};

/** The params value at `path` ('params.registries'), known when the policy is compiled. */
const paramsValue = (params: unknown, path: string): unknown => {
  let v = params;
  for (const seg of path.split('.').slice(1)) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, seg)) return undefined;
    v = (v as Record<string, unknown>)[seg];
  }
  return v;
};

/** The size (entries, or characters) of a params value, if it is a collection or a string. */
const paramsSize = (params: unknown, path: string): number | undefined => {
  const v = paramsValue(params, path);
  if (typeof v === 'string' || Array.isArray(v)) return v.length;
  return v !== null && typeof v === 'object' ? Object.keys(v).length : undefined;
};

/** Upper bound of the entries (or characters) of what `n` evaluates to. */
const boundOf = (n: Node, params: unknown): number => {
  switch (n.op) {
    case 'value':
      return typeof n.args === 'string' ? n.args.length : 1;
    case 'list':
      return n.args.length;
    case 'map':
      return n.args.length;
    case 'rcall':
      // filter and map yield at most what they iterate.
      return n.args[0] === 'filter' || n.args[0] === 'map' ? boundOf(n.args[1], params) : DEFAULT_BOUND;
    default: {
      const path = pathOf(n);
      if (path === undefined) return DEFAULT_BOUND;
      if (path.startsWith('params.')) return paramsSize(params, path) ?? DEFAULT_BOUND;
      return PATH_BOUNDS[path] ?? DEFAULT_BOUND;
    }
  }
};

/** The operands of a node. */
const children = (n: Node): readonly Node[] => {
  switch (n.op) {
    case 'value':
    case 'id':
      return [];
    case '.':
    case '.?':
      return [n.args[0]];
    case 'call':
      return n.args[1];
    case 'rcall':
      return [n.args[1], ...n.args[2]];
    case 'map':
      return n.args.flat();
    case '!_':
    case '-_':
      return [n.args];
    default:
      // Lists, binary operators, indexing, `?:`, `&&`, `||`: their args are the operands.
      return n.args;
  }
};

/**
 * Worst-case cost of evaluating `n`. A comprehension costs its body times the bound of what it iterates, so nested
 * comprehensions multiply; `in` and string scans are linear in the bound of what they search; all else is one unit
 * plus its operands (both branches of `?:`, `&&` and `||` count: an upper bound).
 */
export const estimateCost = (n: Node, params: unknown): number => {
  const sum = (nodes: readonly Node[]) => nodes.reduce((s, x) => s + estimateCost(x, params), 0);
  if (n.op === 'rcall') {
    const [fn, receiver, args] = n.args;
    const base = 1 + estimateCost(receiver, params);
    // The first argument of a comprehension is its iteration variable: only the rest runs per element.
    if (COMPREHENSIONS.has(fn) && args.length >= 2) return base + boundOf(receiver, params) * (1 + sum(args.slice(1)));
    return base + sum(args) + (STRING_SCANS.has(fn) ? Math.ceil(boundOf(receiver, params) / 100) : 0);
  }
  return 1 + sum(children(n)) + (n.op === 'in' ? boundOf(n.args[1], params) : 0);
};

/** Every node of the tree, depth first. */
const nodes = function* (n: Node): Generator<Node> {
  yield n;
  for (const c of children(n)) yield* nodes(c);
};

/** Unbounded quantifiers (*, +, {n,}) a pattern may have: each can add a polynomial factor to backtracking (`.*.*.*x`). */
export const MAX_REPEATS = 3;

interface GroupFrame {
  /** Whether the group (so far) holds any quantifier. */
  quantified: boolean;
  alternation: boolean;
}

/** The quantifier at `i` (`*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`): its length and how many times it may repeat. */
const quantifierAt = (p: string, i: number): { length: number; max: number } | undefined => {
  const c = p[i];
  let length = 1;
  let max = Infinity;
  if (c === '?') max = 1;
  else if (c === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(p.slice(i));
    if (m === null) return undefined;
    length = m[0].length;
    max = m[2] === undefined ? Number(m[1]) : m[3] === '' ? Infinity : Number(m[3]);
  } else if (c !== '*' && c !== '+') return undefined;
  // A trailing `?` makes the quantifier lazy: same search space.
  return { length: p[i + length] === '?' ? length + 1 : length, max };
};

/** Index just after the character class starting at `i` (`[…]`, with escapes). */
const classEnd = (p: string, i: number): number => {
  let j = i + 1;
  if (p[j] === '^') j++;
  if (p[j] === ']') j++;
  while (j < p.length && p[j] !== ']') j += p[j] === '\\' ? 2 : 1;
  return j + 1;
};

/**
 * Why a regular expression could backtrack catastrophically in JavaScript's engine, or undefined when it is safe.
 *
 * `matches()` runs JS RegExp, a backtracking engine: `(a+)+$` takes exponential time on "aaaa…!". Without a
 * linear-time engine (RE2, or V8's experimental one behind a flag), the safe course is to allow only patterns whose
 * backtracking is bounded: no repeated group that itself contains a quantifier or an alternation (the exponential
 * cases `(a+)+`, `(a*)*`, `(a|a)*`, `(a?){20}`), no backreferences, and at most MAX_REPEATS unbounded quantifiers, so
 * what remains is at worst a low-degree polynomial in the input's length (and admit() reports slow evaluations). This
 * refuses some harmless patterns (`(a|b)+`); a character class or a longer expression says the same safely.
 */
export const unsafeRegex = (pattern: string): string | undefined => {
  try {
    new RegExp(pattern);
  } catch (e) {
    return `invalid regular expression: ${(e as Error).message}`;
  }
  const stack: GroupFrame[] = [{ quantified: false, alternation: false }];
  let unbounded = 0;
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    let closed: GroupFrame | undefined;
    if (c === '\\') {
      if (/[1-9k]/.test(pattern[i + 1] ?? '')) return 'backreferences are not allowed';
      i += 2;
    } else if (c === '[') i = classEnd(pattern, i);
    else if (c === '(') {
      stack.push({ quantified: false, alternation: false });
      i++;
      continue;
    } else if (c === ')') {
      closed = stack.pop();
      i++;
    } else if (c === '|') {
      stack[stack.length - 1]!.alternation = true;
      i++;
      continue;
    } else i++;
    const q = quantifierAt(pattern, i);
    const frame = stack[stack.length - 1]!;
    if (closed !== undefined) frame.quantified ||= closed.quantified;
    if (q === undefined) continue;
    if (q.max > 1 && closed !== undefined && (closed.quantified || closed.alternation)) {
      return 'a repeated group may not contain a quantifier or an alternation (it can backtrack exponentially); use a character class, e.g. [ab]+ for (a|b)+';
    }
    if (q.max === Infinity && ++unbounded > MAX_REPEATS) return `at most ${MAX_REPEATS} unbounded quantifiers (*, +, {n,}) per pattern`;
    frame.quantified = true;
    i += q.length;
  }
  return undefined;
};

/**
 * Why a `matches()` in the expression is unsafe, or undefined. Patterns must be known when the policy is compiled
 * (a string literal, or a string in params) so they can be checked; `node` locates the problem.
 */
export const regexProblem = (ast: Node, params: unknown): { reason: string; node: Node } | undefined => {
  for (const n of nodes(ast)) {
    if (n.op !== 'rcall' || n.args[0] !== 'matches') continue;
    const arg = n.args[2][0];
    if (arg === undefined) continue;
    const path = pathOf(arg);
    const pattern = arg.op === 'value' ? arg.args : path?.startsWith('params.') ? paramsValue(params, path) : undefined;
    if (typeof pattern !== 'string') return { reason: 'the pattern of matches() must be a string literal or a string in params', node: arg };
    const reason = unsafeRegex(pattern);
    if (reason !== undefined) return { reason: `unsafe pattern ${JSON.stringify(pattern)}: ${reason}`, node: arg };
  }
  return undefined;
};
