// The Docker runtime against the real Docker Engine passes the runtime contract.

import { DockerRuntime } from '../src/runtime/index.js';
import { runtimeContract } from '../src/runtime/contract.js';
import { TEST_IMAGE } from './helpers.js';

runtimeContract('docker', {
  open: () => new DockerRuntime(),
  shell: (script) => ({ image: TEST_IMAGE, command: ['sh', '-c', script] }),
  missing: { image: 'shoal-test/no-such-image', command: [] },
});
