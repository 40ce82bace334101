// `service update` flags applied to a service's current spec, and the update/rollback config flags that `service
// create` takes too; errors name the flag and the reason.

import { ShoalError, invalid, parseBytes, parseConstraint, parseCpus, parseDuration, type Constraint, type HealthCheck, type ServiceSpec, type UpdateConfig } from '../core/index.js';
import { DEFAULT_UPDATE_CONFIG } from '../core/index.js';
import { healthFromFlags, parseCount, parsePairs, type HealthFlags, type TaskSettingFlags } from './service-flags.js';

/** --update-* or --rollback-* flags (commander camel-cases them). */
export interface UpdateConfigFlags {
  updateParallelism?: string;
  updateDelay?: string;
  updateMonitor?: string;
  updateFailureAction?: string;
  updateMaxFailureRatio?: string;
  updateOrder?: string;
  rollbackParallelism?: string;
  rollbackDelay?: string;
  rollbackMonitor?: string;
  rollbackFailureAction?: string;
  rollbackMaxFailureRatio?: string;
  rollbackOrder?: string;
}

export interface UpdateFlags extends UpdateConfigFlags, TaskSettingFlags, HealthFlags {
  image?: string;
  args?: string;
  envAdd: string[];
  envRm: string[];
  labelAdd: string[];
  labelRm: string[];
  containerLabelAdd: string[];
  containerLabelRm: string[];
  constraintAdd: string[];
  constraintRm: string[];
  force?: boolean;
}

const ACTIONS = ['pause', 'continue', 'rollback'] as const;
const ORDERS = ['stop-first', 'start-first'] as const;

const oneOf = <T extends string>(v: string, allowed: readonly T[], flag: string): T => {
  if (!(allowed as readonly string[]).includes(v)) throw invalid(flag, `'${v}' is not one of ${allowed.join(', ')}`);
  return v as T;
};

const ratio = (v: string, flag: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw invalid(flag, `'${v}' is not a number from 0 to 1`);
  return n;
};

/**
 * The update (or rollback) config the flags give, starting from `base`; undefined when no such flag was given
 * (the spec keeps what it had). A rollback's failure action cannot be rollback.
 */
export const configFromFlags = (f: UpdateConfigFlags, which: 'update' | 'rollback', base: UpdateConfig = DEFAULT_UPDATE_CONFIG): UpdateConfig | undefined => {
  const get = (name: 'Parallelism' | 'Delay' | 'Monitor' | 'FailureAction' | 'MaxFailureRatio' | 'Order'): string | undefined => f[`${which}${name}`];
  const flag = (name: string): string => `--${which}-${name}`;
  const given = (['Parallelism', 'Delay', 'Monitor', 'FailureAction', 'MaxFailureRatio', 'Order'] as const).some((n) => get(n) !== undefined);
  if (!given) return undefined;
  const action = get('FailureAction');
  const actions = which === 'rollback' ? ACTIONS.filter((a) => a !== 'rollback') : ACTIONS;
  const p = get('Parallelism');
  const d = get('Delay');
  const m = get('Monitor');
  const r = get('MaxFailureRatio');
  const o = get('Order');
  return {
    parallelism: p === undefined ? base.parallelism : parseCount(p, flag('parallelism')),
    delayMs: d === undefined ? base.delayMs : parseDuration(d, flag('delay')),
    monitorMs: m === undefined ? base.monitorMs : parseDuration(m, flag('monitor')),
    failureAction: action === undefined ? base.failureAction : oneOf(action, actions, flag('failure-action')),
    maxFailureRatio: r === undefined ? base.maxFailureRatio : ratio(r, flag('max-failure-ratio')),
    order: o === undefined ? base.order : oneOf(o, ORDERS, flag('order')),
  };
};

/** `--args "a 'b c'"` into argv: whitespace separates words; single or double quotes group them. */
export const splitArgs = (text: string): string[] => {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1] ?? m[2] ?? m[3] ?? '');
  if (/["']/.test(text.replace(/"[^"]*"|'[^']*'/g, ''))) throw invalid('--args', `unbalanced quote in '${text}'`);
  return out;
};

const constraintText = (c: Constraint): string => `${c.key}${c.op}${c.value}`;

const parseConstraints = (items: string[], flag: string): Constraint[] =>
  items.map((c) => {
    try {
      return parseConstraint(c, flag);
    } catch (e) {
      throw e instanceof ShoalError ? e : invalid(flag, String(e));
    }
  });

/** Env entries without the keys in `rm`, then with `add` (KEY=VALUE replaces an entry of the same key). */
const editEnv = (env: string[], add: string[], rm: string[]): string[] => {
  for (const e of add) if (!/^[^=\s]+=/.test(e)) throw invalid('--env-add', `'${e}' is not KEY=VALUE`);
  const key = (e: string): string => e.slice(0, e.indexOf('=') < 0 ? undefined : e.indexOf('='));
  const drop = new Set([...rm, ...add.map(key)]);
  return [...env.filter((e) => !drop.has(key(e))), ...add];
};

const editLabels = (labels: Record<string, string>, add: string[], rm: string[], flag: string): Record<string, string> => {
  const out = { ...labels, ...parsePairs(add, `${flag}-add`) };
  for (const k of rm) delete out[k];
  return out;
};

/** The container's health check after the flags: replaced when any --health-* or --no-healthcheck is given. */
const healthOf = (current: HealthCheck | undefined, f: HealthFlags): { healthcheck?: HealthCheck } => {
  const next = healthFromFlags(f);
  if (next === undefined) return current === undefined ? {} : { healthcheck: current };
  return {
    healthcheck: {
      // Timings alone change the check in place (Docker's update does the same).
      test: f.healthCmd === undefined && f.healthcheck !== false ? (current?.test ?? []) : next.test,
      intervalMs: next.intervalMs ?? current?.intervalMs ?? 30_000,
      timeoutMs: next.timeoutMs ?? current?.timeoutMs ?? 30_000,
      retries: next.retries ?? current?.retries ?? 3,
      startPeriodMs: next.startPeriodMs ?? current?.startPeriodMs ?? 0,
    },
  };
};

/** The spec `service update` sends: the current one with the flags applied. */
export const applyUpdateFlags = (current: ServiceSpec, f: UpdateFlags): ServiceSpec => {
  const t = current.task;
  const c = t.container;
  if (f.replicas !== undefined && 'global' in current.mode) throw invalid('--replicas', 'a global service runs one task per node; --replicas does not apply');
  const cond = f.restartCondition;
  const opt = <T>(v: string | undefined, parse: (s: string) => T, fallback: T): T => (v === undefined ? fallback : parse(v));
  const rmConstraints = new Set(parseConstraints(f.constraintRm, '--constraint-rm').map(constraintText));
  const constraints = [...t.placement.constraints.filter((x) => !rmConstraints.has(constraintText(x))), ...parseConstraints(f.constraintAdd, '--constraint-add')];
  const updateConfig = configFromFlags(f, 'update', current.updateConfig);
  const rollbackConfig = configFromFlags(f, 'rollback', current.rollbackConfig);
  return {
    ...current,
    labels: editLabels(current.labels, f.labelAdd, f.labelRm, '--label'),
    mode: f.replicas === undefined ? current.mode : { replicated: { replicas: parseCount(f.replicas, '--replicas') } },
    task: {
      ...t,
      container: {
        ...c,
        image: f.image ?? c.image,
        command: f.args === undefined ? c.command : splitArgs(f.args),
        env: editEnv(c.env, f.envAdd, f.envRm),
        labels: editLabels(c.labels, f.containerLabelAdd, f.containerLabelRm, '--container-label'),
        stopGracePeriodMs: opt(f.stopGracePeriod, (s) => parseDuration(s, '--stop-grace-period'), c.stopGracePeriodMs),
        ...healthOf(c.healthcheck, f),
      },
      resources: {
        reservations: {
          nanoCpus: opt(f.reserveCpu, (s) => parseCpus(s, '--reserve-cpu'), t.resources.reservations.nanoCpus),
          memoryBytes: opt(f.reserveMemory, (s) => parseBytes(s, '--reserve-memory'), t.resources.reservations.memoryBytes),
        },
        limits: {
          nanoCpus: opt(f.limitCpu, (s) => parseCpus(s, '--limit-cpu'), t.resources.limits.nanoCpus),
          memoryBytes: opt(f.limitMemory, (s) => parseBytes(s, '--limit-memory'), t.resources.limits.memoryBytes),
        },
      },
      restartPolicy: {
        condition: cond === undefined ? t.restartPolicy.condition : oneOf(cond, ['none', 'on-failure', 'any'] as const, '--restart-condition'),
        delayMs: opt(f.restartDelay, (s) => parseDuration(s, '--restart-delay'), t.restartPolicy.delayMs),
        maxAttempts: opt(f.restartMaxAttempts, (s) => parseCount(s, '--restart-max-attempts'), t.restartPolicy.maxAttempts),
        windowMs: opt(f.restartWindow, (s) => parseDuration(s, '--restart-window'), t.restartPolicy.windowMs),
      },
      placement: { ...t.placement, constraints },
      // --force changes the task template, so every task is replaced though nothing else changed.
      ...(f.force ? { forceUpdate: (t.forceUpdate ?? 0) + 1 } : {}),
    },
    ...(updateConfig ? { updateConfig } : {}),
    ...(rollbackConfig ? { rollbackConfig } : {}),
  };
};

/** Declares the --update-* and --rollback-* options on a command (create and update take them). */
export const updateConfigOptions = (cmd: { option: (flags: string, description: string) => unknown }): void => {
  for (const which of ['update', 'rollback'] as const) {
    const what = which === 'update' ? 'an update' : 'a rollback';
    cmd.option(`--${which}-parallelism <n>`, `tasks replaced at once during ${what} (default 1; 0 = all)`);
    cmd.option(`--${which}-delay <duration>`, `pause between batches of ${what} (default 0s)`);
    cmd.option(`--${which}-monitor <duration>`, `how long each new task is watched during ${what} before it counts as updated (default 5s)`);
    cmd.option(`--${which}-failure-action <action>`, which === 'update' ? 'on failure: pause (default), continue or rollback' : 'on failure: pause (default) or continue');
    cmd.option(`--${which}-max-failure-ratio <ratio>`, `share of tasks that may fail during ${what} (0 to 1, default 0)`);
    cmd.option(`--${which}-order <order>`, 'stop-first (default) or start-first');
  }
};
