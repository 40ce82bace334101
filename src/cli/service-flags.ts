// Turns `service create` flags into a service spec, with errors that name the flag and the reason.

import { ShoalError, invalid, parseBytes, parseConstraint, parseCpus, parseDuration } from '../core/index.js';
import type { ServiceSpecInput } from '../protocol/index.js';

/** The task settings `service create` and `service update` both take. */
export interface TaskSettingFlags {
  replicas?: string;
  restartCondition?: string;
  restartDelay?: string;
  restartMaxAttempts?: string;
  restartWindow?: string;
  reserveCpu?: string;
  reserveMemory?: string;
  limitCpu?: string;
  limitMemory?: string;
  stopGracePeriod?: string;
}

export interface CreateFlags extends HealthFlags, TaskSettingFlags {
  name?: string;
  /** The project the service belongs to; the API's default when absent. */
  project?: string;
  mode?: string;
  env: string[];
  label: string[];
  containerLabel: string[];
  constraint: string[];
  placementPref: string[];
}

/** `--health-cmd`, `--health-interval`, `--health-timeout`, `--health-retries`, `--health-start-period`, `--no-healthcheck`. */
export interface HealthFlags {
  healthCmd?: string;
  healthInterval?: string;
  healthTimeout?: string;
  healthRetries?: string;
  healthStartPeriod?: string;
  /** false with --no-healthcheck (commander's name for a --no-X flag is X). */
  healthcheck?: boolean;
}

type HealthCheckInput = NonNullable<ServiceSpecInput['task']['container']['healthcheck']>;

/**
 * The health check the flags ask for, as `docker service create` reads them: --health-cmd runs with /bin/sh -c
 * (CMD-SHELL); timings without --health-cmd apply to the image's own check (an empty test); --no-healthcheck turns
 * checks off, the image's too, and goes with no other health flag. Undefined: no health flag, the image decides.
 */
export const healthFromFlags = (f: HealthFlags): HealthCheckInput | undefined => {
  const timings = {
    ...defined('intervalMs', opt(f.healthInterval, (s) => parseDuration(s, '--health-interval'))),
    ...defined('timeoutMs', opt(f.healthTimeout, (s) => parseDuration(s, '--health-timeout'))),
    ...defined('retries', opt(f.healthRetries, (s) => parseCount(s, '--health-retries'))),
    ...defined('startPeriodMs', opt(f.healthStartPeriod, (s) => parseDuration(s, '--health-start-period'))),
  };
  const given = f.healthCmd !== undefined || Object.keys(timings).length > 0;
  if (f.healthcheck === false) {
    if (given) throw invalid('--no-healthcheck', 'conflicts with the --health-* flags');
    return { test: ['NONE'] };
  }
  if (!given) return undefined;
  if (f.healthCmd?.trim() === '') throw invalid('--health-cmd', 'the command is empty');
  return { test: f.healthCmd === undefined ? [] : ['CMD-SHELL', f.healthCmd], ...timings };
};

/** Commander's accumulator for a repeatable option (`--env A=1 --env B=2`). */
export const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** A whole number ≥ 0, or an error naming the flag. */
export const parseCount = (text: string, flag: string): number => {
  if (!/^\d+$/.test(text.trim())) throw invalid(flag, `'${text}' is not a whole number ≥ 0`);
  return Number(text);
};

/** KEY=VALUE pairs into a record; an entry without '=' is an error naming the flag. */
export const parsePairs = (items: string[], flag: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const it of items) {
    const i = it.indexOf('=');
    const key = i < 0 ? it : it.slice(0, i);
    if (key === '') throw invalid(flag, `'${it}' has an empty key (expected KEY=VALUE)`);
    out[key] = i < 0 ? '' : it.slice(i + 1);
  }
  return out;
};

const RESTART_CONDITIONS = ['none', 'on-failure', 'any'] as const;

export const specFromFlags = (image: string, args: string[], f: CreateFlags): ServiceSpecInput => {
  if (!f.name) throw invalid('--name', 'a service name is required');
  for (const e of f.env) if (!/^[^=\s]+=/.test(e)) throw invalid('--env', `'${e}' is not KEY=VALUE`);
  if (f.mode !== undefined && f.mode !== 'replicated' && f.mode !== 'global') throw invalid('--mode', `'${f.mode}' is not replicated or global`);
  if (f.mode === 'global' && f.replicas !== undefined) throw invalid('--replicas', 'a global service runs one task per node; --replicas does not apply');
  const cond = f.restartCondition;
  if (cond !== undefined && !(RESTART_CONDITIONS as readonly string[]).includes(cond)) {
    throw invalid('--restart-condition', `'${cond}' is not one of ${RESTART_CONDITIONS.join(', ')}`);
  }
  const restart = {
    ...(cond === undefined ? {} : { condition: cond as (typeof RESTART_CONDITIONS)[number] }),
    ...defined('delayMs', opt(f.restartDelay, (s) => parseDuration(s, '--restart-delay'))),
    ...defined('maxAttempts', opt(f.restartMaxAttempts, (s) => parseCount(s, '--restart-max-attempts'))),
    ...defined('windowMs', opt(f.restartWindow, (s) => parseDuration(s, '--restart-window'))),
  };
  const resources = {
    reservations: {
      nanoCpus: opt(f.reserveCpu, (s) => parseCpus(s, '--reserve-cpu')) ?? 0,
      memoryBytes: opt(f.reserveMemory, (s) => parseBytes(s, '--reserve-memory')) ?? 0,
    },
    limits: {
      nanoCpus: opt(f.limitCpu, (s) => parseCpus(s, '--limit-cpu')) ?? 0,
      memoryBytes: opt(f.limitMemory, (s) => parseBytes(s, '--limit-memory')) ?? 0,
    },
  };
  const constraints = f.constraint.map((c) => {
    try {
      return parseConstraint(c, '--constraint');
    } catch (e) {
      throw e instanceof ShoalError ? e : invalid('--constraint', String(e));
    }
  });
  return {
    name: f.name,
    ...defined('project', f.project),
    labels: parsePairs(f.label, '--label'),
    mode: f.mode === 'global' ? { global: {} } : { replicated: { replicas: f.replicas === undefined ? 1 : parseCount(f.replicas, '--replicas') } },
    task: {
      container: {
        image,
        command: args,
        env: f.env,
        labels: parsePairs(f.containerLabel, '--container-label'),
        ...defined('stopGracePeriodMs', opt(f.stopGracePeriod, (s) => parseDuration(s, '--stop-grace-period'))),
        ...defined('healthcheck', healthFromFlags(f)),
      },
      resources,
      restartPolicy: restart,
      placement: { constraints, preferences: f.placementPref.map(parsePreference) },
    },
  };
};

/** `spread=node.labels.zone` → { spread: 'node.labels.zone' } (Docker's --placement-pref syntax). */
const parsePreference = (text: string): { spread: string } => {
  const m = /^spread=(.+)$/.exec(text.trim());
  if (!m?.[1]) throw invalid('--placement-pref', `'${text}' is not of the form spread=node.labels.KEY`);
  return { spread: m[1] };
};

const defined = <K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } => (v === undefined ? {} : ({ [key]: v } as { [P in K]: V }));

const opt = <T>(v: string | undefined, parse: (s: string) => T): T | undefined => (v === undefined ? undefined : parse(v));
