// `service logs -f` through the manager from tasks on two nodes (a manager and a worker, each its own process, exec
// runtime): new output from both keeps arriving, in order per task.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TaskListItem } from '../src/protocol/index.js';
import { CLI, cliWith, eventually, freePort, killExecTasks, tempDir } from './helpers.js';

describe('service logs -f across nodes', () => {
  let dir = '';
  let env: Record<string, string> = {};
  const { run, ok, json } = cliWith(() => env);

  before(async () => {
    dir = tempDir('shoal-logs-');
    env = { SHOAL_CONFIG: join(dir, 'config.json') };
    const manager = `127.0.0.1:${await freePort()}`;
    ok('init', '--detach', '--data-dir', join(dir, 'manager'), '--listen-addr', manager, '--runtime', 'exec');
    ok('join', '--token', ok('join-token', 'worker', '-q').trim(), '--data-dir', join(dir, 'worker'), '--runtime', 'exec', '--detach', manager);
  });

  after(() => {
    for (const d of ['worker', 'manager']) run('stop', '--data-dir', join(dir, d));
    if (dir) killExecTasks(dir);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('follows new lines from the tasks on both nodes, in order per task', async () => {
    ok('service', 'create', '--name', 'talk', '--replicas', '2', '--restart-delay', '0s', 'sh', '/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done');
    const tasks = json<TaskListItem[]>('service', 'ps', 'talk', '--format', 'json');
    assert.equal(new Set(tasks.map((t) => t.nodeId)).size, 2, 'one task on each node');

    const follower = spawn(process.execPath, [CLI, 'service', 'logs', '-f', '--tail', '0', 'talk'], { env: { ...process.env, ...env } });
    const ticks = new Map<string, number[]>();
    let buf = '';
    follower.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^(talk\.\d)\.\S+\s+\| tick (\d+)$/.exec(line);
        if (m?.[1] && m[2]) ticks.set(m[1], [...(ticks.get(m[1]) ?? []), Number(m[2])]);
      }
    });
    try {
      await eventually('5 new lines from each task', () => ticks.size === 2 && [...ticks.values()].every((t) => t.length >= 5), 30_000);
    } finally {
      follower.kill('SIGINT');
    }
    for (const [task, seen] of ticks) {
      // --tail 0: only output written after the follow began; each task's lines arrive in the order written.
      assert.deepEqual(seen, [...seen].sort((a, b) => a - b), `${task} in order`);
      assert.ok(seen.every((n, i) => i === 0 || n === (seen[i - 1] ?? 0) + 1), `${task} without gaps: ${seen.join(',')}`);
    }
  });
});
