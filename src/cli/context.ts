// The CLI context: where the manager is and the credential to use, from $SHOAL_CONFIG (default ~/.shoal/config.json).

import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../manager/data-dir.js';
import { ShoalClient } from './client.js';

export interface CliContext {
  /** HOST:PORT of the manager. */
  host: string;
  token: string;
  clusterId: string;
  /** PEM of the cluster CA: the CLI only talks to a manager whose certificate it issued. */
  ca: string;
}

export const defaultDataDir = (): string => join(homedir(), '.shoal');

export const contextPath = (): string => process.env.SHOAL_CONFIG || join(defaultDataDir(), 'config.json');

/** Writes the context file (mode 0600: it holds an admin credential). */
export const writeContext = (ctx: CliContext): string => {
  const path = contextPath();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, JSON.stringify(ctx, null, 2) + '\n', 0o600);
  return path;
};

export const readContext = (): CliContext | undefined => {
  try {
    return JSON.parse(readFileSync(contextPath(), 'utf8')) as CliContext;
  } catch {
    return undefined;
  }
};

/** A client for the manager named by --host / SHOAL_HOST, else by the context file. */
export const clientFor = (opts: { host?: string }): ShoalClient => {
  const ctx = readContext();
  const host = opts.host ?? process.env.SHOAL_HOST ?? ctx?.host;
  if (!host || !ctx?.token || !ctx.ca) {
    throw new Error(`no Shoal context at ${contextPath()}: run 'shoal init' to create a cluster (or set SHOAL_CONFIG)`);
  }
  return new ShoalClient({ host, token: ctx.token, ca: ctx.ca });
};
