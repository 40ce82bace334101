// Runs the compiled test files with node's test runner: `unit` (src/**), `integration` (test/**) or `all`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const which = process.argv[2] ?? 'all';
const filter = process.argv[3];
const roots = { unit: ['dist/src'], integration: ['dist/test'], all: ['dist/src', 'dist/test'] }[which];
if (!roots) {
  console.error(`usage: run-tests.mjs unit|integration|all [substring]`);
  process.exit(2);
}
const files = [];
const walk = (dir) => {
  let entries;
  try { entries = readdirSync(dir); } catch { return; }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.test.js') && (!filter || p.includes(filter))) files.push(p);
  }
};
roots.forEach(walk);
if (files.length === 0) {
  console.error(`no test files under ${roots.join(', ')}${filter ? ` matching '${filter}'` : ''}`);
  process.exit(1);
}
// Integration suites share one Docker Engine and one port range: run files one at a time there.
const concurrency = which === 'unit' ? '2' : '1';
const r = spawnSync(process.execPath, ['--enable-source-maps', '--test', `--test-concurrency=${concurrency}`, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
