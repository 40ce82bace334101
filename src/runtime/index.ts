// The runtime layer's public surface and the factory that picks a runtime by name.

import { join } from 'node:path';
import { DockerRuntime } from './docker/docker-runtime.js';
import type { Runtime } from './runtime.js';

export * from './runtime.js';
export { DockerRuntime } from './docker/docker-runtime.js';

export const createRuntime = (name: 'docker' | 'exec', opts: { dataDir: string; dockerSocket?: string }): Runtime => {
  if (name === 'docker') return new DockerRuntime(opts.dockerSocket ? { socketPath: opts.dockerSocket } : {});
  throw new Error(`runtime ${name} is not available yet (state dir would be ${join(opts.dataDir, 'exec')})`);
};
