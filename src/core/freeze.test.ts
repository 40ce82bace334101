// Tests of deepFreeze and jsonOf: what they promise the JSON memos that rely on them (the store's writes, the
// dispatcher's assignments).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deepFreeze, jsonOf } from './freeze.js';

describe('deepFreeze', () => {
  it('freezes every level', () => {
    const spec = deepFreeze({ container: { image: 'a', env: ['X=1'] } });
    assert.ok(Object.isFrozen(spec) && Object.isFrozen(spec.container) && Object.isFrozen(spec.container.env));
    assert.throws(() => ((spec.container as { image: string }).image = 'b'), TypeError);
  });
});

describe('jsonOf', () => {
  it('serializes an object frozen whole once', (t) => {
    const spec = deepFreeze({ container: { image: 'a' } });
    const stringify = t.mock.method(JSON, 'stringify');
    assert.equal(jsonOf(spec), '{"container":{"image":"a"}}');
    assert.equal(jsonOf(spec), '{"container":{"image":"a"}}');
    assert.equal(stringify.mock.callCount(), 1);
  });

  it('serializes anything else each time: a top-level Object.freeze leaves what it holds changeable', () => {
    const shallow = Object.freeze({ container: { image: 'a' } });
    assert.equal(jsonOf(shallow), '{"container":{"image":"a"}}');
    shallow.container.image = 'b';
    assert.equal(jsonOf(shallow), '{"container":{"image":"b"}}');
  });
});
