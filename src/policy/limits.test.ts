// Tests of the static limits: the cost estimate (comprehensions multiply by their bounds) and the regex safety check.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from '@marcbachmann/cel-js';
import { DEFAULT_BOUND, MAX_POLICY_COST, estimateCost, regexProblem, unsafeRegex } from './limits.js';

const cost = (expression: string, params: unknown = {}): number => estimateCost(parse(expression).ast, params);

describe('estimateCost', () => {
  it('charges about one unit per node for plain expressions', () => {
    assert.equal(cost('true'), 1);
    assert.equal(cost('object.replicas <= params.max'), 5);
  });

  it('multiplies a comprehension body by the bound of what it iterates', () => {
    // object.labels holds at most 64 entries; each iteration runs `k != ''` (3 units) plus one.
    assert.equal(cost("object.labels.all(k, k != '')"), 3 + 64 * (1 + 3));
    // Unknown collections get the default bound.
    assert.equal(cost('object.env.exists(e, true)'), 3 + DEFAULT_BOUND * 2);
  });

  it('multiplies nested comprehensions', () => {
    const inner = cost('object.env.exists(b, a == b)');
    assert.equal(cost('object.env.all(a, object.env.exists(b, a == b))'), 3 + DEFAULT_BOUND * (1 + inner));
    assert.ok(cost('object.env.all(a, object.env.exists(b, a == b))') > MAX_POLICY_COST);
  });

  it('uses the real sizes of params, known at compile time', () => {
    const params = { registries: ['a.example', 'b.example'] };
    const small = cost("params.registries.exists(r, object.image.startsWith(r + '/'))", params);
    const unknown = cost("params.registries.exists(r, object.image.startsWith(r + '/'))", {});
    assert.ok(small < 50, `${small}`);
    assert.ok(unknown > DEFAULT_BOUND, `${unknown}`);
  });

  it('sizes literal lists, and what filter and map return', () => {
    assert.equal(cost('[1, 2, 3].all(x, true)'), 1 + 4 + 3 * 2);
    assert.equal(cost('[1, 2, 3].filter(x, true).all(y, true)'), 1 + (1 + 4 + 3 * 2) + 3 * 2);
  });

  it('charges `in` and string scans by the size of what they search', () => {
    assert.ok(cost('request.user in request.teams') > 1000);
    assert.ok(cost("object.name.contains('a')") < cost("params.text.contains('a')"));
  });
});

describe('unsafeRegex', () => {
  it('allows ordinary patterns', () => {
    for (const p of ['^latte$', '^[a-z0-9-]+$', '^registry\\.example/.*', '^(web|api)-[0-9]+$', '(ab)+', '\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}', 'a.*b.*c', '[(]+', '(?:x)?y+']) {
      assert.equal(unsafeRegex(p), undefined, p);
    }
  });

  it('refuses nested quantifiers and repeated alternations, which backtrack exponentially', () => {
    for (const p of ['(a+)+', '(a*)*', '(a|a)*', '^(a+)+$', '(?:a?){20}', '((ab)+)+', '(x+x+)+y', '(\\w+\\s?)*$']) {
      assert.match(unsafeRegex(p) ?? '', /repeated group/, p);
    }
  });

  it('refuses backreferences, too many unbounded quantifiers, and invalid patterns', () => {
    assert.match(unsafeRegex('(a)\\1') ?? '', /backreferences/);
    assert.match(unsafeRegex('a.*b.*c.*d.*') ?? '', /at most 3 unbounded/);
    assert.match(unsafeRegex('(a') ?? '', /invalid regular expression/);
  });
});

describe('regexProblem', () => {
  it('checks literal patterns and patterns from params; refuses patterns computed at run time', () => {
    assert.equal(regexProblem(parse("object.name.matches('^[a-z]+$')").ast, {}), undefined);
    assert.equal(regexProblem(parse('object.name.matches(params.pattern)').ast, { pattern: '^a' }), undefined);
    assert.match(regexProblem(parse('object.name.matches(params.pattern)').ast, { pattern: '(a+)+' })?.reason ?? '', /unsafe pattern/);
    assert.match(regexProblem(parse('object.name.matches(object.image)').ast, {})?.reason ?? '', /must be a string literal or a string in params/);
    assert.match(regexProblem(parse("object.env.exists(e, e.matches('(a|b)*'))").ast, {})?.reason ?? '', /unsafe pattern/);
  });
});
