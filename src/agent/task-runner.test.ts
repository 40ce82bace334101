// The TaskRunner against the real exec runtime (plain processes in a temp dir): a report the manager lost (its
// assignments show the task behind what the node reported) is said again, and only then.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TaskState } from '../core/index.js';
import { silentLogger } from '../lib/logger.js';
import type { AssignedTask, TaskStatusUpdate } from '../protocol/index.js';
import { ExecRuntime } from '../runtime/exec/exec-runtime.js';
import { TaskRunner } from './task-runner.js';

const task = (state: TaskState): AssignedTask => ({
  id: 'task-1',
  serviceId: 'svc',
  serviceName: 'svc',
  slot: 1,
  nodeId: 'node-1',
  serviceVersion: 1,
  desiredState: 'running',
  state,
  containerId: '',
  spec: {
    container: { image: 'sleeper', command: ['/bin/sleep', '30'], env: [], labels: {}, stopGracePeriodMs: 100 },
    resources: { reservations: { nanoCpus: 0, memoryBytes: 0 }, limits: { nanoCpus: 0, memoryBytes: 0 } },
    restartPolicy: { condition: 'any', delayMs: 0, maxAttempts: 0, windowMs: 0 },
    placement: { constraints: [], preferences: [] },
  },
});

const until = async (what: string, check: () => boolean): Promise<void> => {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(check(), `timed out waiting for ${what}`);
};

describe('TaskRunner', () => {
  let dir = '';
  let runtime: ExecRuntime;
  const reports: TaskStatusUpdate[] = [];
  let runner: TaskRunner;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-runner-'));
    runtime = new ExecRuntime({ dir });
    runner = new TaskRunner({ nodeId: 'node-1', runtime, logger: silentLogger, report: (u) => reports.push(u) });
  });

  after(async () => {
    // Nothing assigned any more: the runner stops and removes the process.
    runner.setAssignments([]);
    for (let i = 0; i < 100 && (await runtime.list({ nodeId: 'node-1' })).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    await runtime.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('says a lost report again when the manager is behind, and only then', async () => {
    runner.setAssignments([task('assigned')]);
    await until('running reported', () => reports.some((r) => r.state === 'running'));
    const running = reports.find((r) => r.state === 'running');
    // The manager caught up: nothing more to say.
    reports.length = 0;
    runner.setAssignments([task('running')]);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(reports, []);
    // The manager shows the task as starting: the running report never landed (a deposed leader got it).
    runner.setAssignments([task('starting')]);
    assert.deepEqual(reports, [running], 'the last report, again, at once');
  });
});
