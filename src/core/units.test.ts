// Tests of unit parsing and formatting: durations, byte sizes and CPU counts, with round trips.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ShoalError } from './errors.js';
import { formatBytes, formatDuration, parseBytes, parseCpus, parseDuration } from './units.js';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** Asserts `fn` throws invalid_argument on `field` with a message matching `message`. */
const rejects = (fn: () => unknown, field: string, message: RegExp): void => {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ShoalError);
    assert.equal(e.code, 'invalid_argument');
    assert.equal(e.violations[0]?.field, field);
    assert.match(e.message, message);
    return true;
  });
};

describe('parseDuration', () => {
  it('parses single and compound Go-style durations into ms', () => {
    const cases: [string, number][] = [
      ['0', 0],
      ['0s', 0],
      ['500ms', 500],
      ['5s', 5000],
      ['1.5s', 1500],
      ['2m', 120_000],
      ['1m30s', 90_000],
      ['1h', 3_600_000],
      ['1h2m3s4ms', 3_723_004],
      ['  10s ', 10_000],
      ['0.5ms', 1],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
  });

  it('rejects text that is not a duration, naming it and the field', () => {
    for (const text of ['', ' ', '5', 's', '5x', '5 s', '-5s', '5s ago', '1m 30s', '1e3s', '5min', 'ms5', '.5s']) {
      rejects(() => parseDuration(text, '--restart-delay'), '--restart-delay', /is not a duration \(e\.g\. 500ms, 5s, 1m30s\)/);
    }
    rejects(() => parseDuration('soon'), 'duration', /^invalid duration: 'soon' is not a duration/);
  });
});

describe('formatDuration', () => {
  it('uses the largest unit that divides the value', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(5000), '5s');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(120_000), '2m');
    assert.equal(formatDuration(7_200_000), '2h');
  });

  it('round-trips through parseDuration for every whole number of ms', () => {
    fc.assert(
      fc.property(fc.nat({ max: 10 * 24 * 3_600_000 }), (ms) => {
        assert.equal(parseDuration(formatDuration(ms)), ms);
      }),
      { numRuns: 200 },
    );
  });
});

describe('parseBytes', () => {
  it('parses plain numbers and binary units, case-insensitively, with optional (i)b suffix', () => {
    const cases: [string, number][] = [
      ['0', 0],
      ['1024', 1024],
      ['10b', 10],
      ['10B', 10],
      ['64k', 64 * KiB],
      ['64KiB', 64 * KiB],
      ['64kb', 64 * KiB],
      ['512m', 512 * MiB],
      ['512MB', 512 * MiB],
      ['1.5G', 1.5 * GiB],
      ['2 GiB', 2 * GiB],
      ['1t', 1024 * GiB],
      [' 3m ', 3 * MiB],
    ];
    for (const [text, n] of cases) assert.equal(parseBytes(text), n, text);
  });

  it('rejects text that is not a size', () => {
    for (const text of ['', 'm', '-1m', '1x', '1.5.5g', '1 g b', '1mm', '1bb', '1ib', '1kbb', '1e3', 'lots']) {
      rejects(() => parseBytes(text, '--reserve-memory'), '--reserve-memory', /is not a size \(e\.g\. 64M, 1\.5G\)/);
    }
  });
});

describe('formatBytes', () => {
  it('uses the largest binary unit not above the value, with at most two decimals', () => {
    assert.equal(formatBytes(0), '0B');
    assert.equal(formatBytes(1023), '1023B');
    assert.equal(formatBytes(1024), '1KiB');
    assert.equal(formatBytes(1536), '1.5KiB');
    assert.equal(formatBytes(512 * MiB), '512MiB');
    assert.equal(formatBytes(1.5 * GiB), '1.5GiB');
    assert.equal(formatBytes(GiB + 1), '1GiB');
    assert.equal(formatBytes(4096 * GiB), '4096GiB');
  });

  it('parses back to within rounding of the original', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 45 }), (n) => {
        const back = parseBytes(formatBytes(n));
        const unit = n >= GiB ? GiB : n >= MiB ? MiB : n >= KiB ? KiB : 1;
        assert.ok(Math.abs(back - n) <= 0.005 * unit + 0.5, `${n} -> ${formatBytes(n)} -> ${back}`);
      }),
      { numRuns: 200 },
    );
  });
});

describe('parseCpus', () => {
  it('parses whole and fractional CPU counts into nano-CPUs', () => {
    assert.equal(parseCpus('2'), 2e9);
    assert.equal(parseCpus('0.5'), 5e8);
    assert.equal(parseCpus('0'), 0);
    assert.equal(parseCpus(' 1.25 '), 1.25e9);
    assert.equal(parseCpus('0.000000001'), 1);
  });

  it('rejects what is not a non-negative decimal number', () => {
    for (const text of ['', ' ', '-1', '1e3', 'two', '1.', '.5', '0x10', 'Infinity', '1,5']) {
      rejects(() => parseCpus(text, '--reserve-cpu'), '--reserve-cpu', /is not a CPU count \(e\.g\. 0\.5, 2\)/);
    }
  });
});
