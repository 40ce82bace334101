// Tests of the Prometheus registry's text exposition format: headers, escaping, gauges, histogram buckets, _sum/_count.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ShoalError } from '../core/index.js';
import { Registry, escapeHelp, escapeLabelValue, formatValue } from './metrics.js';

describe('metrics registry', () => {
  it('renders gauges with HELP and TYPE, from a number or labelled samples read at each scrape', () => {
    const r = new Registry();
    let services = 2;
    r.gauge('shoal_services', 'Services.', () => services);
    r.gauge('shoal_nodes', 'Nodes by status.', () => [
      { labels: { status: 'ready' }, value: 3 },
      { labels: { status: 'down' }, value: 0 },
    ]);
    assert.equal(
      r.render(),
      [
        '# HELP shoal_services Services.',
        '# TYPE shoal_services gauge',
        'shoal_services 2',
        '# HELP shoal_nodes Nodes by status.',
        '# TYPE shoal_nodes gauge',
        'shoal_nodes{status="ready"} 3',
        'shoal_nodes{status="down"} 0',
        '',
      ].join('\n'),
    );
    services = 5;
    assert.match(r.render(), /^shoal_services 5$/m);
  });

  it('escapes backslash and newline in HELP, and also the double quote in label values', () => {
    assert.equal(escapeHelp('a\\b\nc "q"'), 'a\\\\b\\nc "q"');
    assert.equal(escapeLabelValue('a\\b\nc "q"'), 'a\\\\b\\nc \\"q\\"');
    const r = new Registry();
    r.gauge('g', 'line one\nline two \\ end', () => [{ labels: { path: 'C:\\dir "x"\n' }, value: 1 }]);
    assert.equal(r.render(), '# HELP g line one\\nline two \\\\ end\n# TYPE g gauge\ng{path="C:\\\\dir \\"x\\"\\n"} 1\n');
  });

  it('formats special values as Prometheus parses them', () => {
    assert.equal(formatValue(Infinity), '+Inf');
    assert.equal(formatValue(-Infinity), '-Inf');
    assert.equal(formatValue(NaN), 'NaN');
    assert.equal(formatValue(0.25), '0.25');
    assert.equal(formatValue(3), '3');
  });

  it('renders a histogram with cumulative buckets, +Inf, _sum and _count; unlabelled, it starts at zero', () => {
    const r = new Registry();
    const h = r.histogram('wait_seconds', 'Waits.', { buckets: [1, 0.125, 0.5] });
    const empty = r.render();
    assert.match(empty, /^wait_seconds_bucket\{le="0.125"\} 0$/m);
    assert.match(empty, /^wait_seconds_count 0$/m);
    for (const v of [0.0625, 0.125, 0.25, 2]) h.observe(v);
    assert.equal(
      r.render(),
      [
        '# HELP wait_seconds Waits.',
        '# TYPE wait_seconds histogram',
        'wait_seconds_bucket{le="0.125"} 2',
        'wait_seconds_bucket{le="0.5"} 3',
        'wait_seconds_bucket{le="1"} 3',
        'wait_seconds_bucket{le="+Inf"} 4',
        'wait_seconds_sum 2.4375',
        'wait_seconds_count 4',
        '',
      ].join('\n'),
    );
  });

  it('keeps one series per label set, whatever order the labels are given in, with le last', () => {
    const r = new Registry();
    const h = r.histogram('req_seconds', 'Requests.', { buckets: [0.5], labelNames: ['method', 'code'] });
    assert.equal(r.render(), '# HELP req_seconds Requests.\n# TYPE req_seconds histogram\n', 'a labelled histogram has no series until observed');
    h.observe(0.2, { method: 'GET', code: '200' });
    h.observe(0.7, { code: '200', method: 'GET' });
    h.observe(0.1, { method: 'POST', code: '400' });
    const lines = r.render().split('\n');
    assert.ok(lines.includes('req_seconds_bucket{method="GET",code="200",le="0.5"} 1'));
    assert.ok(lines.includes('req_seconds_bucket{method="GET",code="200",le="+Inf"} 2'));
    assert.ok(lines.includes('req_seconds_count{method="GET",code="200"} 2'));
    assert.ok(lines.includes('req_seconds_sum{method="POST",code="400"} 0.1'));
    assert.equal(lines.filter((l) => l.startsWith('req_seconds_count')).length, 2);
  });

  it('refuses invalid names, reused names, a label named le, and observations with other labels', () => {
    const r = new Registry();
    const internal = (e: unknown): boolean => e instanceof ShoalError && e.code === 'internal';
    assert.throws(() => r.gauge('bad-name', 'x', () => 1), internal);
    assert.throws(() => r.histogram('h', 'x', { buckets: [1], labelNames: ['__reserved'] }), internal);
    assert.throws(() => r.histogram('h2', 'x', { buckets: [1], labelNames: ['le'] }), internal);
    r.gauge('dup', 'x', () => 1);
    assert.throws(() => r.gauge('dup', 'x', () => 1), internal);
    const h = r.histogram('h3', 'x', { buckets: [1], labelNames: ['method'] });
    assert.throws(() => h.observe(1, { route: '/' }), internal);
    assert.throws(() => h.observe(1), internal);
  });
});
