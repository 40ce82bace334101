// Unit tests of store URL parsing: etcd and etcds host lists, SQLite paths, and clear refusals of bad input.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ShoalError } from '../../core/index.js';
import { parseStoreUrl } from './url.js';

describe('parseStoreUrl', () => {
  it('turns etcd:// host lists into http endpoints and etcds:// into https ones', () => {
    assert.deepEqual(parseStoreUrl('etcd://10.0.0.1:2379'), { kind: 'etcd', endpoints: ['http://10.0.0.1:2379'] });
    assert.deepEqual(parseStoreUrl('etcd://a.example:2379,b.example:12379,127.0.0.1:3000/'), {
      kind: 'etcd',
      endpoints: ['http://a.example:2379', 'http://b.example:12379', 'http://127.0.0.1:3000'],
    });
    assert.deepEqual(parseStoreUrl('etcds://etcd-1:2379,etcd-2:2379'), { kind: 'etcd', endpoints: ['https://etcd-1:2379', 'https://etcd-2:2379'] });
    assert.deepEqual(parseStoreUrl('ETCD://[::1]:2379, [fd00::2]'), { kind: 'etcd', endpoints: ['http://[::1]:2379', 'http://[fd00::2]:2379'] });
    assert.deepEqual(parseStoreUrl('etcd://etcd-1'), { kind: 'etcd', endpoints: ['http://etcd-1:2379'] }, "etcd's client port by default");
  });

  it('takes sqlite:///abs/path and plain paths as the SQLite file', () => {
    assert.deepEqual(parseStoreUrl('sqlite:///var/lib/shoal/store.db'), { kind: 'sqlite', path: '/var/lib/shoal/store.db' });
    assert.deepEqual(parseStoreUrl('/tmp/x/store.db'), { kind: 'sqlite', path: '/tmp/x/store.db' });
    assert.deepEqual(parseStoreUrl('data/store.db'), { kind: 'sqlite', path: 'data/store.db' });
  });

  it('refuses bad input with invalid_argument, naming the input and what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['etcd://', /no host/],
      ['etcd://a:2379,,b:2379', /empty one/],
      ['etcd://a:port', /port 'port'/],
      ['etcd://a:0', /port '0'/],
      ['etcd://a:65536', /port '65536'/],
      ['etcd://a:2379/prefix', /no path/],
      ['etcd://a b:2379', /not host:port/],
      ['etcd://::1:2379', /not host:port/],
      ['http://a:2379', /unknown scheme 'http'/],
      ['sqlite://relative/store.db', /absolute path/],
      ['', /empty/],
    ];
    for (const [url, why] of cases) {
      assert.throws(
        () => parseStoreUrl(url),
        (e: unknown) => e instanceof ShoalError && e.code === 'invalid_argument' && e.message.includes(`'${url}'`) && why.test(e.message),
        url,
      );
    }
  });

  it('refuses credentials in a URL without repeating them', () => {
    assert.throws(
      () => parseStoreUrl('etcd://root:s3cret@a:2379'),
      (e: unknown) => e instanceof ShoalError && e.code === 'invalid_argument' && !e.message.includes('s3cret'),
    );
  });
});
