// The TaskRunner against the real exec runtime (plain processes in a temp dir): a report the manager lost (its
// assignments, or a digest of them, show the task behind what the node reported) is said again, and only then; a
// digest matches only the same tasks with the same desired states; an update of the set (as
// opposed to a whole set) starts what it adds, stops what it changes to shutdown and removes what it removes.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TaskState } from '../core/index.js';
import { silentLogger } from '../lib/logger.js';
import type { AssignedTask, TaskStatusUpdate } from '../protocol/index.js';
import { ExecRuntime } from '../runtime/exec/exec-runtime.js';
import { SimRuntime } from '../runtime/sim/sim-runtime.js';
import { TaskRunner } from './task-runner.js';

const task = (state: TaskState, id = 'task-1'): AssignedTask => ({
  id,
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

  it('checks a digest of the set: same tasks and desired states match; a lost report is said again; a difference does not match', () => {
    // The set now holds task-1, running, desired running (the test above).
    const said = (): string[][] => reports.map((r) => [r.taskId, r.state]);
    reports.length = 0;
    assert.equal(runner.check([['task-1', 'running', 'running']]), true);
    assert.deepEqual(said(), [], 'nothing to say again');
    // The digest shows the task behind its last report: the report is said again, and the sets still match.
    assert.equal(runner.check([['task-1', 'starting', 'running']]), true);
    assert.deepEqual(said(), [['task-1', 'running']]);
    reports.length = 0;
    assert.equal(runner.check([['task-1', 'running', 'shutdown']]), false, 'another desired state');
    assert.equal(runner.check([]), false, 'a task fewer');
    assert.equal(runner.check([['task-1', 'running', 'running'], ['task-2', 'assigned', 'running']]), false, 'a task more');
    assert.equal(runner.check([['task-2', 'running', 'running']]), false, 'another task');
    assert.deepEqual(said(), [], 'a check changes nothing it runs and reports nothing new');
  });
});

describe('TaskRunner: updates of the assignment set', () => {
  it('runs added tasks, stops one changed to shutdown, removes the container of one removed, and leaves the rest', async () => {
    const runtime = new SimRuntime();
    const runner = new TaskRunner({ nodeId: 'node-1', runtime, logger: silentLogger, report: () => undefined });
    const state = async (id: string): Promise<string | undefined> => (await runtime.list()).find((c) => c.taskId === id)?.state;
    const settle = async (what: string, check: () => Promise<boolean>): Promise<void> => {
      for (let i = 0; i < 100 && !(await check()); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(await check(), `timed out waiting for ${what}`);
    };
    runner.setAssignments([task('assigned', 'a')]);
    runner.updateAssignments([task('assigned', 'b'), task('assigned', 'c')], []);
    await settle('three running', async () => (await state('a')) === 'running' && (await state('b')) === 'running' && (await state('c')) === 'running');
    runner.updateAssignments([{ ...task('running', 'b'), desiredState: 'shutdown' }], ['c']);
    await settle('b stopped, c removed', async () => (await state('b')) === 'exited' && (await state('c')) === undefined);
    assert.equal(await state('a'), 'running', 'a task the update does not name is left alone');
  });
});
