// `service update` flags applied to a spec, and the update/rollback config flags.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_UPDATE_CONFIG, ShoalError, type ServiceSpec } from '../core/index.js';
import { applyUpdateFlags, configFromFlags, splitArgs, type UpdateFlags } from './update-flags.js';

const SPEC: ServiceSpec = {
  name: 'web',
  labels: { team: 'a' },
  mode: { replicated: { replicas: 3 } },
  task: {
    container: { image: 'img:1', command: ['sleep', '60'], env: ['A=1', 'B=2'], labels: {}, stopGracePeriodMs: 10_000 },
    resources: { reservations: { nanoCpus: 0, memoryBytes: 0 }, limits: { nanoCpus: 0, memoryBytes: 0 } },
    restartPolicy: { condition: 'any', delayMs: 5000, maxAttempts: 0, windowMs: 0 },
    placement: { constraints: [{ key: 'node.role', op: '==', value: 'worker' }], preferences: [] },
  },
};

const flags = (f: Partial<UpdateFlags> = {}): UpdateFlags => ({
  envAdd: [],
  envRm: [],
  labelAdd: [],
  labelRm: [],
  containerLabelAdd: [],
  containerLabelRm: [],
  constraintAdd: [],
  constraintRm: [],
  ...f,
});

const rejects = (fn: () => unknown, flag: string): void =>
  assert.throws(fn, (e: unknown) => e instanceof ShoalError && e.code === 'invalid_argument' && e.message.includes(flag));

describe('applyUpdateFlags', () => {
  it('changes only what the flags name', () => {
    assert.deepEqual(applyUpdateFlags(SPEC, flags()), SPEC);
    const s = applyUpdateFlags(SPEC, flags({ image: 'img:2', replicas: '5', envAdd: ['B=3', 'C=4'], envRm: ['A'], labelAdd: ['tier=web'], labelRm: ['team'] }));
    assert.equal(s.task.container.image, 'img:2');
    assert.deepEqual(s.mode, { replicated: { replicas: 5 } });
    assert.deepEqual(s.task.container.env, ['B=3', 'C=4']);
    assert.deepEqual(s.labels, { tier: 'web' });
    assert.deepEqual(s.task.container.command, ['sleep', '60']);
  });

  it('edits constraints, the command, resources and the restart policy', () => {
    const s = applyUpdateFlags(SPEC, flags({ constraintRm: ['node.role==worker'], constraintAdd: ['node.labels.zone==eu'], args: `sh -c 'echo "hi there"'`, limitMemory: '64M', restartCondition: 'on-failure' }));
    assert.deepEqual(s.task.placement.constraints, [{ key: 'node.labels.zone', op: '==', value: 'eu' }]);
    assert.deepEqual(s.task.container.command, ['sh', '-c', 'echo "hi there"']);
    assert.equal(s.task.resources.limits.memoryBytes, 64 * 1024 * 1024);
    assert.equal(s.task.restartPolicy.condition, 'on-failure');
  });

  it('--force changes the task template and nothing else', () => {
    const once = applyUpdateFlags(SPEC, flags({ force: true }));
    assert.equal(once.task.forceUpdate, 1);
    assert.equal(applyUpdateFlags(once, flags({ force: true })).task.forceUpdate, 2);
    assert.deepEqual({ ...once, task: { ...once.task, forceUpdate: undefined } }, { ...SPEC, task: { ...SPEC.task, forceUpdate: undefined } });
  });

  it('changes the health check: a new command, timings alone in place, or off', () => {
    const withCheck: ServiceSpec = { ...SPEC, task: { ...SPEC.task, container: { ...SPEC.task.container, healthcheck: { test: ['CMD-SHELL', 'true'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 } } } };
    assert.deepEqual(applyUpdateFlags(withCheck, flags({ healthInterval: '5s' })).task.container.healthcheck, { test: ['CMD-SHELL', 'true'], intervalMs: 5000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 });
    assert.deepEqual(applyUpdateFlags(withCheck, flags({ healthCmd: 'test -f /ok' })).task.container.healthcheck?.test, ['CMD-SHELL', 'test -f /ok']);
    assert.deepEqual(applyUpdateFlags(withCheck, flags({ healthcheck: false })).task.container.healthcheck?.test, ['NONE']);
    assert.deepEqual(applyUpdateFlags(withCheck, flags({ healthcheck: true })), withCheck, 'no health flag: unchanged');
  });

  it('refuses bad values, naming the flag', () => {
    rejects(() => applyUpdateFlags(SPEC, flags({ replicas: 'many' })), '--replicas');
    rejects(() => applyUpdateFlags({ ...SPEC, mode: { global: {} } }, flags({ replicas: '2' })), '--replicas');
    rejects(() => applyUpdateFlags(SPEC, flags({ envAdd: ['NOEQUALS'] })), '--env-add');
    rejects(() => applyUpdateFlags(SPEC, flags({ restartCondition: 'sometimes' })), '--restart-condition');
    rejects(() => applyUpdateFlags(SPEC, flags({ args: `sh -c 'unbalanced` })), '--args');
  });
});

describe('configFromFlags', () => {
  it('is undefined without flags, and fills the rest from the base', () => {
    assert.equal(configFromFlags({}, 'update'), undefined);
    assert.deepEqual(configFromFlags({ updateParallelism: '2', updateOrder: 'start-first' }, 'update'), { ...DEFAULT_UPDATE_CONFIG, parallelism: 2, order: 'start-first' });
    const base = { ...DEFAULT_UPDATE_CONFIG, delayMs: 7000 };
    assert.deepEqual(configFromFlags({ rollbackMonitor: '1s', rollbackMaxFailureRatio: '0.25' }, 'rollback', base), { ...base, monitorMs: 1000, maxFailureRatio: 0.25 });
  });

  it('refuses bad values, and rollback as the failure action of a rollback', () => {
    rejects(() => configFromFlags({ updateFailureAction: 'explode' }, 'update'), '--update-failure-action');
    rejects(() => configFromFlags({ rollbackFailureAction: 'rollback' }, 'rollback'), '--rollback-failure-action');
    rejects(() => configFromFlags({ updateMaxFailureRatio: '1.5' }, 'update'), '--update-max-failure-ratio');
    rejects(() => configFromFlags({ updateOrder: 'random' }, 'update'), '--update-order');
    rejects(() => configFromFlags({ updateDelay: 'soon' }, 'update'), '--update-delay');
  });
});

describe('splitArgs', () => {
  it('splits on whitespace and groups quoted words', () => {
    assert.deepEqual(splitArgs('a  b'), ['a', 'b']);
    assert.deepEqual(splitArgs(`x "y z" 'w "v"'`), ['x', 'y z', 'w "v"']);
    assert.deepEqual(splitArgs(''), []);
  });
});
