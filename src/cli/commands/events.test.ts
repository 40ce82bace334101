// Tests of how `shoal events` prints an event and when it warns that the manager's history does not reach back.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatEvent, historyNotice } from './events.js';

describe('shoal events output', () => {
  it('prints an event as a docker-like line: time, type, action, id, then name and attributes', () => {
    const line = formatEvent({
      revision: 4,
      time: '2024-06-01T11:00:00.000Z',
      type: 'task',
      action: 'state',
      id: 'abc123',
      name: 'web.1',
      attributes: { service: 'web', state: 'running', 'state.old': 'starting' },
    });
    assert.equal(line, '2024-06-01T11:00:00.000Z task state abc123 (name=web.1, service=web, state=running, state.old=starting)');
  });

  it('warns only when --since reaches back before the history the manager keeps', () => {
    const start = '2024-06-01T11:00:00.000Z';
    assert.equal(historyNotice(undefined, start), undefined);
    assert.equal(historyNotice(Date.parse(start), start), undefined);
    assert.match(historyNotice(Date.parse(start) - 1, start) ?? '', /history starts at 2024-06-01T11:00:00.000Z/);
  });
});
