// Tests of the policy document parser: the documented examples, several documents per file, and where errors are.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ShoalError, type FieldViolation } from '../core/index.js';
import { parsePolicyDocument, parsePolicyDocuments } from './policy.js';

const DOCS = new URL('../../../docs/policies/', import.meta.url);

const LATTE = `kind: Policy
name: latte-deployers
match: {operations: [create, update, scale], services: ["latte"]}
validations:
  - expression: "request.user in ['dev-a', 'dev-b', 'dev-c']"
    message: "only dev-a, dev-b and dev-c may deploy latte"
action: deny
`;

/** Asserts parsing `yaml` fails with invalid_argument, these violations (unless undefined), and a message matching `message`. */
const rejects = (yaml: string, violations: FieldViolation[] | undefined, message?: RegExp): void => {
  assert.throws(
    () => parsePolicyDocuments(yaml),
    (e: unknown) => {
      assert.ok(e instanceof ShoalError);
      assert.equal(e.code, 'invalid_argument');
      if (violations) assert.deepEqual(e.violations, violations);
      if (message) assert.match(e.message, message);
      return true;
    },
  );
};

describe('parsePolicyDocuments', () => {
  it('parses every example in docs/policies to the document its YAML says (no defaults added)', () => {
    const files = readdirSync(DOCS).filter((f) => f.endsWith('.yaml'));
    assert.equal(files.length, 4);
    for (const f of files) {
      const text = readFileSync(new URL(f, DOCS), 'utf8');
      assert.deepEqual(parsePolicyDocuments(text), parseAllDocuments(text).map((d) => d.toJS() as unknown), f);
    }
  });

  it('parses the issue example, defaulting nothing but an absent match', () => {
    assert.deepEqual(parsePolicyDocument(LATTE), {
      kind: 'Policy',
      name: 'latte-deployers',
      match: { operations: ['create', 'update', 'scale'], services: ['latte'] },
      validations: [{ expression: "request.user in ['dev-a', 'dev-b', 'dev-c']", message: 'only dev-a, dev-b and dev-c may deploy latte' }],
      action: 'deny',
    });
    const noMatch = parsePolicyDocument('kind: Policy\nname: p\nvalidations: [{expression: "true", message: m}]\naction: audit\n');
    assert.deepEqual(noMatch.match, {});
  });

  it('takes several documents separated by ---, skipping empty ones', () => {
    const docs = parsePolicyDocuments(`${LATTE}---\n---\n${LATTE.replace('latte-deployers', 'second').replace('deny', 'warn')}`);
    assert.deepEqual(docs.map((d) => [d.name, d.action]), [['latte-deployers', 'deny'], ['second', 'warn']]);
    assert.throws(() => parsePolicyDocument(`${LATTE}---\n${LATTE}`), /expected one document, the file holds 2/);
    rejects('', [], /holds no document/);
  });

  it('names the line and column of a YAML syntax error', () => {
    rejects('kind: Policy\nname: x\nvalidations: [{expression: "true"\naction: deny\n', [
      { field: '(yaml)', reason: 'Flow map in block collection must be sufficiently indented and end with a } at line 4, column 1' },
      { field: '(yaml)', reason: 'Flow sequence in block collection must be sufficiently indented and end with a ] at line 4, column 1' },
    ]);
    rejects('kind: Policy\nname: a\nname: b\n', [{ field: '(yaml)', reason: 'Map keys must be unique at line 3, column 1' }], /^invalid policy YAML: \(yaml\): Map keys must be unique at line 3, column 1$/);
    rejects(`${LATTE}---\nkind: Policy\n  bad: indent\n`, undefined, /^invalid policy \(document 2\) YAML: .* at line 9, column 7/);
  });

  it('names the field path (and its line) of a schema error', () => {
    rejects(LATTE.replace('operations', 'operation'), [{ field: 'match.operation', reason: 'unknown field at line 3, column 9' }], /^invalid policy: match\.operation: unknown field/);
    rejects(LATTE.replace('action: deny', 'action: block'), [{ field: 'action', reason: 'Invalid option: expected one of "deny"|"warn"|"audit" at line 7, column 1' }]);
    rejects(LATTE.replace('update', 'restart'), [{ field: 'match.operations[1]', reason: 'Invalid option: expected one of "create"|"update"|"scale"|"rollback"|"remove"|"deploy" at line 3, column 30' }]);
    rejects(LATTE.replace('    message: "only dev-a, dev-b and dev-c may deploy latte"\n', ''), [{ field: 'validations[0].message', reason: 'Invalid input: expected string, received undefined at line 5, column 5' }]);
    rejects(LATTE.replace('name: latte-deployers', 'name: Latte_Deployers'), [{ field: 'name', reason: 'policy names are lower-case letters, digits and - (at most 63, not starting or ending with -) at line 2, column 1' }]);
    rejects(LATTE.replace('services: ["latte"]', 'services: []'), [{ field: 'match.services', reason: 'an empty list matches nothing; leave the field out to match all at line 3, column 46' }]);
    rejects(LATTE.replace('kind: Policy', 'kind: Service'), [{ field: 'kind', reason: 'Invalid input: expected "Policy" at line 1, column 1' }]);
    rejects('- 1\n', [{ field: '(document)', reason: 'Invalid input: expected object, received array at line 1, column 1' }]);
  });

  it('bounds params, so the cost estimate can rely on their sizes', () => {
    const big = JSON.stringify(Array.from({ length: 1001 }, (_, i) => i));
    rejects(`${LATTE}params: {list: ${big}}\n`, [{ field: 'params', reason: 'a list or map in params has at most 1000 entries at line 8, column 1' }]);
    assert.deepEqual(parsePolicyDocument(`${LATTE}params: {max: 5, registries: [a.example], nested: {ok: true}}\n`).params, { max: 5, registries: ['a.example'], nested: { ok: true } });
  });
});
