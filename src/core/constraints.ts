// Placement constraints: parsing `node.labels.zone==eu` and matching it against a node.

import { invalid } from './errors.js';
import type { Constraint, Node } from './objects.js';

const KEY_RE = /^(node\.(id|hostname|role|labels\.[A-Za-z0-9_.\-/]+)|engine\.labels\.[A-Za-z0-9_.\-/]+)$/;

/** Parses one constraint expression; throws invalid_argument naming the expression and why. */
export const parseConstraint = (expr: string, field = 'constraint'): Constraint => {
  const m = /^\s*([^=!\s]+)\s*(==|!=)\s*(.*?)\s*$/.exec(expr);
  if (!m) throw invalid(field, `'${expr}' is not of the form KEY==VALUE or KEY!=VALUE`);
  const [, key = '', op, value = ''] = m;
  if (!KEY_RE.test(key)) {
    throw invalid(field, `'${expr}': unknown key '${key}' (use node.id, node.hostname, node.role, node.labels.KEY or engine.labels.KEY)`);
  }
  if (value === '') throw invalid(field, `'${expr}': empty value`);
  return { key, op: op as Constraint['op'], value };
};

export const formatConstraint = (c: Constraint): string => `${c.key}${c.op}${c.value}`;

/** The value of a constraint key on a node; undefined when the node has no such label. */
export const nodeAttribute = (node: Node, key: string): string | undefined => {
  if (key === 'node.id') return node.id;
  if (key === 'node.hostname') return node.description.hostname;
  if (key === 'node.role') return node.spec.role;
  if (key.startsWith('node.labels.')) return node.spec.labels[key.slice('node.labels.'.length)];
  if (key.startsWith('engine.labels.')) return node.description.engineLabels[key.slice('engine.labels.'.length)];
  return undefined;
};

/** Whether a node satisfies a constraint. A missing label never equals, and always differs. */
export const matchConstraint = (node: Node, c: Constraint): boolean => {
  const v = nodeAttribute(node, c.key);
  return c.op === '==' ? v === c.value : v !== c.value;
};
