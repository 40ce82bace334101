// bench/scale: the control plane at a scale no single machine hosts for real. A manager (its own process, SQLite or a
// real etcd), N hollow nodes (another process: real agents, real sessions, the sim runtime), then services totalling T
// tasks. Measures: join time; time until all T run and tasks/s; API latency p50/p99 of `service ls`, `service ps` and
// a write (scale), idle (the same-run baseline) and during convergence (`service ls` alone while failing over), and
// beside them the floor (`floorLs`: the same `service ls` answer from a plain server in a process of its own); peak
// RSS and CPU of each process; and the time until the tasks of 10% of the nodes, killed at once, run elsewhere (as the
// probe sees it, and as the replacements' own start times record it). Prints
// a JSON summary with each figure beside its target (ratio) and writes an SVG chart of tasks running over time. Never
// passes or fails on a time.
//
// Usage: node dist/bench/scale.js [--nodes 1000] [--tasks 100000] [--services 100] [--store sqlite|etcd|both]
//                                 [--out DIR] [--cpu-prof] [--start-latency MS] [--kill-fraction 0.1]

import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ApiError, ShoalClient } from '../src/cli/client.js';
import { DAEMON_NODE_FLAGS } from '../src/manager/daemon.js';
import { initDataDir, readDataDir, readNodeTls } from '../src/manager/data-dir.js';
import { startEtcd, type EtcdCluster } from '../test/etcd.js';
import { freePort, httpsRequest } from '../test/helpers.js';
import type { ServiceSpecInput } from '../src/protocol/index.js';
import type { FloorReady } from './scale-floor.js';
import type { NodesReply, NodesRequest } from './scale-nodes.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000' },
    tasks: { type: 'string', default: '100000' },
    services: { type: 'string', default: '100' },
    store: { type: 'string', default: 'sqlite' },
    out: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    'start-latency': { type: 'string', default: '0' },
    'kill-fraction': { type: 'string', default: '0.1' },
  },
});
const NODES = Number(values.nodes);
const TASKS = Number(values.tasks);
const SERVICES = Math.min(Number(values.services), TASKS);
const KILL = Math.max(1, Math.round(NODES * Number(values['kill-fraction'])));
const OUT = values.out ?? mkdtempSync(join(tmpdir(), 'shoal-scale-'));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const NODES_MAIN = fileURLToPath(new URL('./scale-nodes.js', import.meta.url));
const FLOOR_MAIN = fileURLToPath(new URL('./scale-floor.js', import.meta.url));
/** Every wait is bounded: past this the bench gives up (it reports, it does not judge). */
const LIMIT_MS = 15 * 60_000;
const SAMPLE_GAP_MS = 100;
/** Service creates in flight at once. */
const CREATE_CONCURRENCY = 10;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The issue's targets (a 2-core machine); each figure is printed beside its ratio to these. */
const TARGETS = { convergeSeconds: 30, tasksPerSecond: 3300, apiP99Ms: 50, managerRssMiB: 1024, failoverSeconds: 5 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const until = async <T>(what: string, check: () => Promise<T | undefined>, gapMs = SAMPLE_GAP_MS): Promise<T> => {
  const deadline = Date.now() + LIMIT_MS;
  while (Date.now() < deadline) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    await sleep(gapMs);
  }
  throw new Error(`gave up after ${LIMIT_MS / 1000}s waiting for ${what}`);
};

// ------------------------------------------------------------------ process figures (/proc)

interface ProcFigures {
  /** Peak resident set (VmHWM), MiB. */
  peakRssMiB: number;
  /** user + system CPU time so far, seconds. */
  cpuSeconds: number;
}

const procFigures = (pid: number | undefined): ProcFigures => {
  if (pid === undefined) return { peakRssMiB: 0, cpuSeconds: 0 };
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    const ticks = Number(f[11]) + Number(f[12]);
    return { peakRssMiB: Number(/^VmHWM:\s+(\d+)/m.exec(status)?.[1] ?? 0) / 1024, cpuSeconds: ticks / CLK_TCK };
  } catch {
    return { peakRssMiB: 0, cpuSeconds: 0 };
  }
};

/** CPU used between two readings, in seconds and in cores on average over `seconds`. */
const cpuBetween = (a: ProcFigures, b: ProcFigures, seconds: number): { cpuSeconds: number; avgCores: number } => {
  const cpu = b.cpuSeconds - a.cpuSeconds;
  return { cpuSeconds: round(cpu), avgCores: round(cpu / seconds) };
};

const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

// ------------------------------------------------------------------ latency sampling

const percentile = (xs: number[], p: number): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? 0;
};

/** The p10, p50, p90 and p99 of a list of seconds, rounded. */
const percentiles = (xs: number[]): Record<'p10' | 'p50' | 'p90' | 'p99', number> => ({
  p10: round(percentile(xs, 10)),
  p50: round(percentile(xs, 50)),
  p90: round(percentile(xs, 90)),
  p99: round(percentile(xs, 99)),
});

interface Latency {
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
}

const summarize = (xs: number[], errors: number): Latency => ({ n: xs.length, p50Ms: round(percentile(xs, 50), 1), p99Ms: round(percentile(xs, 99), 1), maxMs: round(Math.max(0, ...xs), 1), errors });

/** Calls `fn` again and again (one in flight) until `stop` says so, recording each call's duration. */
const sampler = (fn: () => Promise<unknown>, stop: { done: boolean }): Promise<Latency> =>
  (async () => {
    const ms: number[] = [];
    let errors = 0;
    while (!stop.done) {
      const t = performance.now();
      try {
        await fn();
        ms.push(performance.now() - t);
      } catch {
        errors++;
      }
      await sleep(SAMPLE_GAP_MS);
    }
    return summarize(ms, errors);
  })();

// ------------------------------------------------------------------ the manager's own probes (/metrics)

/** Every sample of a Prometheus text exposition, by its series (`name{labels}`). */
const parseMetrics = (text: string): Map<string, number> =>
  new Map(
    text
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))] as const),
  );

/** What a histogram series gained between two scrapes: count, sum, how many exceeded `over` seconds, and the bucket holding p99. */
const histogramDelta = (a: Map<string, number>, b: Map<string, number>, name: string, labels: string, over: number): { count: number; seconds: number; over: number; p99AtMostSeconds: number } => {
  const at = (series: string): number => (b.get(series) ?? 0) - (a.get(series) ?? 0);
  const sep = labels === '' ? '' : ',';
  const count = at(`${name}_count${labels === '' ? '' : `{${labels}}`}`);
  const bound = (le: number): number => at(`${name}_bucket{${labels}${sep}le="${le}"}`);
  const bounds = [...b.keys()]
    .filter((k) => k.startsWith(`${name}_bucket{${labels}${sep}le="`) && !k.includes('+Inf'))
    .map((k) => Number(/le="([^"]+)"/.exec(k)?.[1]))
    .sort((x, y) => x - y);
  const p99 = bounds.find((le) => bound(le) >= 0.99 * count) ?? Infinity;
  return { count, seconds: round(at(`${name}_sum${labels === '' ? '' : `{${labels}}`}`)), over: count - bound(over), p99AtMostSeconds: p99 };
};

/**
 * The manager's event-loop delay and GC pauses between two scrapes: what every API answer waited behind. `over50ms`
 * counts probes (every 20 ms) that ran more than 50 ms late, and pauses longer than 50 ms. `tasksPlaced` counts the
 * tasks the scheduler placed meanwhile (more than the tasks to move: some were placed twice).
 */
const stalls = (before: string, after: string): Record<string, unknown> => {
  const [a, b] = [parseMetrics(before), parseMetrics(after)];
  const loop = histogramDelta(a, b, 'shoal_event_loop_delay_seconds', '', 0.05);
  const gc = Object.fromEntries(
    ['major', 'minor', 'incremental', 'weakcb'].map((kind) => {
      const d = histogramDelta(a, b, 'shoal_gc_pause_seconds', `kind="${kind}"`, 0.05);
      return [kind, { pauses: d.count, seconds: d.seconds, over50ms: d.over }];
    }),
  );
  const placed = histogramDelta(a, b, 'shoal_scheduling_latency_seconds', '', 1).count;
  return { tasksPlaced: placed, eventLoopDelay: { probes: loop.count, over50ms: loop.over, p99AtMostSeconds: loop.p99AtMostSeconds }, gc };
};

/**
 * The nodes the manager found down, with when (epoch ms), from its event stream (`GET /v1/events`) until `stop()`: a
 * node found down and ready again within a second shows here, where a poll of the node list would miss it.
 */
const followDowns = (client: ShoalClient): { downs: { id: string; at: number }[]; stop: () => Promise<void> } => {
  const downs: { id: string; at: number }[] = [];
  const ctl = new AbortController();
  // Settles either way: a stream that broke before it was stopped is reported by stop(), never left unhandled.
  const ended = (async (): Promise<Error | undefined> => {
    try {
      for await (const e of client.events({ follow: true, filters: ['type=node'], signal: ctl.signal })) if (e.action === 'down') downs.push({ id: e.id, at: Date.parse(e.time) });
      return new Error('the event stream ended by itself');
    } catch (e) {
      return ctl.signal.aborted ? undefined : e instanceof Error ? e : new Error(String(e));
    }
  })();
  const stop = async (): Promise<void> => {
    ctl.abort();
    const failure = await ended;
    if (failure !== undefined) throw new Error(`following node events failed: ${failure.message}`);
  };
  return { downs, stop };
};

// ------------------------------------------------------------------ the processes

/** The manager: a daemon of its own on a data dir of its own (its node drained: the hollow nodes run every task). */
const startManager = async (
  dir: string,
  store: 'sqlite' | 'etcd',
  etcd: EtcdCluster | undefined,
): Promise<{ child: ChildProcess; client: ShoalClient; nodeId: string; scrape: () => Promise<string> }> => {
  const addr = `127.0.0.1:${await freePort()}`;
  await initDataDir(dir, { listenAddr: addr, runtime: 'sim', ...(store === 'etcd' && etcd ? { store: { url: etcd.url } } : {}) });
  const dd = readDataDir(dir);
  if (!dd) throw new Error('initDataDir wrote nothing');
  // The manager's log stays with the figures (the data dir is removed at the end).
  const log = openSync(join(OUT, `manager-${store}.log`), 'a');
  const prof = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${join(OUT, `prof-${store}`)}`] : [];
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...prof, CLI, 'daemon', '--data-dir', dir], { stdio: ['ignore', log, log] });
  closeSync(log);
  const client = new ShoalClient({ hosts: [addr], token: dd.credentials.adminToken, ca: readNodeTls(dir).ca });
  await until('the manager ready', async () => ((await client.listNodes()).some((n) => n.id === dd.config.nodeId && n.status === 'ready') ? true : undefined));
  await client.updateNode(dd.config.nodeId, { availability: 'drain' });
  const scrape = async (): Promise<string> => {
    const res = await httpsRequest(addr, '/metrics', { ca: readNodeTls(dir).ca, headers: { authorization: `Bearer ${dd.credentials.adminToken}` } });
    if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
    return String(res.json);
  };
  return { child, client, nodeId: dd.config.nodeId, scrape };
};

/** The hollow nodes' process, with a request/reply channel. */
const startNodes = (manager: string, token: string): { child: ChildProcess; ask: (m: NodesRequest) => Promise<NodesReply>; joined: Promise<NodesReply & { type: 'joined' }> } => {
  const child = fork(NODES_MAIN, [manager, token, String(NODES), values['start-latency'] ?? '0'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting: ((m: NodesReply) => void)[] = [];
  let onJoined: (m: NodesReply & { type: 'joined' }) => void = () => undefined;
  let onFailed: (e: Error) => void = () => undefined;
  const joined = new Promise<NodesReply & { type: 'joined' }>((resolve, reject) => {
    onJoined = resolve;
    onFailed = reject;
  });
  child.on('message', (m: NodesReply) => {
    if (m.type === 'joined') onJoined(m);
    else if (m.type === 'error') onFailed(new Error(`hollow nodes: ${m.message}`));
    else waiting.shift()?.(m);
  });
  child.on('exit', (code) => onFailed(new Error(`the hollow nodes' process exited (${code})`)));
  const ask = (m: NodesRequest): Promise<NodesReply> =>
    new Promise((resolve) => {
      waiting.push(resolve);
      child.send(m);
    });
  return { child, ask, joined };
};

/** The floor's process (see scale-floor.ts) serving `body`, and a GET of it over one kept-alive connection. */
const startFloor = async (body: string): Promise<{ child: ChildProcess; fetch: () => Promise<void>; agent: Agent }> => {
  const child = fork(FLOOR_MAIN, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await new Promise<FloorReady>((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`the floor's process exited (${code})`)));
    child.send({ body });
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const fetch = (): Promise<void> =>
    new Promise((resolve, reject) => {
      get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.on('error', reject);
        res.on('end', resolve);
        res.resume();
      }).on('error', reject);
    });
  return { child, fetch, agent };
};

/** Ends a child: SIGTERM (a manager writes its profile as it exits), SIGKILL after `graceMs`. */
const endChild = async (child: ChildProcess | undefined, graceMs = 120_000): Promise<void> => {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
};

// ------------------------------------------------------------------ one run

interface RunResult {
  store: 'sqlite' | 'etcd';
  nodes: number;
  tasks: number;
  services: number;
  join: { seconds: number; nodesPerSecond: number };
  /**
   * `liveNodesFoundDown`: nodes the manager found down while converging (none was killed: each is a node whose messages
   * it heard too late), from its events; `hollowNodesMaxLoopDelayMs`: the hollow nodes' process's longest stall.
   */
  converge: { seconds: number; tasksPerSecond: number; firstRunningSeconds: number; liveNodesFoundDown: number; hollowNodesMaxLoopDelayMs: number };
  api: { idle: Record<string, Latency>; converging: Record<string, Latency>; failingOver: Record<string, Latency> };
  processes: Record<string, { peakRssMiB: number; convergeCpu: { cpuSeconds: number; avgCores: number } }>;
  /**
   * `seconds`: until the probe saw every task running again (nodes and manager agreeing); `lastStartSeconds`: until the
   * last replacement started running, as its node recorded it (the probe sees that later by its own round trips).
   */
  failover: {
    killedNodes: number;
    tasksToMove: number;
    downSeconds: number;
    seconds: number;
    lastStartSeconds: number;
    replacementsRunning: number;
    startedSeconds: Record<'p10' | 'p50' | 'p90' | 'p99', number>;
    /** When the replacements were made (seconds after the kill): the controllers' part of `startedSeconds`. */
    createdSeconds: Record<'p10' | 'p50' | 'p90' | 'p99', number>;
    liveNodesFoundDown: number;
    hollowNodesMaxLoopDelayMs: number;
  };
  /** The manager's event-loop delay and GC pauses while converging and during failover. */
  stalls: { converging: Record<string, unknown>; failover: Record<string, unknown> };
  /** [seconds since the first create, tasks running (manager's view)]. */
  series: [number, number][];
  killAtSeconds: number;
}

/** Creates a service; when the manager was too busy to answer in time, finds out whether it was made, and if not tries again. */
const createOnce = async (client: ShoalClient, spec: ServiceSpecInput): Promise<void> => {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.createService(spec);
      return;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 0) || attempt >= 5) throw e;
      if (await client.inspectService(spec.name).then(() => true, () => false)) return;
    }
  }
};

const runningOf = async (client: ShoalClient): Promise<number> => (await client.listServices()).filter((s) => s.name !== 'probe').reduce((a, s) => a + s.replicas.running, 0);

/**
 * Samples API calls until `stop`: all three (`service ls`, `service ps`, a write), or `service ls` alone. `service ls`
 * also records tasks running over time.
 */
const sampleApi = (client: ShoalClient, stop: { done: boolean }, series: [number, number][] | undefined, t0: number, only?: 'serviceLs'): Promise<Record<string, Latency>> => {
  let replicas = 1;
  const ls = sampler(async () => {
    const running = (await client.listServices()).filter((s) => s.name !== 'probe').reduce((a, s) => a + s.replicas.running, 0);
    series?.push([round((performance.now() - t0) / 1000), running]);
  }, stop);
  if (only === 'serviceLs') return ls.then((serviceLs) => ({ serviceLs }));
  const ps = sampler(() => client.serviceTasks('svc-000'), stop);
  const write = sampler(() => client.scaleService('probe', (replicas = 3 - replicas)), stop);
  return Promise.all([ls, ps, write]).then(([a, b, c]) => ({ serviceLs: a, servicePs: b, scaleWrite: c }));
};

const run = async (store: 'sqlite' | 'etcd'): Promise<RunResult> => {
  const dir = mkdtempSync(join(tmpdir(), `shoal-scale-${store}-`));
  let etcd: EtcdCluster | undefined;
  let manager: Awaited<ReturnType<typeof startManager>> | undefined;
  let nodes: ReturnType<typeof startNodes> | undefined;
  let floor: Awaited<ReturnType<typeof startFloor>> | undefined;
  try {
    if (store === 'etcd') etcd = await startEtcd({ members: 1 });
    manager = await startManager(join(dir, 'manager'), store, etcd);
    const { client } = manager;
    const address = (await client.listNodes()).find((n) => n.id === manager?.nodeId)?.address ?? '';
    process.stderr.write(`[${store}] manager pid ${manager.child.pid} at ${address}; joining ${NODES} hollow nodes…\n`);
    nodes = startNodes(address, (await client.joinTokens()).worker);
    const joined = await nodes.joined;
    await until('every hollow node ready', async () => ((await client.listNodes()).filter((n) => n.status === 'ready').length === NODES + 1 ? true : undefined), 250);
    const joinSeconds = joined.ms / 1000;
    process.stderr.write(`[${store}] ${NODES} nodes joined in ${joinSeconds.toFixed(1)}s; idle API baseline…\n`);

    // The write the samplers time, and the service `service ps` lists; then the idle baseline.
    const task = { container: { image: 'sim', command: [] }, restartPolicy: { delayMs: 0 } };
    await client.createService({ name: 'probe', mode: { replicated: { replicas: 1 } }, task });
    const perService = Math.floor(TASKS / SERVICES);
    const sizes = Array.from({ length: SERVICES }, (_, i) => perService + (i < TASKS - perService * SERVICES ? 1 : 0));
    await client.createService({ name: 'svc-000', mode: { replicated: { replicas: 0 } }, task });
    const idleStop = { done: false };
    const idle = sampleApi(client, idleStop, undefined, 0);
    await sleep(3000);
    idleStop.done = true;
    const idleApi = await idle;
    floor = await startFloor(JSON.stringify(await client.listServices()));

    // Convergence: every service created (the first one scaled) as fast as the API takes them.
    const pids = { manager: manager.child.pid, nodes: nodes.child.pid, etcd: etcd?.members[0]?.pid() };
    const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, procFigures(pid)]));
    const series: [number, number][] = [];
    const stop = { done: false };
    const scrapeBefore = await manager.scrape();
    const downs = followDowns(client);
    const convergeStart = Date.now();
    // Resets the hollow nodes' loop-delay figure: from here, it is the one while converging.
    await nodes.ask({ type: 'count' });
    const t0 = performance.now();
    const api = sampleApi(client, stop, series, t0);
    const floorLs = sampler(floor.fetch, stop);
    process.stderr.write(`[${store}] creating ${SERVICES} services, ${TASKS} tasks…\n`);
    await client.scaleService('svc-000', sizes[0] ?? 0);
    // Several creates in flight, as several users (or a deploy tool) would make them.
    let next = 1;
    const creator = async (): Promise<void> => {
      for (let i = next++; i < SERVICES; i = next++) await createOnce(client, { name: `svc-${String(i).padStart(3, '0')}`, mode: { replicated: { replicas: sizes[i] ?? 0 } }, task });
    };
    await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, creator));
    let told = 0;
    await until(`${TASKS} tasks running`, async () => {
      const [t, running] = series.at(-1) ?? [0, 0];
      if (t - told >= 5) process.stderr.write(`[${store}] ${(told = t).toFixed(0)}s: ${running} running\n`);
      return running >= TASKS ? true : undefined;
    });
    const convergeSeconds = (performance.now() - t0) / 1000;
    const foundDownConverging = new Set(downs.downs.filter((d) => d.at >= convergeStart).map((d) => d.id)).size;
    const nodesConverging = (await nodes.ask({ type: 'count' })) as NodesReply & { type: 'count' };
    stop.done = true;
    const convergingApi = { ...(await api), floorLs: await floorLs };
    const convergingStalls = stalls(scrapeBefore, await manager.scrape());
    const after = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, procFigures(pid)]));
    const firstRunning = series.find(([, n]) => n > 0)?.[0] ?? 0;
    process.stderr.write(`[${store}] ${TASKS} running after ${convergeSeconds.toFixed(1)}s; killing ${KILL} nodes…\n`);

    // Failover: KILL nodes crash at once; done when the live nodes run all T again and the manager says so.
    await sleep(2000);
    const scrapeKill = await manager.scrape();
    const tKill = performance.now();
    const killedAt = Date.now();
    const killed = (await nodes.ask({ type: 'kill', count: KILL })) as NodesReply & { type: 'killed' };
    const gone = new Set(killed.nodeIds);
    const left = ((await nodes.ask({ type: 'count' })) as NodesReply & { type: 'count' }).running;
    let downAt = 0;
    const failStop = { done: false };
    // `service ls` alone while failing over: it draws the chart, and the latencies asked for are those while converging.
    const failSeries = sampleApi(client, failStop, series, t0, 'serviceLs');
    let nodesLoopDelayMs = 0;
    let listedAt = 0;
    await until('the killed nodes\' tasks running elsewhere', async () => {
      // The node list (1,000 rows) about once a second once the killed nodes are down: the probe must not be the load.
      if (downAt === 0 || performance.now() - listedAt > 1000) {
        listedAt = performance.now();
        const listed = await client.listNodes();
        if (downAt === 0 && listed.filter((n) => gone.has(n.id)).every((n) => n.status === 'down')) downAt = performance.now();
      }
      const counted = (await nodes?.ask({ type: 'count' })) as NodesReply & { type: 'count' };
      nodesLoopDelayMs = Math.max(nodesLoopDelayMs, counted.maxLoopDelayMs);
      const onLive = counted.running;
      return downAt > 0 && onLive >= TASKS && (await runningOf(client)) >= TASKS ? true : undefined;
    });
    const failoverSeconds = (performance.now() - tKill) / 1000;
    failStop.done = true;
    const failingOverApi = await failSeries;
    const failoverStalls = stalls(scrapeKill, await manager.scrape());
    await downs.stop();
    const foundDownFailingOver = new Set(downs.downs.filter((d) => d.at >= killedAt && !gone.has(d.id)).map((d) => d.id)).size;
    // The replacements (tasks made since the kill) and when the last of them started running, from the tasks' record.
    const started: number[] = [];
    const created: number[] = [];
    for (let i = 0; i < SERVICES; i++) {
      for (const t of await client.serviceTasks(`svc-${String(i).padStart(3, '0')}`)) {
        if (t.state !== 'running' || Date.parse(t.createdAt) < killedAt) continue;
        started.push((Date.parse(t.stateSince) - killedAt) / 1000);
        created.push((Date.parse(t.createdAt) - killedAt) / 1000);
      }
    }

    return {
      store,
      nodes: NODES,
      tasks: TASKS,
      services: SERVICES,
      join: { seconds: round(joinSeconds), nodesPerSecond: round(NODES / joinSeconds, 0) },
      converge: {
        seconds: round(convergeSeconds),
        tasksPerSecond: round(TASKS / convergeSeconds, 0),
        firstRunningSeconds: firstRunning,
        liveNodesFoundDown: foundDownConverging,
        hollowNodesMaxLoopDelayMs: round(nodesConverging.maxLoopDelayMs, 0),
      },
      api: { idle: idleApi, converging: convergingApi, failingOver: failingOverApi },
      processes: Object.fromEntries(
        Object.entries(pids)
          .filter(([, pid]) => pid !== undefined)
          .map(([k]) => [k, { peakRssMiB: round(procFigures(pids[k as keyof typeof pids]).peakRssMiB, 0), convergeCpu: cpuBetween(before[k] as ProcFigures, after[k] as ProcFigures, convergeSeconds) }]),
      ),
      failover: {
        killedNodes: KILL,
        tasksToMove: TASKS - left,
        downSeconds: round((downAt - tKill) / 1000),
        seconds: round(failoverSeconds),
        lastStartSeconds: round(Math.max(0, ...started)),
        replacementsRunning: started.length,
        // When the replacements started (seconds after the kill): a long tail would point at stragglers, not throughput.
        startedSeconds: percentiles(started),
        createdSeconds: percentiles(created),
        // Live nodes the manager found down meanwhile (messages heard too late; from its events), and the hollow nodes' own longest stall.
        liveNodesFoundDown: foundDownFailingOver,
        hollowNodesMaxLoopDelayMs: round(nodesLoopDelayMs, 0),
      },
      stalls: { converging: convergingStalls, failover: failoverStalls },
      series,
      killAtSeconds: round((tKill - t0) / 1000),
    };
  } finally {
    floor?.agent.destroy();
    await endChild(floor?.child, 1000);
    if (nodes && nodes.child.connected) await Promise.race([nodes.ask({ type: 'stop' }), sleep(30_000)]);
    await endChild(nodes?.child, 5000);
    manager?.client.close();
    await endChild(manager?.child);
    await etcd?.close();
    rmSync(dir, { recursive: true, force: true });
  }
};

// ------------------------------------------------------------------ report

/** figure / target: below 1 beats a "at most" target; for throughput, above 1 beats it. */
const versus = (figure: number, target: number): { figure: number; target: number; ratio: number } => ({ figure, target, ratio: round(figure / target) });

const judgeable = (r: Omit<RunResult, 'series'>): Record<string, unknown> => {
  const worstP99 = Math.max(r.api.converging.serviceLs?.p99Ms ?? 0, r.api.converging.servicePs?.p99Ms ?? 0, r.api.converging.scaleWrite?.p99Ms ?? 0);
  return {
    convergeSeconds: versus(r.converge.seconds, TARGETS.convergeSeconds),
    tasksPerSecond: versus(r.converge.tasksPerSecond, TARGETS.tasksPerSecond),
    apiP99MsConverging: versus(worstP99, TARGETS.apiP99Ms),
    managerPeakRssMiB: versus(r.processes.manager?.peakRssMiB ?? 0, TARGETS.managerRssMiB),
    failoverSeconds: versus(r.failover.seconds, TARGETS.failoverSeconds),
  };
};

/** Tasks running over time, one line per run, and when the nodes were killed: a hand-written SVG. */
const chart = (runs: RunResult[]): string => {
  const W = 900;
  const H = 420;
  const pad = { l: 70, r: 20, t: 40, b: 50 };
  const maxT = Math.max(1, ...runs.flatMap((r) => r.series.map(([t]) => t)));
  const maxY = Math.max(1, ...runs.map((r) => r.tasks));
  const x = (t: number): number => pad.l + (t / maxT) * (W - pad.l - pad.r);
  const y = (n: number): number => H - pad.b - (n / maxY) * (H - pad.t - pad.b);
  const colours = ['#1f77b4', '#d62728'];
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">Shoal: tasks running over time (${NODES} hollow nodes, ${TASKS} tasks)</text>`);
  for (let i = 0; i <= 5; i++) {
    const n = (maxY * i) / 5;
    parts.push(`<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(n)}" y2="${y(n)}" stroke="#eee"/>`);
    parts.push(`<text x="${pad.l - 8}" y="${y(n) + 4}" text-anchor="end">${Math.round(n)}</text>`);
    const t = (maxT * i) / 5;
    parts.push(`<text x="${x(t)}" y="${H - pad.b + 18}" text-anchor="middle">${t.toFixed(0)} s</text>`);
  }
  parts.push(`<line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${H - pad.b}" stroke="black"/>`);
  parts.push(`<line x1="${pad.l}" x2="${W - pad.r}" y1="${H - pad.b}" y2="${H - pad.b}" stroke="black"/>`);
  parts.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle">seconds since the first service create</text>`);
  runs.forEach((r, i) => {
    const colour = colours[i % colours.length] ?? 'black';
    const points = r.series.map(([t, n]) => `${x(t).toFixed(1)},${y(n).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points}"/>`);
    parts.push(`<line x1="${x(r.killAtSeconds)}" x2="${x(r.killAtSeconds)}" y1="${pad.t}" y2="${H - pad.b}" stroke="${colour}" stroke-dasharray="4 4"/>`);
    parts.push(`<text x="${x(r.killAtSeconds) + 4}" y="${pad.t + 14 + 16 * i}" fill="${colour}">${r.store}: ${r.failover.killedNodes} nodes killed</text>`);
    parts.push(`<text x="${W - pad.r - 4}" y="${H - pad.b - 12 - 16 * i}" text-anchor="end" fill="${colour}">${r.store}: all running at ${r.converge.seconds} s (${r.converge.tasksPerSecond} tasks/s)</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
};

const main = async (): Promise<void> => {
  const stores: ('sqlite' | 'etcd')[] = values.store === 'both' ? ['sqlite', 'etcd'] : values.store === 'etcd' ? ['etcd'] : ['sqlite'];
  mkdirSync(OUT, { recursive: true });
  const runs: RunResult[] = [];
  for (const s of stores) runs.push(await run(s));
  const summary: Record<string, unknown> = {
    machine: { cpus: (await import('node:os')).cpus().length },
    runs: runs.map(({ series: _series, ...r }) => ({ ...r, versusTargets: judgeable(r) })),
  };
  const [sqlite, etcd] = [runs.find((r) => r.store === 'sqlite'), runs.find((r) => r.store === 'etcd')];
  if (sqlite && etcd) {
    summary.etcdVersusSqlite = {
      tasksPerSecond: round(etcd.converge.tasksPerSecond / sqlite.converge.tasksPerSecond),
      failoverSeconds: round(etcd.failover.seconds / sqlite.failover.seconds),
    };
  }
  summary.convergingVersusIdleP99 = Object.fromEntries(
    runs.map((r) => [r.store, Object.fromEntries(Object.keys(r.api.idle).map((k) => [k, round((r.api.converging[k]?.p99Ms ?? 0) / Math.max(0.1, r.api.idle[k]?.p99Ms ?? 0))]))]),
  );
  writeFileSync(join(OUT, 'scale.json'), JSON.stringify({ ...summary, series: runs.map((r) => ({ store: r.store, series: r.series })) }) + '\n');
  writeFileSync(join(OUT, 'scale.svg'), chart(runs));
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  process.stdout.write(`chart: ${join(OUT, 'scale.svg')}; figures and series: ${join(OUT, 'scale.json')}\n`);
};

await main();
