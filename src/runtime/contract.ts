// The runtime contract: behaviour every Runtime (docker, exec, sim) must show, as node:test suites that each
// implementation's test file runs unchanged against its real backend. A runtime that runs no processes (sim) says so
// with `processes: false`: the cases about what a process does (exit codes, environment, signals, output, health
// checks) do not apply to it and are left out, and the suite's name says which.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { HealthCheck } from '../core/index.js';
import { LABELS, RuntimeError, type ContainerConfig, type ContainerInfo, type ContainerState, type Runtime, type RuntimeEvent } from './runtime.js';

export interface RuntimeHarness {
  /** A new runtime instance on the same backend (a second one simulates an agent restart). */
  open(): Runtime;
  /** Image and command that run `script` with a POSIX shell. */
  shell(script: string): { image: string; command: string[] };
  /** Image and command that cannot run on this backend at all; the error must name `name`. */
  missing: { image: string; command: string[]; name: string };
  /** Labels put on every container the suite makes, so the test file can remove them all whatever happens. */
  labels: Record<string, string>;
  /** Whether containers run real processes (default true); false leaves out the cases about processes. */
  processes?: boolean;
}

/** What the cases a runtime without processes leaves out are about. */
const PROCESS_CASES = 'exit codes, environment, signals, logs, health checks';

const within = async <T>(ms: number, what: string, p: Promise<T>): Promise<T> => {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
};

/** The part of an inspection that says how a container ended. */
const pick = (i: ContainerInfo): { state: ContainerState; exitCode: number | undefined } => ({ state: i.state, exitCode: i.exitCode });

/** Reads events until one matches; fails after `ms`. */
const nextMatching = (events: AsyncIterator<RuntimeEvent>, what: string, match: (e: RuntimeEvent) => boolean, ms = 10_000): Promise<RuntimeEvent> =>
  within(ms, what, (async () => {
    for (;;) {
      const r = await events.next();
      if (r.done) throw new Error('event stream ended');
      if (match(r.value)) return r.value;
    }
  })());

/** A health check with the short timings the health cases use. */
const check = (test: string[], over: Partial<HealthCheck> = {}): HealthCheck => ({ test, intervalMs: 200, timeoutMs: 5000, retries: 2, startPeriodMs: 0, ...over });

const until = async (what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

export const runtimeContract = (name: string, h: RuntimeHarness): void => {
  const processes = h.processes ?? true;
  describe(`runtime contract: ${name}${processes ? '' : ` (runs no processes: the cases on ${PROCESS_CASES} do not apply)`}`, () => {
    const nodeId = `contract${randomBytes(6).toString('hex')}`;
    const rt = h.open();
    let n = 0;
    const config = (run: { image: string; command: string[] }, over: Partial<ContainerConfig> = {}): ContainerConfig => ({
      taskId: `t${randomBytes(8).toString('hex')}`,
      serviceId: 'svc1',
      serviceName: 'contract',
      slot: ++n,
      nodeId,
      env: ['GREETING=hello'],
      labels: { ...h.labels, extra: 'yes' },
      limits: { nanoCpus: 0, memoryBytes: 0 },
      ...run,
      ...over,
    });
    const started = async (script: string, over: Partial<ContainerConfig> = {}): Promise<{ id: string; cfg: ContainerConfig }> => {
      const cfg = config(h.shell(script), over);
      const id = await rt.create(cfg);
      await rt.start(id);
      return { id, cfg };
    };

    const ours = (labels: Record<string, string>): boolean => Object.entries(h.labels).every(([k, v]) => labels[k] === v);
    after(async () => {
      for (const c of await rt.list()) if (ours(c.labels)) await rt.remove(c.id);
      await rt.close();
    });

    it('creates (not started), starts, and labels a container with its task, service, slot and node', async () => {
      const cfg = config(h.shell('sleep 30'));
      const id = await rt.create(cfg);
      const created = await rt.inspect(id);
      assert.equal(created.state, 'created');
      await rt.start(id);
      const info = await rt.inspect(id);
      assert.equal(info.state, 'running');
      assert.equal(info.taskId, cfg.taskId);
      assert.equal(info.labels[LABELS.serviceId], 'svc1');
      assert.equal(info.labels[LABELS.serviceName], 'contract');
      assert.equal(info.labels[LABELS.slot], String(cfg.slot));
      assert.equal(info.labels[LABELS.nodeId], nodeId);
      assert.equal(info.labels.extra, 'yes');
      await rt.remove(id);
    });

    it('removes; stop and remove are idempotent; a removed container is missing', async () => {
      const { id } = await started('sleep 30');
      await rt.remove(id);
      assert.equal((await rt.inspect(id)).state, 'missing');
      await rt.remove(id);
      await rt.stop(id, 1000);
      const never = await rt.create(config(h.shell('sleep 30')));
      await rt.stop(never, 1000);
      assert.equal((await rt.inspect(never)).state, 'created', 'stopping a container that never started leaves it created');
      await rt.remove(never);
      assert.equal((await rt.inspect(never)).state, 'missing');
    });

    it('creates once per task: a repeated create (an agent retrying after a crash) returns the same container', async () => {
      const cfg = config(h.shell('sleep 30'));
      const id = await rt.create(cfg);
      assert.equal(await rt.create(cfg), id);
      assert.equal((await rt.list({ nodeId })).filter((c) => c.taskId === cfg.taskId).length, 1);
      await rt.remove(id);
    });

    it('lists only the containers of the node asked for', async () => {
      const mine = await started('sleep 30');
      const other = await started('sleep 30', { nodeId: `${nodeId}x` });
      try {
        const ids = (await rt.list({ nodeId })).map((c) => c.id);
        assert.ok(ids.includes(mine.id));
        assert.ok(!ids.includes(other.id));
        assert.ok((await rt.list()).some((c) => c.id === other.id), 'without a filter, every Shoal container');
      } finally {
        await rt.remove(other.id);
        await rt.remove(mine.id);
      }
    });

    it('lets a new instance (an agent restart) find, stop and remove what an earlier one started', async () => {
      const { id, cfg } = await started('sleep 30');
      const again = h.open();
      try {
        const found = (await again.list({ nodeId })).find((c) => c.taskId === cfg.taskId);
        assert.equal(found?.id, id);
        assert.equal(found?.state, 'running');
        await again.stop(id, 2000);
        assert.equal((await again.inspect(id)).state, 'exited');
        await again.remove(id);
        assert.equal((await again.inspect(id)).state, 'missing');
      } finally {
        await again.close();
      }
    });

    it('reports the end of a container it stops as an event', async () => {
      const { id } = await started('sleep 30');
      const ctl = new AbortController();
      const events = rt.events(ctl.signal)[Symbol.asyncIterator]();
      try {
        await rt.stop(id, 2000);
        await nextMatching(events, 'the exit event of a stopped container', (e) => e.containerId === id && e.state === 'exited');
      } finally {
        ctl.abort();
        await events.return?.();
        await rt.remove(id);
      }
    });

    // What processes do: only for runtimes that run them.
    if (processes) {
      it('reports exit codes: 0 and non-zero', async () => {
        const ok = await started('exit 0');
        const bad = await started('exit 3');
        await until('both to exit', async () => (await rt.inspect(ok.id)).state === 'exited' && (await rt.inspect(bad.id)).state === 'exited');
        assert.equal((await rt.inspect(ok.id)).exitCode, 0);
        assert.equal((await rt.inspect(bad.id)).exitCode, 3);
      });

      it('passes the environment to the process', async () => {
        const { id } = await started('echo "$GREETING world"');
        await until('exit', async () => (await rt.inspect(id)).state === 'exited');
        const lines = [];
        for await (const l of rt.logs(id, { follow: false, signal: AbortSignal.timeout(5000) })) lines.push(l.line);
        assert.deepEqual(lines, ['hello world']);
      });

      it('stops with SIGTERM, and with SIGKILL after the grace period when TERM is ignored', async () => {
        const polite = await started('sleep 30');
        const t0 = Date.now();
        await rt.stop(polite.id, 5000);
        assert.ok(Date.now() - t0 < 3000, 'a process that honours SIGTERM stops well before the grace period');
        assert.deepEqual(pick(await rt.inspect(polite.id)), { state: 'exited', exitCode: 128 + 15 });
        const stubborn = await started("trap '' TERM; while true; do sleep 0.1; done");
        await new Promise((r) => setTimeout(r, 300));
        const t1 = Date.now();
        await rt.stop(stubborn.id, 1000);
        const took = Date.now() - t1;
        assert.ok(took >= 900, `waited the grace period (${took}ms)`);
        assert.ok(took < 8000, `then killed (${took}ms)`);
        assert.deepEqual(pick(await rt.inspect(stubborn.id)), { state: 'exited', exitCode: 128 + 9 });
      });

      it('records the code a process exits with when it handles SIGTERM itself', async () => {
        const { id } = await started("trap 'exit 5' TERM; while true; do sleep 0.1; done");
        await new Promise((r) => setTimeout(r, 300));
        await rt.stop(id, 5000);
        assert.deepEqual(pick(await rt.inspect(id)), { state: 'exited', exitCode: 5 });
      });

      it('lets a new instance learn, from its events, the exit code of a process an earlier one started', async () => {
        const later = await started('sleep 1; exit 7');
        const again = h.open();
        const ctl = new AbortController();
        const events = again.events(ctl.signal)[Symbol.asyncIterator]();
        try {
          await nextMatching(events, 'the exit event of a process the earlier instance started', (e) => e.containerId === later.id && e.state === 'exited');
          assert.deepEqual(pick(await again.inspect(later.id)), { state: 'exited', exitCode: 7 });
        } finally {
          ctl.abort();
          await events.return?.();
          await again.close();
        }
      });

      it('serves logs of stdout and stderr, with tail, and follows new lines', async () => {
        const { id } = await started('echo one; echo two >&2; echo three; sleep 1; echo four; sleep 30');
        await until('first lines', async () => {
          const got = [];
          for await (const l of rt.logs(id, { follow: false, signal: AbortSignal.timeout(5000) })) got.push(l);
          return got.length >= 3;
        });
        const all = [];
        for await (const l of rt.logs(id, { follow: false, signal: AbortSignal.timeout(5000) })) all.push(l);
        assert.deepEqual(all.filter((l) => l.stream === 'stdout').map((l) => l.line).slice(0, 2), ['one', 'three']);
        assert.deepEqual(all.filter((l) => l.stream === 'stderr').map((l) => l.line), ['two']);
        // Docker keeps one interleaved log (tail counts across streams); exec keeps a file per stream (tail per stream).
        const tail = [];
        for await (const l of rt.logs(id, { follow: false, tail: 1, signal: AbortSignal.timeout(5000) })) tail.push(l.line);
        assert.ok(tail.length >= 1 && tail.length <= 2, `tail 1 gave ${JSON.stringify(tail)}`);
        assert.ok(!tail.includes('one'), 'the first line is not among the last ones');
        const ctl = new AbortController();
        const followed: string[] = [];
        await within(10_000, 'a followed line', (async () => {
          for await (const l of rt.logs(id, { follow: true, tail: 0, signal: ctl.signal })) {
            followed.push(l.line);
            if (l.line === 'four') break;
          }
        })());
        ctl.abort();
        assert.ok(followed.includes('four'));
        await rt.remove(id);
      });

      it('serves only lines written at or after `since`', async () => {
        const { id } = await started('echo early; echo early-err >&2; sleep 30');
        const read = async (since: number): Promise<string[]> => {
          const got = [];
          for await (const l of rt.logs(id, { follow: false, since, signal: AbortSignal.timeout(5000) })) got.push(l.line);
          return got.sort();
        };
        await until('both lines', async () => (await read(0)).length === 2);
        // Both lines were written before they could be read, so nothing is at or after a moment later than that.
        const mark = Date.now() + 1;
        assert.deepEqual(await read(mark), []);
        assert.deepEqual(await read(mark - 60_000), ['early', 'early-err']);
        await rt.remove(id);
      });

      it('reports exits as events', async () => {
        const ctl = new AbortController();
        const events = rt.events(ctl.signal)[Symbol.asyncIterator]();
        const { id } = await started('sleep 0.5; exit 0');
        try {
          await nextMatching(events, 'an exit event', (e) => e.containerId === id && e.state === 'exited');
        } finally {
          ctl.abort();
          await events.return?.();
        }
      });

      it('reports health starting until a check passes, then healthy, also as an event and in listings', async () => {
        const ctl = new AbortController();
        const events = rt.events(ctl.signal)[Symbol.asyncIterator]();
        try {
          const { id } = await started('sleep 30', { healthcheck: check(['CMD', 'true']) });
          assert.equal((await rt.inspect(id)).health, 'starting', 'no check has run yet (the first runs an interval after the start)');
          await nextMatching(events, 'a healthy event', (e) => e.containerId === id && e.health === 'healthy');
          assert.equal((await rt.inspect(id)).health, 'healthy');
          assert.equal((await rt.list({ nodeId })).find((c) => c.id === id)?.health, 'healthy');
          await rt.remove(id);
        } finally {
          ctl.abort();
          await events.return?.();
        }
      });

      it('reports unhealthy after `retries` failed checks in a row, with the last output, never healthy before', async () => {
        const t0 = Date.now();
        const { id } = await started('sleep 30', { healthcheck: check(['CMD-SHELL', 'echo sick; exit 1'], { retries: 3 }) });
        const seen = new Set<string | undefined>();
        await until('unhealthy', async () => {
          const h = (await rt.inspect(id)).health;
          seen.add(h);
          return h === 'unhealthy';
        });
        const took = Date.now() - t0;
        assert.ok(took >= 3 * 200, `three checks, an interval apart, took ${took}ms`);
        assert.deepEqual([...seen].sort(), ['starting', 'unhealthy']);
        const info = await rt.inspect(id);
        assert.equal(info.healthOutput, 'sick');
        assert.equal(info.state, 'running', 'an unhealthy container goes on running: acting on it is the agent\'s call');
        await rt.remove(id);
      });

      it('does not count failures in the start period, and fails a check that outlives its timeout', async () => {
        const t0 = Date.now();
        const slow = await started('sleep 30', { healthcheck: check(['CMD-SHELL', 'exit 1'], { retries: 1, startPeriodMs: 1500 }) });
        const hung = await started('sleep 30', { healthcheck: check(['CMD-SHELL', 'sleep 20'], { retries: 1, timeoutMs: 300 }) });
        await until('the hung check to time out', async () => (await rt.inspect(hung.id)).health === 'unhealthy');
        assert.ok(Date.now() - t0 < 5000, 'a timed-out check fails at its timeout, not when it would have ended');
        await until('the start period to end', async () => (await rt.inspect(slow.id)).health === 'unhealthy');
        assert.ok(Date.now() - t0 >= 1500, `unhealthy only after the start period (${Date.now() - t0}ms)`);
        await rt.remove(slow.id);
        await rt.remove(hung.id);
      });

      it('has no health without a check, with [\'NONE\'], or with an empty test and no image check to inherit', async () => {
        const plain = await started('sleep 30');
        const off = await started('sleep 30', { healthcheck: check(['NONE']) });
        const inherit = await started('sleep 30', { healthcheck: check([]) });
        await new Promise((r) => setTimeout(r, 600));
        for (const { id } of [plain, off, inherit]) {
          const info = await rt.inspect(id);
          assert.equal(info.state, 'running');
          assert.equal(info.health, undefined);
          assert.equal((await rt.list({ nodeId })).find((c) => c.id === id)?.health, undefined);
          await rt.remove(id);
        }
      });

      it('keeps health across a restart of the runtime, which goes on checking what it lists', async () => {
        // Passes eight times, then fails for good: healthy first, unhealthy later, whoever runs the checks.
        const flaky = check(['CMD-SHELL', 'echo x >> checks; [ "$(wc -l < checks)" -le 8 ]']);
        const first = h.open();
        const cfg = config(h.shell('sleep 30'), { healthcheck: flaky });
        const id = await first.create(cfg);
        await first.start(id);
        await until('healthy', async () => (await first.inspect(id)).health === 'healthy');
        await first.close();
        const again = h.open();
        const ctl = new AbortController();
        const events = again.events(ctl.signal)[Symbol.asyncIterator]();
        try {
          const found = (await again.list({ nodeId })).find((c) => c.taskId === cfg.taskId);
          assert.equal(found?.health, 'healthy', 'the new instance knows the health the old one saw');
          await nextMatching(events, 'an unhealthy event from the checks the new instance runs', (e) => e.containerId === id && e.health === 'unhealthy');
          assert.equal((await again.inspect(id)).health, 'unhealthy');
        } finally {
          ctl.abort();
          await events.return?.();
          await again.remove(id);
          await again.close();
        }
      });
    }

    it('rejects, as permanent, a task that can never run here', async () => {
      const { name: what, ...run } = h.missing;
      await assert.rejects(rt.create(config(run)), (e: unknown) => {
        assert.ok(e instanceof RuntimeError, `a RuntimeError, not ${String(e)}`);
        assert.equal(e.permanent, true);
        assert.ok(e.message.includes(what), `the message names '${what}': ${e.message}`);
        return true;
      });
    });

    it('reports its capacity', async () => {
      const c = await rt.capacity();
      assert.ok(c.nanoCpus >= 1e9);
      assert.ok(c.memoryBytes > 64 * 1024 * 1024);
    });
  });
};
