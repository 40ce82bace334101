// The exec runtime: runs each task as a plain process group on the host, for hosts without a Docker Engine.
//
// A "container" is a directory under `dir`/containers, named by a digest of the task id (so a create retried after a
// crash finds what it made): config.json (labels incl. shoal.*, argv, env), stdout.log/stderr.log, `pid` (pid and
// start time, written at start) and `exit` (the exit code, written by a small /bin/sh wrapper when the task's process
// ends). Each task runs in its own session and process group, detached from the agent, so it outlives an agent
// restart and the next agent adopts it by reading the directories; the wrapper records the exit code even when no
// runtime instance is waiting on the process. A container with a health check also has `health.json`: the runtime
// runs the check as a host command (health.ts), and a later instance that lists the container resumes checking it.
//
// Choices and limits, compared with Docker:
// - `command` is the argv, run on the host; with no command, the image name is taken as the program (so an image
//   field like "/usr/bin/busybox" still works). Nothing is unpacked or pulled.
// - Resource limits are not enforced (the scheduler still counts reservations).
// - Health checks run on the host, in the container's directory with its environment; there is no image check to
//   inherit, so an empty test means no check. Checks run only while a runtime instance is alive (an agent), and
//   resume when the next one lists the container.
// - When the main process ends, the rest of its process group is killed, as Docker ends a container's other processes.
// - Background jobs of a non-interactive shell ignore SIGINT, so tasks do too; stop uses SIGTERM, which they get.
// - Log lines carry no timestamps: `tail` counts lines per stream, and `since` is honoured through the log files'
//   modification times — lines read from a file last written before `since` are skipped, followed lines are new —
//   so the first read may include some older lines of a file that was also written after `since`.

import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
import { sleep } from '../../lib/abort.js';
import {
  HEALTH_OUTPUT_MAX,
  LABELS,
  labelsFor,
  RuntimeError,
  type ContainerConfig,
  type ContainerInfo,
  type ContainerState,
  type HealthStatus,
  type LogLine,
  type LogOptions,
  type Runtime,
  type RuntimeEvent,
} from '../runtime.js';
import type { HealthCheck } from '../../core/index.js';
import { initialRecord, monitor, probeOf, readHealth, unmonitor, writeHealth } from './health.js';
import { LineReader, fileSize, tailOffset } from './log-files.js';
import { groupMembers, ignoresSignal, readStat, readStatSync, signalPid } from './proc.js';

export interface ExecRuntimeOptions {
  /** Where container directories live (under `dir`/containers). */
  dir: string;
  /** How often exits of processes are looked for by events() and followed logs, in ms (default 200). */
  pollMs?: number;
}

interface StoredConfig {
  id: string;
  labels: Record<string, string>;
  argv: string[];
  env: string[];
  healthcheck?: HealthCheck;
}

/**
 * Runs "$@" as a background child, then ignores SIGTERM itself (the child was forked before, so it keeps the default
 * action; a group SIGTERM reaches it directly), waits once — an ignored signal cannot interrupt `wait`, so the status
 * is the child's own — writes the code to $0, and kills what is left of its process group. Only builtins after the
 * child starts: the task's PATH may not hold mv or kill. A single short `echo` is one write, so a reader sees the file
 * empty or whole; a wrapper SIGKILLed after the grace period writes nothing.
 */
const WRAPPER = `"$@" & child=$!
trap '' TERM
wait $child; code=$?
echo $code > "$0"
kill -KILL 0`;

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ID = /^[0-9a-f]{24}$/;
/** What inspect reports for a process that ended without recording a code: it was SIGKILLed, as Docker says. */
const KILLED = 137;
const SIGTERM = 15;
/** How far before events() was called an exit file's time may be and still count as an exit after the call (ms). */
const EXIT_TIME_MARGIN_MS = 50;

/** A task's container id: deterministic, so creating the same task twice yields the same container. */
const idFor = (taskId: string): string => createHash('sha256').update(taskId).digest('hex').slice(0, 24);

/** The program an argv names, resolved like a shell would (PATH search), or undefined when there is none. */
const resolveProgram = (program: string, path: string): string | undefined => {
  const candidates = program.includes('/') ? [program] : path.split(delimiter).map((d) => join(d, program));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here: try the next directory
    }
  }
  return undefined;
};

const readText = async (path: string): Promise<string | undefined> => {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
};

export class ExecRuntime implements Runtime {
  readonly name = 'exec';
  private readonly root: string;
  private readonly pollMs: number;
  private readonly closed = new AbortController();
  /** Wakes event pollers at once when a process this instance spawned exits, or a health status changes. */
  private readonly wakeListeners = new Set<() => void>();

  constructor(opts: ExecRuntimeOptions) {
    this.root = join(opts.dir, 'containers');
    this.pollMs = opts.pollMs ?? 200;
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  private path(id: string, file = ''): string {
    if (!ID.test(id)) throw new RuntimeError(`invalid container id '${id}'`, { permanent: true });
    return join(this.root, id, file);
  }

  async capacity(): Promise<{ nanoCpus: number; memoryBytes: number }> {
    return { nanoCpus: cpus().length * 1e9, memoryBytes: totalmem() };
  }

  async create(config: ContainerConfig): Promise<string> {
    const argv = config.command.length > 0 ? config.command : [config.image];
    const envPath = config.env.find((e) => e.startsWith('PATH='))?.slice(5) ?? process.env.PATH ?? DEFAULT_PATH;
    const program = argv[0] ?? '';
    if (!resolveProgram(program, envPath)) {
      throw new RuntimeError(
        `program '${program}' not found on this node (the exec runtime runs the task's command, or with none its image name, as a host program)`,
        { permanent: true },
      );
    }
    const id = idFor(config.taskId);
    if (await this.config(id)) return id;
    const stored: StoredConfig = { id, labels: labelsFor(config), argv, env: config.env, ...(config.healthcheck ? { healthcheck: config.healthcheck } : {}) };
    await mkdir(this.path(id), { recursive: true, mode: 0o700 });
    // Written whole, then renamed: a directory either has a complete config.json or counts as not created.
    await writeFile(this.path(id, 'config.json.tmp'), JSON.stringify(stored));
    await rename(this.path(id, 'config.json.tmp'), this.path(id, 'config.json'));
    return id;
  }

  private async config(id: string): Promise<StoredConfig | undefined> {
    const text = await readText(this.path(id, 'config.json'));
    return text === undefined ? undefined : (JSON.parse(text) as StoredConfig);
  }

  async start(id: string): Promise<void> {
    const cfg = await this.config(id);
    if (!cfg) throw new RuntimeError(`cannot start container '${id}': no such container`);
    const info = await this.inspect(id);
    if (info.state === 'running') return;
    if (info.state === 'exited') throw new RuntimeError(`cannot start container '${id}': it has already run`, { permanent: true });
    const env = this.envOf(cfg);
    // Recorded before the process exists, so no reader ever sees a checked container without a record.
    if (probeOf(cfg.healthcheck)) await writeHealth(this.path(id, 'health.json'), initialRecord(Date.now()));
    const out = openSync(this.path(id, 'stdout.log'), 'a', 0o600);
    const err = openSync(this.path(id, 'stderr.log'), 'a', 0o600);
    try {
      const child = spawn('/bin/sh', ['-c', WRAPPER, this.path(id, 'exit'), ...cfg.argv], {
        detached: true,
        stdio: ['ignore', out, err],
        env,
        cwd: this.path(id),
      });
      // A failed spawn shows as a missing pid below; its 'error' event must still be handled or it would crash the agent.
      child.once('error', () => undefined);
      const pid = child.pid;
      if (pid === undefined) throw new RuntimeError(`cannot start container '${id}': cannot spawn /bin/sh`);
      // Record identity (pid + start time) before any await, so a restart can never mistake a reused pid for it.
      const st = readStatSync(pid);
      await writeFile(this.path(id, 'pid'), `${pid} ${st?.startTime ?? 0}\n`);
      child.once('exit', () => this.wake());
      child.unref();
      // Until the wrapper ignores SIGTERM, a stop would kill it before it could record the exit code; the wrapper
      // gets there within a few milliseconds, and once it has (or has already ended), start is done.
      for (let i = 0; i < 1000 && (await ignoresSignal(pid, SIGTERM)) === false; i++) await sleep(1);
    } finally {
      closeSync(out);
      closeSync(err);
    }
    this.watchHealth(id, cfg);
  }

  /** The process environment of a container: a default PATH and its hostname, then the task's own variables. */
  private envOf(cfg: StoredConfig): Record<string, string> {
    const env: Record<string, string> = { PATH: process.env.PATH ?? DEFAULT_PATH, HOSTNAME: cfg.id.slice(0, 12) };
    for (const e of cfg.env) {
      const i = e.indexOf('=');
      if (i > 0) env[e.slice(0, i)] = e.slice(i + 1);
    }
    return env;
  }

  /** Runs the container's health check while it runs, unless it has none or a monitor of this process already does. */
  private watchHealth(id: string, cfg: StoredConfig): void {
    const probe = probeOf(cfg.healthcheck);
    if (!probe) return;
    const target = {
      file: this.path(id, 'health.json'),
      probe,
      env: this.envOf(cfg),
      cwd: this.path(id),
      running: async () => (await this.livePid(id)) !== undefined,
      changed: () => this.wake(),
    };
    monitor(this.path(id), target, this.closed.signal);
  }

  private wake(): void {
    for (const wake of [...this.wakeListeners]) wake();
  }

  /** The recorded pid and start time, or undefined when the container was never started. */
  private async pidRecord(id: string): Promise<{ pid: number; startTime: string } | undefined> {
    const text = await readText(this.path(id, 'pid'));
    if (text === undefined) return undefined;
    const [pid, startTime] = text.trim().split(' ');
    return { pid: Number(pid), startTime: startTime ?? '' };
  }

  /** The wrapper's pid if it is still alive (and is the process that was started, not a reuse of its pid). */
  private async livePid(id: string): Promise<number | undefined> {
    const rec = await this.pidRecord(id);
    if (!rec) return undefined;
    const st = await readStat(rec.pid);
    if (!st || st.state === 'Z' || st.state === 'X' || String(st.startTime) !== rec.startTime) return undefined;
    return rec.pid;
  }

  async inspect(id: string): Promise<ContainerInfo> {
    return this.describe(id, await this.config(id));
  }

  private async describe(id: string, cfg: StoredConfig | undefined): Promise<ContainerInfo> {
    if (!cfg) return { id, taskId: '', state: 'missing', error: '', labels: {} };
    const base = { id, taskId: cfg.labels[LABELS.taskId] ?? '', labels: cfg.labels };
    // Only a whole "N\n" counts: an empty file is a write in progress (or a wrapper killed mid-write).
    const exit = /^(\d+)\n$/.exec((await readText(this.path(id, 'exit'))) ?? '');
    if (exit) return { ...base, state: 'exited', exitCode: Number(exit[1]), error: '', ...(await this.health(id, cfg)) };
    if (!(await this.pidRecord(id))) return { ...base, state: 'created', error: '' };
    if ((await this.livePid(id)) !== undefined) return { ...base, state: 'running', error: '', ...(await this.health(id, cfg)) };
    // Gone without recording a code: the wrapper itself was killed (SIGKILL after the grace period, or from outside).
    return { ...base, state: 'exited', exitCode: KILLED, error: 'killed', ...(await this.health(id, cfg)) };
  }

  /** The health part of an inspection of a started container: nothing without a check, else its last record. */
  private async health(id: string, cfg: StoredConfig): Promise<Pick<ContainerInfo, 'health' | 'healthOutput'>> {
    if (!probeOf(cfg.healthcheck)) return {};
    const rec = await readHealth(this.path(id, 'health.json'));
    const output = rec?.output.trim().slice(0, HEALTH_OUTPUT_MAX);
    return { health: rec?.status ?? 'starting', ...(output ? { healthOutput: output } : {}) };
  }

  async stop(id: string, graceMs: number): Promise<void> {
    unmonitor(this.path(id));
    const pid = await this.livePid(id);
    if (pid === undefined) return;
    // The wrapper leads its process group, so -pid reaches every process of the task.
    signalPid(-pid, 'SIGTERM');
    // The wrapper ends last (it kills what is left of its group as it exits), so watching it alone is enough here.
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (await this.livePid(id)) !== undefined) await sleep(10);
    // One scan of /proc also catches a group that outlived a wrapper killed from outside.
    if ((await this.livePid(id)) !== undefined || (await groupMembers(pid)).length > 0) signalPid(-pid, 'SIGKILL');
    // SIGKILL cannot be refused; the bound only guards against a stuck /proc.
    for (let i = 0; i < 250 && (await groupMembers(pid)).length > 0; i++) await sleep(20);
  }

  async remove(id: string): Promise<void> {
    if (await this.config(id)) await this.stop(id, 0);
    await rm(this.path(id), { recursive: true, force: true });
  }

  async list(filter: { nodeId?: string } = {}): Promise<ContainerInfo[]> {
    let ids: string[];
    try {
      ids = await readdir(this.root);
    } catch {
      return [];
    }
    const out: ContainerInfo[] = [];
    for (const id of ids) {
      if (!ID.test(id)) continue;
      const cfg = await this.config(id);
      const info = await this.describe(id, cfg);
      if (!cfg || info.state === 'missing' || !info.taskId) continue;
      if (filter.nodeId !== undefined && info.labels[LABELS.nodeId] !== filter.nodeId) continue;
      out.push(info);
      // Listing is how an instance adopts containers (an agent after a restart): it takes over their checks.
      if (info.state === 'running') this.watchHealth(id, cfg);
    }
    return out;
  }

  async *logs(id: string, opts: LogOptions): AsyncGenerator<LogLine> {
    if (!(await this.config(id))) throw new RuntimeError(`cannot read logs of container '${id}': no such container`);
    const signal = AbortSignal.any([opts.signal, this.closed.signal]);
    const since = opts.since ?? -Infinity;
    const streams = await Promise.all(
      (['stdout', 'stderr'] as const).map(async (stream) => {
        const file = this.path(id, `${stream}.log`);
        const offset = opts.tail === undefined ? 0 : await tailOffset(file, opts.tail);
        return { stream, reader: new LineReader(file, offset), mtimeMs: 0 };
      }),
    );
    for (;;) {
      let grew = false;
      for (const s of streams) {
        const r = await s.reader.readNew();
        grew ||= r.grew;
        s.mtimeMs = r.mtimeMs;
        // No line read can be newer than the file's modification time: a file untouched since `since` has none to give.
        if (r.mtimeMs < since) continue;
        for (const line of r.lines) yield { stream: s.stream, line };
      }
      if (signal.aborted) return;
      // Without follow, or once the process is gone and its files stop growing, flush partial lines and end.
      if (!opts.follow || (!grew && (await this.inspect(id)).state !== 'running' && !(await this.growing(id)))) {
        for (const s of streams) {
          const last = s.reader.flush();
          if (last !== undefined && s.mtimeMs >= since) yield { stream: s.stream, line: last };
        }
        return;
      }
      if (!grew) await sleep(this.pollMs, signal).catch(() => undefined);
    }
  }

  /** Whether the log files changed size in the last moment (a final write racing the exit). */
  private async growing(id: string): Promise<boolean> {
    const size = async (): Promise<number> => (await fileSize(this.path(id, 'stdout.log'))) + (await fileSize(this.path(id, 'stderr.log')));
    const a = await size();
    await sleep(20);
    return (await size()) !== a;
  }

  events(signal: AbortSignal): AsyncIterable<RuntimeEvent> {
    // The first snapshot is taken now, not at the first next(), so a change right after this call is not missed.
    // File times come from the kernel's coarse clock, which may lag Date.now() by a tick: an exit file written just
    // after this call can carry an earlier time. The margin makes such an exit count; an exit reported twice is harmless.
    return this.eventLoop(signal, this.list(), Date.now() - EXIT_TIME_MARGIN_MS);
  }

  private async *eventLoop(outer: AbortSignal, first: Promise<ContainerInfo[]>, since: number): AsyncGenerator<RuntimeEvent> {
    const signal = AbortSignal.any([outer, this.closed.signal]);
    const last = new Map<string, { taskId: string; state: ContainerState; health?: HealthStatus }>();
    for (const c of await first) {
      last.set(c.id, c);
      // Reading the snapshot takes time: a process that exited after events() was called but before its part of the
      // snapshot was read is an exit the caller must hear of (its exit file is newer than the call).
      if (c.state === 'exited' && ((await stat(this.path(c.id, 'exit')).catch(() => undefined))?.mtimeMs ?? 0) >= since) {
        yield { containerId: c.id, taskId: c.taskId, state: c.state, ...(c.health ? { health: c.health } : {}) };
      }
    }
    while (!signal.aborted) {
      await this.tick(signal);
      if (signal.aborted) return;
      const now = new Map<string, ContainerInfo>();
      for (const c of await this.list()) now.set(c.id, c);
      for (const [id, c] of now) {
        const was = last.get(id);
        if (was?.state !== c.state || was.health !== c.health) {
          yield { containerId: id, taskId: c.taskId, state: c.state, ...(c.health ? { health: c.health } : {}) };
        }
        last.set(id, c);
      }
      for (const [id, was] of last) {
        if (now.has(id)) continue;
        last.delete(id);
        yield { containerId: id, taskId: was.taskId, state: 'missing' };
      }
    }
  }

  /** Waits one poll interval, less when a process of this instance exits or the signal aborts. */
  private tick(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wakeListeners.delete(done);
        resolve();
      };
      const timer = setTimeout(done, this.pollMs);
      signal.addEventListener('abort', done, { once: true });
      this.wakeListeners.add(done);
    });
  }

  async close(): Promise<void> {
    this.closed.abort();
  }
}
