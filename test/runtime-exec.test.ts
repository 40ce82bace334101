// The exec runtime (tasks as host processes) passes the runtime contract.

import { rmSync } from 'node:fs';
import { after } from 'node:test';
import { ExecRuntime } from '../src/runtime/index.js';
import { runtimeContract } from '../src/runtime/contract.js';
import { tempDir } from './helpers.js';

const dir = tempDir('shoal-exec-');
after(() => rmSync(dir, { recursive: true, force: true }));

runtimeContract('exec', {
  open: () => new ExecRuntime({ dir, pollMs: 50 }),
  shell: (script) => ({ image: 'sh', command: ['/bin/sh', '-c', script] }),
  missing: { image: 'none', command: ['/no/such/program'] },
});
