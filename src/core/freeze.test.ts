// Tests of deepFreeze: what it promises the JSON memos that rely on it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deepFreeze, isDeepFrozen } from './freeze.js';

describe('deepFreeze', () => {
  it('freezes every level, and only what it froze counts as frozen whole', () => {
    const spec = deepFreeze({ container: { image: 'a', env: ['X=1'] } });
    assert.ok(isDeepFrozen(spec) && isDeepFrozen(spec.container) && isDeepFrozen(spec.container.env));
    assert.throws(() => (spec.container as { image: string }).image = 'b', TypeError);
    // A top-level Object.freeze leaves what it holds changeable: not frozen whole.
    const shallow = Object.freeze({ container: { image: 'a' } });
    assert.equal(isDeepFrozen(shallow), false);
    shallow.container.image = 'b';
    assert.equal(shallow.container.image, 'b');
  });
});
