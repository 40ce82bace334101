// Observability on a one-node cluster: cluster events (follow, since, filter; API and `shoal events`), Prometheus
// metrics at /metrics (families, values that match the cluster, the token it needs), and `service logs` with
// --since, --timestamps and a task id. The exec runtime keeps it fast; --timestamps needs a runtime that records
// times, so one test runs a Docker node.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../src/cli/client.js';
import { waitConverged, waitRemoved } from '../src/cli/converge.js';
import { readDataDir } from '../src/manager/data-dir.js';
import type { ClusterEvent, LogEntry } from '../src/protocol/index.js';
import { ExecRuntime } from '../src/runtime/index.js';
import { CLI, TEST_IMAGE, eventually, httpsRequest, startTestNode, tempDir, type TestNode } from './helpers.js';

/** Runs the `shoal` CLI without blocking this process (the manager under test runs in it); killed after `timeoutMs`. */
const shoalAsync = (args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });

/** A CLI context file for `node` in a temp dir; returns the environment that selects it, and the dir to remove. */
const cliContext = (node: TestNode): { env: Record<string, string>; dir: string } => {
  const dd = readDataDir(node.dataDir);
  if (!dd) throw new Error('the test node has no data dir');
  const dir = tempDir('shoal-obs-cli-');
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify({ hosts: [node.daemon.manager.address], token: dd.credentials.adminToken, clusterId: dd.config.clusterId, ca: node.tls.ca }), { mode: 0o600 });
  return { env: { SHOAL_CONFIG: path, SHOAL_HOST: '' }, dir };
};

const collect = async <T>(it: AsyncIterable<T>): Promise<T[]> => {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
};

const has = (events: ClusterEvent[], type: string, action: string, match: Record<string, string> = {}): boolean =>
  events.some((e) => e.type === type && e.action === action && Object.entries(match).every(([k, v]) => (k === 'name' ? e.name : e.attributes[k]) === v));

/** The value of one sample line of a Prometheus text, or undefined. */
const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('observability (exec runtime)', () => {
  let node: TestNode;
  let cli: { env: Record<string, string>; dir: string };
  let token: string;
  /** Before the manager started: the history does not reach back this far. */
  const beforeStart = new Date().toISOString();
  /** When the manager's history starts (its EVENTS_HISTORY_HEADER). */
  let historyStart = '';

  before(async () => {
    node = await startTestNode({ runtime: 'exec' });
    cli = cliContext(node);
    token = readDataDir(node.dataDir)?.credentials.adminToken ?? '';
  });
  after(async () => {
    await node?.stop();
    if (node) {
      // Task processes outlive a stopped daemon by design: remove them before the data dir goes.
      const rt = new ExecRuntime({ dir: join(node.dataDir, 'exec') });
      for (const c of await rt.list()) await rt.remove(c.id);
      await rt.close();
      await node.destroy();
    }
    if (cli) rmSync(cli.dir, { recursive: true, force: true });
  });

  it('streams events for a service create, scale and remove, and its tasks changing state', async () => {
    const ctl = new AbortController();
    const seen: ClusterEvent[] = [];
    const following = (async () => {
      for await (const e of node.client.events({ follow: true, signal: ctl.signal })) seen.push(e);
    })().catch((e: unknown) => {
      if (!ctl.signal.aborted) throw e;
    });
    try {
      await node.client.createService({ name: 'obs', mode: { replicated: { replicas: 2 } }, task: { container: { image: 'sh', command: ['/bin/sh', '-c', 'exec sleep 300'] }, restartPolicy: { delayMs: 0 } } });
      await waitConverged(node.client, 'obs', { desired: 2, timeoutMs: 20_000 });
      await node.client.scaleService('obs', 3);
      await waitConverged(node.client, 'obs', { desired: 3, timeoutMs: 20_000 });
      const removed = await node.client.removeService('obs');
      await waitRemoved(node.client, removed.id, { timeoutMs: 20_000 });
      await eventually('the removal events', () => has(seen, 'service', 'remove', { name: 'obs' }) && has(seen, 'task', 'remove', { service: 'obs' }));
    } finally {
      ctl.abort();
      await following;
    }
    assert.ok(has(seen, 'service', 'create', { name: 'obs', replicas: '2', image: 'sh' }), 'service create');
    assert.ok(has(seen, 'service', 'update', { name: 'obs', replicas: '3', 'replicas.old': '2' }), 'service scaled');
    const running = seen.filter((e) => e.type === 'task' && e.action === 'state' && e.attributes.state === 'running');
    assert.equal(running.length, 3, 'each of the three tasks started once');
    assert.deepEqual(running.map((e) => e.attributes.slot).sort(), ['1', '2', '3']);
    assert.ok(running.every((e) => e.attributes.node === node.nodeId && e.attributes.service === 'obs' && e.name.startsWith('obs.')));
    assert.ok(has(seen, 'task', 'desired', { service: 'obs', desiredState: 'remove' }), 'tasks told to go');
    const revisions = seen.map((e) => e.revision);
    assert.deepEqual(revisions, [...revisions].sort((a, b) => a - b), 'events come in store order');
  });

  it('replays the history since a time, filtered by type, and says from when the history is complete', async () => {
    const services = await collect(node.client.events({ since: beforeStart, filters: ['type=service'], onHistoryStart: (s) => (historyStart = s) }));
    const obs = services.filter((e) => e.name === 'obs');
    assert.equal(obs[0]?.action, 'create');
    assert.equal(obs.at(-1)?.action, 'remove');
    assert.ok(has(obs, 'service', 'update', { replicas: '3' }));
    assert.ok(services.every((e) => e.type === 'service'));
    assert.ok(Date.parse(historyStart) >= Date.parse(beforeStart) && Date.parse(historyStart) <= Date.now(), `history starts when the manager started (${historyStart})`);
    const nodes = await collect(node.client.events({ since: historyStart, filters: ['type=node'] }));
    assert.ok(has(nodes, 'node', 'up', { state: 'ready' }), 'the node came up after the manager started');
    const both = await collect(node.client.events({ since: historyStart, filters: ['type=node', 'type=task'] }));
    assert.ok(both.some((e) => e.type === 'node') && both.some((e) => e.type === 'task') && both.every((e) => e.type !== 'service'));
    assert.deepEqual(await collect(node.client.events({ since: new Date(Date.now() + 60_000).toISOString() })), [], 'nothing since a later time');
    await assert.rejects(collect(node.client.events({ filters: ['type=container'] })), (e: unknown) => e instanceof ApiError && e.status === 400 && /not an event type/.test(e.message));
    await assert.rejects(collect(node.client.events({ since: 'yesterday' })), (e: unknown) => e instanceof ApiError && e.code === 'invalid_argument');
  });

  it('shoal events prints the history as lines or JSON, warns when --since is before it, and ends at --until', async () => {
    const now = new Date().toISOString();
    const plain = await shoalAsync(['events', '--since', historyStart, '--until', now, '--filter', 'type=service'], cli.env);
    assert.equal(plain.code, 0, plain.stderr);
    const lines = plain.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^\S+Z service create \S+ \(name=obs, image=sh, mode=replicated, replicas=2\)$/);
    assert.ok(lines.some((l) => / service update \S+ \(name=obs, replicas=3, replicas\.old=2/.test(l)), plain.stdout);
    assert.match(lines.at(-1) ?? '', / service remove \S+ \(name=obs\)$/);
    assert.equal(plain.stderr, '', 'no warning: --since is within the history');

    const json = await shoalAsync(['events', '--since', '2000-01-01T00:00:00Z', '--until', now, '--format', 'json'], cli.env);
    assert.equal(json.code, 0, json.stderr);
    const events = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as ClusterEvent);
    assert.ok(has(events, 'service', 'remove', { name: 'obs' }) && has(events, 'task', 'state', { state: 'running' }));
    assert.match(json.stderr, /event history starts at .*earlier events are not shown/);

    // Following (the default) until a time just ahead: it shows what happens meanwhile, then ends by itself.
    const until = new Date(Date.now() + 4000).toISOString();
    const follow = shoalAsync(['events', '--until', until, '--filter', 'type=service'], cli.env);
    await new Promise((r) => setTimeout(r, 1500));
    await node.client.createService({ name: 'late', task: { container: { image: 'sh', command: ['/bin/sh', '-c', 'exec sleep 300'] } } });
    const r = await follow;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, / service create \S+ \(name=late,/);
    assert.doesNotMatch(r.stdout, /name=obs/, 'without --since only new events');
    await waitRemoved(node.client, (await node.client.removeService('late')).id, { timeoutMs: 20_000 });
  });

  it('serves Prometheus metrics that match the cluster, and only with the admin token', async () => {
    await node.client.createService({ name: 'metered', mode: { replicated: { replicas: 2 } }, task: { container: { image: 'sh', command: ['/bin/sh', '-c', 'exec sleep 300'] } } });
    await waitConverged(node.client, 'metered', { desired: 2, timeoutMs: 20_000 });
    await node.client.listServices();
    const address = node.daemon.manager.address;

    const refused = await httpsRequest(address, '/metrics', { ca: node.tls.ca });
    assert.equal(refused.status, 401);
    const wrong = await httpsRequest(address, '/metrics', { ca: node.tls.ca, headers: { authorization: 'Bearer not-the-token' } });
    assert.equal(wrong.status, 401);

    const res = await httpsRequest(address, '/metrics', { ca: node.tls.ca, headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const text = String(res.json);
    for (const family of ['shoal_nodes', 'shoal_tasks', 'shoal_services', 'shoal_leader', 'shoal_reconcile_queue_depth', 'shoal_scheduling_latency_seconds', 'shoal_api_request_duration_seconds', 'shoal_event_loop_delay_seconds', 'shoal_gc_pause_seconds', 'process_resident_memory_bytes', 'process_cpu_seconds_total']) {
      assert.match(text, new RegExp(`^# TYPE ${family} (gauge|histogram)$`, 'm'), `family ${family}`);
    }
    // The only service now: every running task is one of its two.
    assert.equal((await node.client.serviceTasks('metered')).filter((t) => t.state === 'running').length, 2);
    assert.equal(sample(text, 'shoal_tasks{state="running"}'), 2, 'running tasks');
    assert.equal(sample(text, 'shoal_services'), 1);
    assert.equal(sample(text, 'shoal_nodes{status="ready"}'), 1);
    assert.equal(sample(text, 'shoal_nodes{status="down"}'), 0);
    assert.equal(sample(text, 'shoal_leader'), 1);
    const depth = sample(text, 'shoal_reconcile_queue_depth');
    assert.ok(depth !== undefined && depth >= 0);
    // Every task so far was scheduled by this leader: at least obs's 3 and metered's 2.
    const scheduled = sample(text, 'shoal_scheduling_latency_seconds_count') ?? 0;
    assert.ok(scheduled >= 5, `scheduling latency observations: ${scheduled}`);
    assert.equal(sample(text, 'shoal_scheduling_latency_seconds_bucket{le="+Inf"}'), scheduled);
    assert.ok((sample(text, 'shoal_scheduling_latency_seconds_sum') ?? -1) >= 0);
    assert.ok((sample(text, 'shoal_api_request_duration_seconds_count{method="GET",route="/v1/services",code="200"}') ?? 0) >= 1);
    assert.ok((sample(text, 'shoal_api_request_duration_seconds_count{method="GET",route="/metrics",code="401"}') ?? 0) >= 2, 'refused scrapes are counted by route');
    assert.doesNotMatch(text, /route="\/v1\/services\/metered/, 'routes are patterns, not paths');
    // The process probes: the event loop was probed while the services converged, and the process holds memory and CPU time.
    const probes = sample(text, 'shoal_event_loop_delay_seconds_count') ?? 0;
    assert.ok(probes >= 10, `event-loop probes: ${probes}`);
    assert.equal(sample(text, 'shoal_event_loop_delay_seconds_bucket{le="+Inf"}'), probes);
    assert.ok((sample(text, 'process_resident_memory_bytes') ?? 0) > 10 * 2 ** 20, 'resident memory');
    assert.ok((sample(text, 'process_cpu_seconds_total') ?? 0) > 0, 'CPU time');
  });

  it('shows logs since a time, of one task by id, and with --timestamps', async () => {
    await node.client.createService({ name: 'talk', mode: { replicated: { replicas: 2 } }, task: { container: { image: 'sh', command: ['/bin/sh', '-c', 'echo hello; echo oops >&2; exec sleep 300'] } } });
    await waitConverged(node.client, 'talk', { desired: 2, timeoutMs: 20_000 });
    const all = await eventually('both tasks logged both lines', async () => {
      const out = await collect(node.client.serviceLogs('talk'));
      return out.length === 4 && out;
    });
    // The exec runtime dates lines by their log file's last write: a time after it leaves none, a time before all.
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(await collect(node.client.serviceLogs('talk', { since: '1s' })), []);
    assert.equal((await collect(node.client.serviceLogs('talk', { since: beforeStart }))).length, 4);

    const [first] = await node.client.serviceTasks('talk');
    assert.ok(first);
    const one = await collect(node.client.serviceLogs(first.id));
    assert.deepEqual(one.map((l: LogEntry) => [l.taskId, l.stream, l.line]).sort(), [
      [first.id, 'stderr', 'oops'],
      [first.id, 'stdout', 'hello'],
    ]);
    assert.equal((await collect(node.client.serviceLogs(first.id.slice(0, 8)))).length, 2, 'a unique task id prefix');
    assert.ok(all.some((l) => l.taskId !== first.id), 'the service has another task');
    await assert.rejects(collect(node.client.serviceLogs('nothing-like-this')), (e: unknown) => e instanceof ApiError && e.status === 404 && /service or task/.test(e.message));

    const r = await shoalAsync(['service', 'logs', '--timestamps', first.id], cli.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^- talk\\.${first.slot}\\.${first.id.slice(0, 12)}@\\S+ +\\| hello$`, 'm'), 'exec records no time: a dash');
    assert.match(r.stderr, /\| oops$/m);
    const late = await shoalAsync(['service', 'logs', '--since', '1s', 'talk'], cli.env);
    assert.equal(late.code, 0, late.stderr);
    assert.equal(late.stdout + late.stderr, '');
  });
});

describe('service logs --timestamps and --since (Docker runtime)', () => {
  let node: TestNode;
  let cli: { env: Record<string, string>; dir: string };

  before(async () => {
    node = await startTestNode({ runtime: 'docker' });
    cli = cliContext(node);
  });
  after(async () => {
    await node?.destroy();
    if (cli) rmSync(cli.dir, { recursive: true, force: true });
  });

  it("prefixes lines with the runtime's time and keeps only lines since a time", async () => {
    await node.client.createService({ name: 'ticks', task: { container: { image: TEST_IMAGE, command: ['sh', '-c', 'echo one; sleep 1.5; echo two; exec sleep 300'] } } });
    await waitConverged(node.client, 'ticks', { desired: 1, timeoutMs: 30_000 });
    const lines = await eventually('both lines', async () => {
      const out = await collect(node.client.serviceLogs('ticks'));
      return out.length === 2 && out;
    });
    const [one, two] = lines;
    assert.equal(one?.line, 'one');
    assert.ok(one?.time && two?.time && Date.parse(two.time) - Date.parse(one.time) >= 1000, 'lines carry the times they were written');
    const between = new Date(Date.parse(one.time) + 700).toISOString();
    assert.deepEqual((await collect(node.client.serviceLogs('ticks', { since: between }))).map((l) => l.line), ['two']);

    const r = await shoalAsync(['service', 'logs', '--timestamps', '--no-task-ids', '--since', between, 'ticks'], cli.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${two.time} two\n`);
  });
});
