// Tests of the logger: one JSON line per event, level filtering, child fields, and redaction of secret-looking keys.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger, redact } from './logger.js';
import type { Level } from './logger.js';

/** A logger at `level` whose lines are parsed into `lines`. */
const capture = (level: Level = 'debug', base?: Record<string, unknown>) => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>), ...(base ? { base } : {}) });
  return { logger, lines };
};

describe('redact', () => {
  it('replaces the values of token, secret, password and similar keys, whatever their case', () => {
    const out = redact({
      token: 'a',
      adminToken: 'b',
      joinTOKEN: 'c',
      secret: 'd',
      clientSecret: 'e',
      password: 'f',
      dbPassword: 'g',
      Authorization: 'Bearer h',
      credentials: 'i',
      apiKey: 'j',
      privateKey: 'k',
    });
    for (const [k, v] of Object.entries(out)) assert.equal(v, '[redacted]', k);
  });

  it('keeps ordinary fields as they are and renders errors as their message', () => {
    const out = redact({ nodeId: 'n1', attempt: 3, ok: true, list: [1, 2], keys: 4, error: new Error('boom') });
    assert.deepEqual(out, { nodeId: 'n1', attempt: 3, ok: true, list: [1, 2], keys: 4, error: 'boom' });
  });

  it('redacts whatever the value is, not only strings', () => {
    assert.deepEqual(redact({ token: { value: 'x' }, secret: 42, password: undefined }), {
      token: '[redacted]',
      secret: '[redacted]',
      password: '[redacted]',
    });
  });

  it('does not modify its argument', () => {
    const fields = { token: 'x', n: 1 };
    redact(fields);
    assert.deepEqual(fields, { token: 'x', n: 1 });
  });
});

describe('createLogger', () => {
  it('writes one JSON line per event with time, level, message and fields', () => {
    const { logger, lines } = capture();
    logger.info('node is ready', { nodeId: 'n1' });
    assert.equal(lines.length, 1);
    const [line] = lines;
    assert.equal(line?.level, 'info');
    assert.equal(line?.msg, 'node is ready');
    assert.equal(line?.nodeId, 'n1');
    assert.match(String(line?.time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  it('never writes a secret given as a field, a base field or a child field', () => {
    const raw: string[] = [];
    const logger = createLogger({ level: 'debug', write: (l) => raw.push(l), base: { clusterSecret: 'hunter1' } });
    logger.warn('joining', { token: 'SHOAL-1-abc-hunter2', password: 'hunter3' });
    logger.child({ nodeToken: 'hunter4' }).error('session refused', { authorization: 'Bearer hunter5' });
    assert.equal(raw.length, 2);
    for (const line of raw) assert.doesNotMatch(line, /hunter/);
    assert.match(raw[1] ?? '', /"nodeToken":"\[redacted\]"/);
  });

  it('drops events below its level', () => {
    const { logger, lines } = capture('warn');
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    assert.deepEqual(
      lines.map((l) => l.level),
      ['warn', 'error'],
    );
  });

  it('defaults to info', () => {
    const lines: string[] = [];
    const logger = createLogger({ write: (l) => lines.push(l) });
    logger.debug('hidden');
    logger.info('shown');
    assert.equal(lines.length, 1);
  });

  it('gives children the parent fields plus their own, event fields winning', () => {
    const { logger, lines } = capture('debug', { component: 'manager' });
    const child = logger.child({ nodeId: 'n1', attempt: 1 });
    child.info('retry', { attempt: 2 });
    logger.info('parent');
    assert.equal(lines[0]?.component, 'manager');
    assert.equal(lines[0]?.nodeId, 'n1');
    assert.equal(lines[0]?.attempt, 2);
    assert.equal(lines[1]?.nodeId, undefined);
  });
});

describe('redact at depth', () => {
  it('redacts nested secret fields and keeps ordinary keys', () => {
    const out = redact({ config: { password: 'p', name: 'n', inner: [{ apiKey: 'k' }] }, sortKey: 's', nodeToken: 't' });
    assert.deepEqual(out, { config: { password: '[redacted]', name: 'n', inner: [{ apiKey: '[redacted]' }] }, sortKey: 's', nodeToken: '[redacted]' });
  });
});
