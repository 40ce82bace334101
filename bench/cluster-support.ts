// What the cluster benchmarks share: a temp dir holding every node's data dir and the CLI context, the CLI run
// against it, and the figures they print.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface BenchCluster {
  /** Holds each node's data dir (by name) and the CLI context. */
  dir: string;
  /** Runs the CLI; throws with its stderr when it fails. */
  shoal: (...args: string[]) => string;
  /** Stops the daemon of a data dir, if one runs; never throws. */
  stop: (d: string) => void;
  nodeIdOf: (d: string) => string;
  pidOf: (d: string) => number;
  /** The CLI context the cluster's init wrote. */
  context: () => { hosts: string[]; token: string; ca: string };
}

export const benchCluster = (prefix: string): BenchCluster => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = { ...process.env, SHOAL_CONFIG: join(dir, 'config.json') };
  return {
    dir,
    shoal: (...args) => {
      const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 300_000 });
      if (r.status !== 0) throw new Error(`shoal ${args.join(' ')} failed: ${r.stderr}`);
      return r.stdout;
    },
    stop: (d) => void spawnSync(process.execPath, [CLI, 'stop', '--data-dir', join(dir, d)], { env }),
    nodeIdOf: (d) => (JSON.parse(readFileSync(join(dir, d, 'node.json'), 'utf8')) as { nodeId: string }).nodeId,
    pidOf: (d) => Number(readFileSync(join(dir, d, 'shoal.pid'), 'utf8')),
    context: () => JSON.parse(readFileSync(env.SHOAL_CONFIG, 'utf8')) as { hosts: string[]; token: string; ca: string },
  };
};

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};
