// Tests of placement constraints: parsing with clear errors, formatting back, and matching against nodes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatConstraint, matchConstraint, nodeAttribute, parseConstraint } from './constraints.js';
import { ShoalError } from './errors.js';
import type { Node } from './objects.js';

const node: Node = {
  kind: 'node',
  id: 'node-1',
  meta: { version: 1, createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-01T00:00:00.000Z' },
  spec: { role: 'manager', availability: 'active', labels: { zone: 'eu', 'com.example/tier': 'gold', empty: '' } },
  description: {
    hostname: 'alpha',
    address: '127.0.0.1:0',
    runtime: 'sim',
    resources: { nanoCpus: 1e9, memoryBytes: 1024 },
    engineLabels: { os: 'linux' },
  },
  status: { state: 'ready', message: '' },
};

/** Asserts that parsing `expr` throws invalid_argument on `field` with a message matching `message`. */
const rejects = (expr: string, message: RegExp, field = 'constraint'): void => {
  assert.throws(
    () => parseConstraint(expr, field),
    (e: unknown) => {
      assert.ok(e instanceof ShoalError);
      assert.equal(e.code, 'invalid_argument');
      assert.match(e.message, message);
      assert.equal(e.violations[0]?.field, field);
      return true;
    },
  );
};

describe('parseConstraint', () => {
  it('parses == and != for every kind of key', () => {
    assert.deepEqual(parseConstraint('node.labels.zone==eu'), { key: 'node.labels.zone', op: '==', value: 'eu' });
    assert.deepEqual(parseConstraint('node.role!=manager'), { key: 'node.role', op: '!=', value: 'manager' });
    assert.deepEqual(parseConstraint('node.id==abc'), { key: 'node.id', op: '==', value: 'abc' });
    assert.deepEqual(parseConstraint('node.hostname==h1'), { key: 'node.hostname', op: '==', value: 'h1' });
    assert.deepEqual(parseConstraint('engine.labels.os==linux'), { key: 'engine.labels.os', op: '==', value: 'linux' });
    assert.deepEqual(parseConstraint('node.labels.com.example/tier==gold'), { key: 'node.labels.com.example/tier', op: '==', value: 'gold' });
  });

  it('trims spaces around the key, the operator and the value, and keeps the value whole', () => {
    assert.deepEqual(parseConstraint('  node.labels.zone  ==  eu west  '), { key: 'node.labels.zone', op: '==', value: 'eu west' });
    assert.deepEqual(parseConstraint('node.labels.expr==a==b'), { key: 'node.labels.expr', op: '==', value: 'a==b' });
    assert.deepEqual(parseConstraint('node.labels.expr!==x'), { key: 'node.labels.expr', op: '!=', value: '=x' });
  });

  it('rejects expressions without an operator, naming the expression and the expected form', () => {
    rejects('node.labels.zone', /^invalid constraint: 'node.labels.zone' is not of the form KEY==VALUE or KEY!=VALUE$/);
    rejects('node.labels.zone=eu', /is not of the form KEY==VALUE or KEY!=VALUE/);
    rejects('node.labels.zone>=eu', /is not of the form/);
    rejects('', /is not of the form/);
    rejects('==eu', /is not of the form/);
  });

  it('rejects unknown keys, listing the known ones', () => {
    rejects('zone==eu', /^invalid constraint: 'zone==eu': unknown key 'zone' \(use node\.id, node\.hostname, node\.role, node\.labels\.KEY or engine\.labels\.KEY\)$/);
    rejects('node.labels.==eu', /unknown key 'node\.labels\.'/);
    rejects('node.ip==1.2.3.4', /unknown key 'node\.ip'/);
    rejects('node.labels.a b==c', /is not of the form/);
  });

  it('rejects an empty value', () => {
    rejects('node.labels.zone==', /^invalid constraint: 'node.labels.zone==': empty value$/);
    rejects('node.labels.zone!=   ', /empty value/);
  });

  it('names the field it was given', () => {
    rejects('bogus', /^invalid placement\.constraints\[2\]: /, 'placement.constraints[2]');
  });

  it('formats a parsed constraint back to an expression that parses to the same constraint', () => {
    const keyArb = fc.oneof(
      fc.constantFrom('node.id', 'node.hostname', 'node.role'),
      fc.stringMatching(/^(node|engine)\.labels\.[A-Za-z0-9_.\-/]{1,12}$/),
    );
    // Values keep inner spaces but not outer ones (the parser trims them).
    const valueArb = fc.stringMatching(/^[!-~]([ -~]{0,10}[!-~])?$/);
    fc.assert(
      fc.property(keyArb, fc.constantFrom('==' as const, '!=' as const), valueArb, (key, op, value) => {
        const c = { key, op, value };
        assert.deepEqual(parseConstraint(formatConstraint(c)), c);
      }),
      { numRuns: 200 },
    );
  });
});

describe('nodeAttribute / matchConstraint', () => {
  it('reads each attribute of a node', () => {
    assert.equal(nodeAttribute(node, 'node.id'), 'node-1');
    assert.equal(nodeAttribute(node, 'node.hostname'), 'alpha');
    assert.equal(nodeAttribute(node, 'node.role'), 'manager');
    assert.equal(nodeAttribute(node, 'node.labels.zone'), 'eu');
    assert.equal(nodeAttribute(node, 'node.labels.com.example/tier'), 'gold');
    assert.equal(nodeAttribute(node, 'engine.labels.os'), 'linux');
    assert.equal(nodeAttribute(node, 'node.labels.missing'), undefined);
    assert.equal(nodeAttribute(node, 'engine.labels.zone'), undefined);
    assert.equal(nodeAttribute(node, 'node.unknown'), undefined);
  });

  const matches = (expr: string): boolean => matchConstraint(node, parseConstraint(expr));

  it('== holds only when the attribute equals the value exactly', () => {
    assert.equal(matches('node.labels.zone==eu'), true);
    assert.equal(matches('node.labels.zone==us'), false);
    assert.equal(matches('node.labels.zone==EU'), false);
    assert.equal(matches('node.role==manager'), true);
    assert.equal(matches('node.hostname==alpha'), true);
    assert.equal(matches('node.id==node-1'), true);
    assert.equal(matches('engine.labels.os==linux'), true);
  });

  it('!= holds when the attribute differs', () => {
    assert.equal(matches('node.labels.zone!=us'), true);
    assert.equal(matches('node.labels.zone!=eu'), false);
    assert.equal(matches('node.role!=worker'), true);
  });

  it('a missing label never equals and always differs', () => {
    assert.equal(matches('node.labels.missing==x'), false);
    assert.equal(matches('node.labels.missing!=x'), true);
    assert.equal(matches('engine.labels.zone==eu'), false);
    assert.equal(matches('engine.labels.zone!=eu'), true);
  });

  it('a label set to the empty string is present, not missing', () => {
    assert.equal(nodeAttribute(node, 'node.labels.empty'), '');
  });

  it('== and != are complements for every key and value', () => {
    const keyArb = fc.constantFrom('node.id', 'node.hostname', 'node.role', 'node.labels.zone', 'node.labels.missing', 'engine.labels.os');
    const valueArb = fc.constantFrom('eu', 'us', 'alpha', 'manager', 'worker', 'node-1', 'linux', 'x');
    fc.assert(
      fc.property(keyArb, valueArb, (key, value) => {
        assert.equal(matchConstraint(node, { key, op: '==', value }), !matchConstraint(node, { key, op: '!=', value }));
        assert.equal(matchConstraint(node, { key, op: '==', value }), nodeAttribute(node, key) === value);
      }),
      { numRuns: 100 },
    );
  });
});
