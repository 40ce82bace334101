// The sim runtime passes the runtime contract (the cases about processes do not apply: it runs none), and keeps its
// own promises: start latency (fixed or drawn from a range), a failure rate, self-exit, missing images, small records.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runtimeContract } from '../contract.js';
import { RuntimeError, type ContainerConfig, type LogLine, type RuntimeEvent } from '../runtime.js';
import { SimHost, SimRuntime } from './sim-runtime.js';

const host = new SimHost();
runtimeContract('sim', {
  open: () => new SimRuntime({ missingImages: ['sim-absent'] }, host),
  shell: (script) => ({ image: 'sim', command: ['/bin/sh', '-c', script] }),
  missing: { image: 'sim-absent', command: [], name: 'sim-absent' },
  labels: { 'shoal-test.run': 'sim' },
  processes: false,
});

let n = 0;
const config = (over: Partial<ContainerConfig> = {}): ContainerConfig => ({
  taskId: `t${++n}`,
  serviceId: 'svc1',
  serviceName: 'sim',
  slot: n,
  nodeId: 'n1',
  image: 'sim',
  command: [],
  env: [],
  labels: {},
  limits: { nanoCpus: 0, memoryBytes: 0 },
  ...over,
});

/** A deterministic random source cycling through `values`. */
const sequence = (...values: number[]): (() => number) => {
  let i = 0;
  return () => values[i++ % values.length] ?? 0;
};

describe('sim runtime: simulated behaviour', () => {
  it('takes the start latency, drawn from the range with the injected random source', async () => {
    const rt = new SimRuntime({ startLatencyMs: [100, 300], random: sequence(0.5, 0.99) });
    const id = await rt.create(config());
    const t0 = performance.now();
    await rt.start(id);
    const took = performance.now() - t0;
    assert.ok(took >= 195 && took < 1000, `100 + 0.5 × 200 ms, took ${took}`);
    assert.equal((await rt.inspect(id)).state, 'running');
  });

  it('leaves the container created while it starts, and a start aborted by its signal leaves it so', async () => {
    const rt = new SimRuntime({ startLatencyMs: 5000 });
    const id = await rt.create(config());
    const ctl = new AbortController();
    const starting = rt.start(id, ctl.signal);
    assert.equal((await rt.inspect(id)).state, 'created');
    ctl.abort(new Error('agent stopping'));
    await assert.rejects(starting, /agent stopping/);
    assert.equal((await rt.inspect(id)).state, 'created');
  });

  it('fails the share of starts the failure rate says, with an error that says it was simulated', async () => {
    const rt = new SimRuntime({ failureRate: 0.25, random: sequence(0.1, 0.3, 0.6, 0.9) });
    const outcomes: string[] = [];
    for (let i = 0; i < 8; i++) {
      const id = await rt.create(config());
      try {
        await rt.start(id);
        outcomes.push('running');
      } catch (e) {
        assert.ok(e instanceof RuntimeError && !e.permanent, 'a failed start is not permanent: the task is replaced');
        assert.match(e.message, /simulated start failure \(this sim node fails 25% of starts\)/);
        const info = await rt.inspect(id);
        assert.deepEqual([info.state, info.error], ['exited', 'simulated start failure']);
        outcomes.push('failed');
      }
    }
    assert.deepEqual(outcomes, ['failed', 'running', 'running', 'running', 'failed', 'running', 'running', 'running']);
  });

  it('refuses a failure rate outside 0..1 and a negative or inverted latency', () => {
    assert.throws(() => new SimRuntime({ failureRate: 1.5 }), /failure rate 1.5/);
    assert.throws(() => new SimRuntime({ startLatencyMs: -1 }), /start latency -1/);
    assert.throws(() => new SimRuntime({ exitAfterMs: [50, 10] }), /exit-after \[50,10\]/);
  });

  it('exits by itself after exit-after, with the configured code, and says so as an event', async () => {
    const rt = new SimRuntime({ exitAfterMs: 50, exitCode: 3 });
    const ctl = new AbortController();
    const events = rt.events(ctl.signal)[Symbol.asyncIterator]();
    const id = await rt.create(config());
    await rt.start(id);
    const seen: RuntimeEvent[] = [];
    for (;;) {
      const r = await events.next();
      assert.ok(!r.done);
      seen.push(r.value);
      if (r.value.state === 'exited') break;
    }
    ctl.abort();
    assert.deepEqual(seen.map((e) => e.state), ['created', 'running', 'exited']);
    const info = await rt.inspect(id);
    assert.deepEqual([info.state, info.exitCode], ['exited', 3]);
  });

  it('stops a running container at once with the code of a process that honours SIGTERM', async () => {
    const rt = new SimRuntime();
    const id = await rt.create(config());
    await rt.start(id);
    const t0 = performance.now();
    await rt.stop(id, 10_000);
    assert.ok(performance.now() - t0 < 100);
    const info = await rt.inspect(id);
    assert.deepEqual([info.state, info.exitCode], ['exited', 143]);
  });

  it('has no output: logs are empty, and a followed log ends when the container stops', async () => {
    const rt = new SimRuntime();
    const id = await rt.create(config());
    await rt.start(id);
    const lines: LogLine[] = [];
    for await (const l of rt.logs(id, { follow: false, signal: AbortSignal.timeout(1000) })) lines.push(l);
    assert.deepEqual(lines, []);
    const followedLines: LogLine[] = [];
    const followed = (async () => {
      for await (const l of rt.logs(id, { follow: true, signal: AbortSignal.timeout(5000) })) followedLines.push(l);
    })();
    await new Promise((r) => setTimeout(r, 20));
    await rt.stop(id, 0);
    await followed;
    assert.deepEqual(followedLines, []);
    await assert.rejects(async () => {
      for await (const _ of rt.logs('sim-nope', { follow: false, signal: AbortSignal.timeout(1000) })) break;
    }, /no such container/);
  });

  it('keeps each node apart on its own host, and reports the configured capacity', async () => {
    const a = new SimRuntime({ capacity: { nanoCpus: 2e9, memoryBytes: 1024 ** 3 } });
    const b = new SimRuntime();
    await a.create(config());
    assert.equal((await a.list()).length, 1);
    assert.equal((await b.list()).length, 0);
    assert.deepEqual(await a.capacity(), { nanoCpus: 2e9, memoryBytes: 1024 ** 3 });
  });
});
