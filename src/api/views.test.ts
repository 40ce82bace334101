// Tests of the listing rows: `service ps` order and whether each task runs its service's current spec.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node, Task } from '../core/index.js';
import { makeNode } from '../scheduler/testing.js';
import { sampleService, sampleTask } from '../store/contract.js';
import { taskRows } from './views.js';

const NODES: ReadonlyMap<string, Node> = new Map([makeNode('a', { hostname: 'alpha' }), makeNode('b', { hostname: 'beta' })].map((n) => [n.id, n]));

const stored = (t: Task, createdAt: string, spec: Task['spec']): Task => ({ ...t, spec, meta: { version: 1, createdAt, updatedAt: createdAt } });

describe('taskRows', () => {
  const service = { ...sampleService('web', 2), meta: { version: 2, createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-01T00:00:00.000Z' } };
  const template = service.spec.task;
  const old = { ...template, container: { ...template.container, image: 'shoal-test/busybox:old' } };
  // Equal to the template but another object (as a task read back from the store is).
  const copy = structuredClone(template);
  const tasks = [
    stored(sampleTask('t-2', 'web', 'b', 2), '2024-01-01T00:00:03.000Z', template),
    stored(sampleTask('t-1-old', 'web', 'a', 1), '2024-01-01T00:00:01.000Z', old),
    stored(sampleTask('t-1-new', 'web', 'a', 1), '2024-01-01T00:00:02.000Z', copy),
    stored(sampleTask('t-1-old2', 'web', 'a', 1), '2024-01-01T00:00:00.500Z', old),
  ];

  it('lists by slot, newest first within a slot, and says which tasks run the current spec', () => {
    const rows = taskRows(tasks, NODES, service);
    assert.deepEqual(
      rows.map((r) => [r.id, r.node, r.upToDate]),
      [
        ['t-1-new', 'alpha', true],
        ['t-1-old', 'alpha', false],
        ['t-1-old2', 'alpha', false],
        ['t-2', 'beta', true],
      ],
    );
  });

  it('says nothing of the spec once the service is gone', () => {
    for (const r of taskRows(tasks, NODES, undefined)) assert.equal('upToDate' in r, false, `row ${r.id}`);
  });
});
