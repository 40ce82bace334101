// The CLI context: where the managers are and the credential to use, from $SHOAL_CONFIG (default ~/.shoal/config.json).

import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomic } from '../manager/data-dir.js';
import { parseManagerList, preferFirst, sameList } from '../protocol/index.js';
import { ShoalClient } from './client.js';

export interface CliContext {
  /** HOST:PORT of every manager, the one on this machine (or the one to try first) first. */
  hosts: string[];
  token: string;
  clusterId: string;
  /** PEM of the cluster CA: the CLI only talks to a manager whose certificate it issued. */
  ca: string;
}

export const defaultDataDir = (): string => join(homedir(), '.shoal');

export const contextPath = (): string => process.env.SHOAL_CONFIG || join(defaultDataDir(), 'config.json');

/** Writes the context file (mode 0600: it holds an admin credential). */
export const writeContext = (ctx: CliContext): string => {
  const { token, clusterId, ca } = ctx;
  const hosts = parseManagerList(ctx.hosts);
  const path = contextPath();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, JSON.stringify({ hosts, token, clusterId, ca }, null, 2) + '\n', 0o600);
  return path;
};

/** The context in a file's text; a file written before HA managers names one `host`. Undefined when unusable. */
export const parseContext = (text: string): CliContext | undefined => {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const f = raw as Record<string, unknown>;
  const hosts = parseManagerList(f.hosts ?? f.host);
  if (hosts.length === 0 || typeof f.token !== 'string' || typeof f.clusterId !== 'string' || typeof f.ca !== 'string') return undefined;
  return { hosts, token: f.token, clusterId: f.clusterId, ca: f.ca };
};

export const readContext = (): CliContext | undefined => {
  try {
    return parseContext(readFileSync(contextPath(), 'utf8'));
  } catch {
    return undefined;
  }
};

/**
 * Records the managers a client learned in the context file, keeping the file's first host first while the cluster
 * still names it (it is this machine's manager, or the one the user chose). Writes only when the list changed.
 */
export const rememberManagers = (hosts: readonly string[]): void => {
  const ctx = readContext();
  if (!ctx) return;
  const next = preferFirst(hosts, ctx.hosts[0]);
  if (next.length > 0 && !sameList(next, ctx.hosts)) writeContext({ ...ctx, hosts: next });
};

/** The context file's contents, or an error saying how to get one. */
export const requireContext = (): CliContext => {
  const ctx = readContext();
  if (!ctx) throw new Error(`no Shoal context at ${contextPath()}: run 'shoal init' to create a cluster (or set SHOAL_CONFIG)`);
  return ctx;
};

/** Like kubectl: each message of a `warn` policy the request matched, on stderr, the command's output untouched. */
const printWarnings = (messages: string[]): void => {
  for (const m of messages) process.stderr.write(`Warning: ${m}\n`);
};

/**
 * A client for the managers named by --host / SHOAL_HOST (a comma-separated list), else by the context file; only in
 * the latter case does what the client learns of the managers go back to the file. The credential: --token, else
 * SHOAL_TOKEN, else the context file's.
 */
export const clientFor = (opts: { host?: string; token?: string }): ShoalClient => {
  const ctx = requireContext();
  const override = opts.host ?? (process.env.SHOAL_HOST || undefined);
  const hosts = override === undefined ? ctx.hosts : parseManagerList(override);
  if (hosts.length === 0) throw new Error(`no manager address in --host / SHOAL_HOST '${override ?? ''}' (expected HOST:PORT[,HOST:PORT…])`);
  const token = opts.token ?? (process.env.SHOAL_TOKEN || undefined) ?? ctx.token;
  return new ShoalClient({ hosts, token, ca: ctx.ca, onWarnings: printWarnings, ...(override === undefined ? { onManagers: rememberManagers } : {}) });
};

/** The client for a command: its global options (--host, --token) with the environment and the context file. */
export const clientOf = (cmd: Command): ShoalClient => clientFor(cmd.optsWithGlobals<{ host?: string; token?: string }>());
