// YAML documents users write (policies, templates): parsed, validated by a schema, and every error placed in the
// file — line and column for syntax, the field path and its line for schema problems.

import { LineCounter, isMap, isScalar, isSeq, parseAllDocuments, type Document, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { ShoalError, type FieldViolation } from '../core/index.js';

/** Line and column (1-based) of a character offset. */
interface Position {
  line: number;
  col: number;
}

const at = (p: Position | undefined): string => (p === undefined ? '' : ` at line ${p.line}, column ${p.col}`);

/** Where in the YAML the value at `path` starts: the key's position when the path ends at a map key. */
const positionOf = (doc: Document, path: readonly PropertyKey[], lines: LineCounter): Position | undefined => {
  let node: unknown = doc.contents;
  let offset = isScalar(node) || isMap(node) || isSeq(node) ? node.range?.[0] : undefined;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg);
      if (pair === undefined) break;
      offset = isScalar(pair.key) ? pair.key.range?.[0] : offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      offset = isScalar(node) || isMap(node) || isSeq(node) ? (node.range?.[0] ?? offset) : offset;
    } else break;
  }
  return offset === undefined ? undefined : lines.linePos(offset);
};

/** A dotted field path as the docs write it: `validations[0].expression`. */
const fieldPath = (path: readonly PropertyKey[]): string =>
  path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? String(s) : `.${String(s)}`)).join('') || '(document)';

/** The schema's complaints, each naming the field and where it is in the file. */
const schemaViolations = (issues: readonly z.core.$ZodIssue[], doc: Document, lines: LineCounter): FieldViolation[] =>
  issues.flatMap((issue) => {
    // An unknown key is reported on its parent: name the key itself, so the path leads to it.
    const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k]) : [issue.path];
    const reason = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message;
    return paths.map((p) => ({ field: fieldPath(p), reason: `${reason}${at(positionOf(doc, p, lines))}` }));
  });

const yamlReason = (e: YAMLError): string => `${e.message.split(/ at line \d+, column \d+/)[0] ?? e.message}${at(e.linePos?.[0])}`;

const failure = (what: string, where: string, violations: FieldViolation[]): ShoalError =>
  new ShoalError('invalid_argument', `invalid ${what}${where}: ${violations.map((v) => `${v.field}: ${v.reason}`).join('; ')}`, { violations });

/**
 * Parses a YAML file of one or more documents (separated by `---`; empty documents are skipped), each validated by
 * `schema`. Errors are invalid_argument and say where: line and column for YAML syntax, field path (and line) for
 * schema problems. `what` names the kind of document in messages.
 */
export const parseYamlDocuments = <S extends z.ZodType>(yamlText: string, schema: S, what: string): z.output<S>[] => {
  const lines = new LineCounter();
  const docs = parseAllDocuments(yamlText, { lineCounter: lines });
  const all = Array.isArray(docs) ? docs : [];
  const out = all.flatMap((doc, i) => {
    const where = all.length > 1 ? ` (document ${i + 1})` : '';
    if (doc.errors.length > 0) throw failure(what, `${where} YAML`, doc.errors.map((e) => ({ field: '(yaml)', reason: yamlReason(e) })));
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (e) {
      // Unresolved aliases, or too many of them (the guard against "billion laughs" documents).
      throw failure(what, `${where} YAML`, [{ field: '(yaml)', reason: (e as Error).message }]);
    }
    if (value === null || value === undefined) return [];
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw failure(what, where, schemaViolations(parsed.error.issues, doc, lines));
    return [parsed.data];
  });
  if (out.length === 0) throw new ShoalError('invalid_argument', `invalid ${what}: the file holds no document`);
  return out;
};

