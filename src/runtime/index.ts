// The runtime layer's public surface and the factory that picks a runtime by name.

import { join } from 'node:path';
import { DockerRuntime } from './docker/docker-runtime.js';
import { ExecRuntime } from './exec/exec-runtime.js';
import { SimRuntime, type SimRuntimeOptions } from './sim/sim-runtime.js';
import type { Runtime } from './runtime.js';

export * from './runtime.js';
export { DockerRuntime } from './docker/docker-runtime.js';
export { ExecRuntime } from './exec/exec-runtime.js';
export { SimHost, SimRuntime, type SimDuration, type SimRuntimeOptions } from './sim/sim-runtime.js';

export type RuntimeName = 'docker' | 'exec' | 'sim';

/**
 * The runtime of a node: `docker` talks to the Engine socket; `exec` keeps its state under DATA_DIR/exec; `sim` starts
 * nothing (a hollow node; its containers live in this process's memory).
 */
export const createRuntime = (name: RuntimeName, opts: { dataDir: string; dockerSocket?: string; sim?: SimRuntimeOptions }): Runtime => {
  switch (name) {
    case 'docker':
      return new DockerRuntime(opts.dockerSocket ? { socketPath: opts.dockerSocket } : {});
    case 'exec':
      return new ExecRuntime({ dir: join(opts.dataDir, 'exec') });
    case 'sim':
      return new SimRuntime(opts.sim);
  }
};
