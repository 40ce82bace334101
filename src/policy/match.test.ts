// Tests of policy matching: globs, image references with and without tags, and every match field.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PolicyDocument, PolicyOperation } from '../core/index.js';
import { compileMatch, globsToRegExp, imageRepository, matchSubject, matchesSubject } from './match.js';
import { serviceSpec, type SpecOptions } from './testing.js';

const matches = (match: PolicyDocument['match'], spec: SpecOptions = {}, operation: PolicyOperation = 'create'): boolean =>
  matchesSubject(compileMatch(match), matchSubject(operation, serviceSpec(spec)));

describe('globsToRegExp', () => {
  it('* matches any run of characters, / and : included; ? one character; the rest is literal', () => {
    const re = globsToRegExp(['web-*', 'registry.example/*', 'a?c', 'x+y']);
    for (const s of ['web-', 'web-1', 'web-a/b', 'registry.example/team/app:1.2', 'abc', 'a.c', 'x+y']) assert.ok(re.test(s), s);
    for (const s of ['web', 'xweb-1', 'registry.example', 'registryXexample/app', 'ac', 'abbc', 'xxy']) assert.ok(!re.test(s), s);
  });
});

describe('imageRepository', () => {
  it('drops the tag and digest but not a registry port', () => {
    assert.equal(imageRepository('registry.example/x:1.2'), 'registry.example/x');
    assert.equal(imageRepository('registry.example:5000/x'), 'registry.example:5000/x');
    assert.equal(imageRepository('registry.example:5000/x:1@sha256:abc'), 'registry.example:5000/x');
    assert.equal(imageRepository('busybox'), 'busybox');
  });
});

describe('match', () => {
  it('an empty match applies to every request', () => {
    assert.ok(matches({}, {}, 'remove'));
  });

  it('operations', () => {
    assert.ok(matches({ operations: ['scale', 'update'] }, {}, 'scale'));
    assert.ok(!matches({ operations: ['scale', 'update'] }, {}, 'create'));
  });

  it('projects, exactly', () => {
    assert.ok(matches({ projects: ['payments'] }, { project: 'payments' }));
    assert.ok(!matches({ projects: ['payments'] }, { project: 'payments-2' }));
  });

  it('a spec without a project is in the default project', () => {
    const spec = serviceSpec();
    delete spec.project;
    assert.ok(matchesSubject(compileMatch({ projects: ['default'] }), matchSubject('create', spec)));
  });

  it('service name globs', () => {
    assert.ok(matches({ services: ['latte', 'web-*'] }, { name: 'latte' }));
    assert.ok(matches({ services: ['latte', 'web-*'] }, { name: 'web-frontend' }));
    assert.ok(!matches({ services: ['latte', 'web-*'] }, { name: 'latte2' }));
  });

  it('labels: every one present with the same value', () => {
    const match = { labels: { team: 'payments', tier: 'web' } };
    assert.ok(matches(match, { labels: { team: 'payments', tier: 'web', other: 'x' } }));
    assert.ok(!matches(match, { labels: { team: 'payments' } }));
    assert.ok(!matches(match, { labels: { team: 'payments', tier: 'db' } }));
  });

  it('an image pattern without a tag covers every tag and digest of that image', () => {
    const match = { images: ['registry.example/x'] };
    for (const image of ['registry.example/x', 'registry.example/x:1.2', 'registry.example/x@sha256:0123']) assert.ok(matches(match, { image }), image);
    for (const image of ['registry.example/xy:1', 'registry.example/team/x:1', 'other.example/x:1']) assert.ok(!matches(match, { image }), image);
  });

  it('an image pattern with a tag matches the full reference', () => {
    const match = { images: ['registry.example/x:1.*'] };
    assert.ok(matches(match, { image: 'registry.example/x:1.4' }));
    assert.ok(!matches(match, { image: 'registry.example/x:2.0' }));
  });

  it('registry globs', () => {
    const match = { images: ['registry.example/*'] };
    assert.ok(matches(match, { image: 'registry.example/team/app:1' }));
    assert.ok(!matches(match, { image: 'docker.io/library/busybox' }));
  });

  it('all fields must match together', () => {
    const match: PolicyDocument['match'] = { operations: ['scale'], projects: ['default'], services: ['lat*'], labels: { team: 'p' }, images: ['registry.example/*'] };
    assert.ok(matches(match, { labels: { team: 'p' } }, 'scale'));
    assert.ok(!matches(match, { labels: { team: 'p' } }, 'update'));
    assert.ok(!matches(match, { labels: { team: 'p' }, image: 'busybox' }, 'scale'));
  });
});
