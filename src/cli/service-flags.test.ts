// `service create` flags → service spec: values parsed with their units, errors naming the flag.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ShoalError } from '../core/index.js';
import { serviceSpecSchema } from '../protocol/index.js';
import { specFromFlags, type CreateFlags } from './service-flags.js';

const flags = (f: Partial<CreateFlags>): CreateFlags => ({ env: [], label: [], containerLabel: [], constraint: [], placementPref: [], name: 'web', ...f });

const failsOn = (f: Partial<CreateFlags>, field: string, reason: RegExp): void => {
  assert.throws(
    () => specFromFlags('img', [], flags(f)),
    (e: unknown) => e instanceof ShoalError && e.code === 'invalid_argument' && e.violations[0]?.field === field && reason.test(e.violations[0].reason),
  );
};

describe('specFromFlags', () => {
  it('maps every flag into the spec, with units', () => {
    const spec = specFromFlags('shoal-test/busybox', ['httpd', '-f', '-p', '8080'], flags({
      replicas: '3',
      env: ['A=1', 'B=x=y'],
      label: ['team=a'],
      containerLabel: ['tier=web'],
      restartCondition: 'on-failure',
      restartDelay: '1m30s',
      restartMaxAttempts: '4',
      restartWindow: '2m',
      reserveCpu: '0.5',
      reserveMemory: '64M',
      limitCpu: '2',
      limitMemory: '1.5G',
      constraint: ['node.labels.zone==eu', 'node.role!=worker'],
      placementPref: ['spread=node.labels.rack'],
      stopGracePeriod: '3s',
    }));
    const parsed = serviceSpecSchema.parse(spec);
    assert.deepEqual(parsed.mode, { replicated: { replicas: 3 } });
    assert.deepEqual(parsed.labels, { team: 'a' });
    assert.deepEqual(parsed.task.container, { image: 'shoal-test/busybox', command: ['httpd', '-f', '-p', '8080'], env: ['A=1', 'B=x=y'], labels: { tier: 'web' }, stopGracePeriodMs: 3000 });
    assert.deepEqual(parsed.task.restartPolicy, { condition: 'on-failure', delayMs: 90_000, maxAttempts: 4, windowMs: 120_000 });
    assert.deepEqual(parsed.task.resources, { reservations: { nanoCpus: 5e8, memoryBytes: 64 * 1024 ** 2 }, limits: { nanoCpus: 2e9, memoryBytes: 1.5 * 1024 ** 3 } });
    assert.deepEqual(parsed.task.placement.constraints, [
      { key: 'node.labels.zone', op: '==', value: 'eu' },
      { key: 'node.role', op: '!=', value: 'worker' },
    ]);
    assert.deepEqual(parsed.task.placement.preferences, [{ spread: 'node.labels.rack' }]);
  });

  it('leaves unset options to the API defaults (restart any after 5s, one replica, 10s grace)', () => {
    const parsed = serviceSpecSchema.parse(specFromFlags('img', [], flags({})));
    assert.deepEqual(parsed.mode, { replicated: { replicas: 1 } });
    assert.deepEqual(parsed.task.restartPolicy, { condition: 'any', delayMs: 5000, maxAttempts: 0, windowMs: 0 });
    assert.equal(parsed.task.container.stopGracePeriodMs, 10_000);
    assert.deepEqual(parsed.task.container.command, []);
  });

  it('names the flag and the reason for every bad value', () => {
    failsOn({ name: '' }, '--name', /required/);
    failsOn({ replicas: '-1' }, '--replicas', /whole number/);
    failsOn({ replicas: '2.5' }, '--replicas', /whole number/);
    failsOn({ env: ['NOVALUE'] }, '--env', /KEY=VALUE/);
    failsOn({ restartCondition: 'always' }, '--restart-condition', /none, on-failure, any/);
    failsOn({ restartDelay: '5 minutes' }, '--restart-delay', /not a duration/);
    failsOn({ restartMaxAttempts: 'x' }, '--restart-max-attempts', /whole number/);
    failsOn({ reserveCpu: 'half' }, '--reserve-cpu', /CPU count/);
    failsOn({ limitMemory: '12 parsecs' }, '--limit-memory', /not a size/);
    failsOn({ constraint: ['zone=eu'] }, '--constraint', /KEY==VALUE/);
    failsOn({ label: ['=x'] }, '--label', /empty key/);
    failsOn({ placementPref: ['zone'] }, '--placement-pref', /spread=node\.labels\.KEY/);
  });

  it('takes a health check as docker service create does: --health-cmd is CMD-SHELL, timings with their units', () => {
    const parsed = serviceSpecSchema.parse(
      specFromFlags('img', [], flags({ healthCmd: 'wget -q -O- localhost:8080/ready', healthInterval: '2s', healthTimeout: '500ms', healthRetries: '5', healthStartPeriod: '1m' })),
    );
    assert.deepEqual(parsed.task.container.healthcheck, { test: ['CMD-SHELL', 'wget -q -O- localhost:8080/ready'], intervalMs: 2000, timeoutMs: 500, retries: 5, startPeriodMs: 60_000 });
    // Only the command: the API fills in Docker's defaults.
    const plain = serviceSpecSchema.parse(specFromFlags('img', [], flags({ healthCmd: 'true' })));
    assert.deepEqual(plain.task.container.healthcheck, { test: ['CMD-SHELL', 'true'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 });
  });

  it("applies timings without --health-cmd to the image's own check, turns checks off with --no-healthcheck, and leaves them to the image without flags", () => {
    const timings = serviceSpecSchema.parse(specFromFlags('img', [], flags({ healthInterval: '1s', healthRetries: '2' })));
    assert.deepEqual(timings.task.container.healthcheck, { test: [], intervalMs: 1000, timeoutMs: 30_000, retries: 2, startPeriodMs: 0 });
    const off = serviceSpecSchema.parse(specFromFlags('img', [], flags({ healthcheck: false })));
    assert.deepEqual(off.task.container.healthcheck?.test, ['NONE']);
    const none = serviceSpecSchema.parse(specFromFlags('img', [], flags({ healthcheck: true })));
    assert.equal(none.task.container.healthcheck, undefined);
  });

  it('names the health flag and the reason for every bad value or combination', () => {
    failsOn({ healthcheck: false, healthCmd: 'true' }, '--no-healthcheck', /conflicts with the --health-\* flags/);
    failsOn({ healthcheck: false, healthStartPeriod: '5s' }, '--no-healthcheck', /conflicts/);
    failsOn({ healthCmd: '  ' }, '--health-cmd', /empty/);
    failsOn({ healthCmd: 'true', healthInterval: 'often' }, '--health-interval', /not a duration/);
    failsOn({ healthCmd: 'true', healthTimeout: '-1s' }, '--health-timeout', /not a duration/);
    failsOn({ healthCmd: 'true', healthRetries: 'three' }, '--health-retries', /whole number/);
    failsOn({ healthCmd: 'true', healthStartPeriod: '1 minute' }, '--health-start-period', /not a duration/);
  });
});
