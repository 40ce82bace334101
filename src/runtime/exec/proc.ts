// Linux /proc helpers for the exec runtime: process identity (pid + start time) and process-group membership.

import { readFile, readdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** One-letter state: R, S, D, Z (zombie), X (dead), … */
  state: string;
  pgrp: number;
  /** Start time in clock ticks since boot: with the pid, it names one process for the life of the host. */
  startTime: number;
}

/** Parses /proc/PID/stat. The command name is in parentheses and may hold spaces or ')', so split after the last ')'. */
export const parseStat = (pid: number, text: string): ProcStat | undefined => {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields from 3 (state) on; field N is at index N-3.
  const f = text.slice(close + 2).split(' ');
  const state = f[0];
  const pgrp = Number(f[2]);
  const startTime = Number(f[19]);
  if (!state || !Number.isFinite(pgrp) || !Number.isFinite(startTime)) return undefined;
  return { pid, state, pgrp, startTime };
};

export const readStat = async (pid: number): Promise<ProcStat | undefined> => {
  try {
    return parseStat(pid, await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
};

/** Synchronous variant, used right after spawn so no await can sit between spawning and recording identity. */
export const readStatSync = (pid: number): ProcStat | undefined => {
  try {
    return parseStat(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
};

/**
 * Whether a live process ignores signal `signo` (bit signo-1 of SigIgn in /proc/PID/status); undefined when the
 * process is gone or a zombie.
 */
export const ignoresSignal = async (pid: number, signo: number): Promise<boolean | undefined> => {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const state = /^State:\s+(\S)/m.exec(text)?.[1];
  const mask = /^SigIgn:\s+([0-9a-f]+)/m.exec(text)?.[1];
  if (state === undefined || state === 'Z' || state === 'X' || mask === undefined) return undefined;
  return ((BigInt(`0x${mask}`) >> BigInt(signo - 1)) & 1n) === 1n;
};

/** Every live (non-zombie) process whose process group is `pgrp`. */
export const groupMembers = async (pgrp: number): Promise<ProcStat[]> => {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return [];
  }
  const out: ProcStat[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const st = await readStat(Number(e));
    if (st && st.pgrp === pgrp && st.state !== 'Z' && st.state !== 'X') out.push(st);
  }
  return out;
};

/** Sends a signal, ignoring "no such process" (the target ended meanwhile). */
export const signalPid = (pid: number, sig: NodeJS.Signals): void => {
  try {
    process.kill(pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
};
