// The exec runtime: runs each task as a plain process group on the host, for hosts without a Docker Engine.
//
// A "container" is a directory under `dir`: config.json (labels, argv, env), stdout.log/stderr.log, `pid` (pid and
// start time, written at start) and `exit` (the exit code, written by a small /bin/sh wrapper when the task's process
// ends). Processes run in their own process group, detached from the agent, so they outlive an agent restart and the
// next agent adopts them by reading the directories; the wrapper records the exit code even when nobody is waiting.
//
// What it does not do: images are not unpacked (the task's command runs on the host; with no command, the image
// name is taken as the program), resource limits are not enforced, and log lines carry no timestamps (`since` is
// ignored).

import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync, closeSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile, rename } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
import { sleep } from '../../lib/abort.js';
import { LABELS, labelsFor, RuntimeError, type ContainerConfig, type ContainerInfo, type LogLine, type LogOptions, type Runtime, type RuntimeEvent } from '../runtime.js';
import { LineReader, fileSize, tailOffset } from './log-files.js';
import { groupMembers, readStat, readStatSync, signalPid } from './proc.js';

export interface ExecRuntimeOptions {
  /** Where container directories live. */
  dir: string;
  /** How often exits of adopted processes are looked for, in ms (default 200). */
  pollMs?: number;
}

interface StoredConfig {
  id: string;
  labels: Record<string, string>;
  argv: string[];
  env: string[];
}

/**
 * Runs "$@" as a child, forwards TERM/INT to it, waits for it (again after each trapped signal), and writes its exit
 * status atomically to $0. `trap` keeps the wrapper alive through the group SIGTERM so the code is recorded.
 */
const WRAPPER = `"$@" & child=$!
trap 'kill -TERM $child 2>/dev/null' TERM INT
wait $child; code=$?
while kill -0 $child 2>/dev/null; do wait $child; code=$?; done
echo $code > "$0.tmp" && mv "$0.tmp" "$0"`;

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The program an argv names, resolved like a shell would (PATH search), or undefined when there is none. */
const resolveProgram = (program: string, path: string): string | undefined => {
  const candidates = program.includes('/') ? [program] : path.split(delimiter).map((d) => join(d, program));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  return undefined;
};

export class ExecRuntime implements Runtime {
  readonly name = 'exec';
  private readonly root: string;
  private readonly closed = new AbortController();
  /** Wakes event pollers at once when a process this instance spawned exits. */
  private readonly exitListeners = new Set<() => void>();

  constructor(private readonly opts: ExecRuntimeOptions) {
    this.root = join(opts.dir, 'containers');
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  private path(id: string, file = ''): string {
    if (!/^[a-z0-9]{1,64}$/.test(id)) throw new RuntimeError(`invalid container id '${id}'`, { permanent: true });
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
      throw new RuntimeError(`program '${program}' not found on this node (the exec runtime runs the task's command on the host)`, { permanent: true });
    }
    // Idempotent per task: a create retried after a crash finds the directory it made before.
    for (const c of await this.list()) if (c.taskId === config.taskId) return c.id;
    const id = randomBytes(12).toString('hex');
    const stored: StoredConfig = { id, labels: labelsFor(config), argv, env: config.env };
    await mkdir(this.path(id), { recursive: true, mode: 0o700 });
    await writeFile(this.path(id, 'config.json.tmp'), JSON.stringify(stored));
    await rename(this.path(id, 'config.json.tmp'), this.path(id, 'config.json'));
    return id;
  }

  private async config(id: string): Promise<StoredConfig | undefined> {
    try {
      return JSON.parse(await readFile(this.path(id, 'config.json'), 'utf8')) as StoredConfig;
    } catch {
      return undefined;
    }
  }

  async start(id: string): Promise<void> {
    const cfg = await this.config(id);
    if (!cfg) throw new RuntimeError(`cannot start container '${id}': no such container`);
    const info = await this.inspect(id);
    if (info.state === 'running') return;
    if (info.state === 'exited') throw new RuntimeError(`cannot start container '${id}': it has already run`, { permanent: true });
    const out = openSync(this.path(id, 'stdout.log'), 'a', 0o600);
    const err = openSync(this.path(id, 'stderr.log'), 'a', 0o600);
    const env: Record<string, string> = { PATH: process.env.PATH ?? DEFAULT_PATH, HOSTNAME: id.slice(0, 12) };
    for (const e of cfg.env) {
      const i = e.indexOf('=');
      env[e.slice(0, i)] = e.slice(i + 1);
    }
    try {
      const child = spawn('/bin/sh', ['-c', WRAPPER, this.path(id, 'exit'), ...cfg.argv], {
        detached: true,
        stdio: ['ignore', out, err],
        env,
        cwd: this.path(id),
      });
      const pid = child.pid;
      if (pid === undefined) throw new RuntimeError(`cannot start container '${id}': spawn failed`);
      // Record identity (pid + start time) before any await, so a restart can never mistake a reused pid for it.
      const st = readStatSync(pid);
      await writeFile(this.path(id, 'pid'), `${pid} ${st?.startTime ?? 0}\n`);
      child.once('exit', () => {
        for (const l of this.exitListeners) l();
      });
      child.unref();
    } finally {
      closeSync(out);
      closeSync(err);
    }
  }

  /** The wrapper's pid if it is still alive (and is the process that was started, not a reuse of its pid). */
  private async livePid(id: string): Promise<number | undefined> {
    let text: string;
    try {
      text = await readFile(this.path(id, 'pid'), 'utf8');
    } catch {
      return undefined;
    }
    const [pidText, startText] = text.trim().split(' ');
    const pid = Number(pidText);
    const st = await readStat(pid);
    if (!st || st.state === 'Z' || st.state === 'X' || String(st.startTime) !== startText) return undefined;
    return pid;
  }

  async inspect(id: string): Promise<ContainerInfo> {
    const cfg = await this.config(id);
    if (!cfg) return { id, taskId: '', state: 'missing', error: '', labels: {} };
    const base = { id, taskId: cfg.labels[LABELS.taskId] ?? '', labels: cfg.labels };
    let exitText: string | undefined;
    try {
      exitText = await readFile(this.path(id, 'exit'), 'utf8');
    } catch {
      exitText = undefined;
    }
    if (exitText !== undefined) return { ...base, state: 'exited', exitCode: Number(exitText.trim()), error: '' };
    let started = true;
    try {
      await readFile(this.path(id, 'pid'), 'utf8');
    } catch {
      started = false;
    }
    if (!started) return { ...base, state: 'created', error: '' };
    if ((await this.livePid(id)) !== undefined) return { ...base, state: 'running', error: '' };
    // Gone without recording a code: the wrapper itself was killed (SIGKILL after the grace period).
    return { ...base, state: 'exited', exitCode: 137, error: 'killed' };
  }

  async stop(id: string, graceMs: number): Promise<void> {
    const pid = await this.livePid(id);
    if (pid === undefined) return;
    signalPid(-pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (await groupMembers(pid)).length > 0) await sleep(20);
    if ((await groupMembers(pid)).length > 0) signalPid(-pid, 'SIGKILL');
    // SIGKILL cannot be refused; the bound only guards against a stuck /proc.
    for (let i = 0; i < 250 && (await groupMembers(pid)).length > 0; i++) await sleep(20);
  }

  async remove(id: string): Promise<void> {
    if (!(await this.config(id))) {
      await rm(this.path(id), { recursive: true, force: true });
      return;
    }
    await this.stop(id, 0);
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
      if (!/^[a-z0-9]{1,64}$/.test(id)) continue;
      const info = await this.inspect(id);
      if (info.state === 'missing' || !info.taskId) continue;
      if (filter.nodeId !== undefined && info.labels[LABELS.nodeId] !== filter.nodeId) continue;
      out.push(info);
    }
    return out;
  }

  async *logs(id: string, opts: LogOptions): AsyncGenerator<LogLine> {
    if (!(await this.config(id))) throw new RuntimeError(`cannot read logs of container '${id}': no such container`);
    const signal = AbortSignal.any([opts.signal, this.closed.signal]);
    const streams = await Promise.all(
      (['stdout', 'stderr'] as const).map(async (stream) => {
        const file = this.path(id, `${stream}.log`);
        const offset = opts.tail === undefined ? 0 : await tailOffset(file, opts.tail);
        return { stream, reader: new LineReader(file, offset) };
      }),
    );
    for (;;) {
      let grew = false;
      for (const s of streams) {
        const r = await s.reader.readNew();
        grew ||= r.grew;
        for (const line of r.lines) yield { stream: s.stream, line };
      }
      if (signal.aborted) return;
      // Without follow, or once the process is gone and its files stop growing, flush partial lines and end.
      if (!opts.follow || (!grew && (await this.inspect(id)).state !== 'running' && !(await this.growing(id)))) {
        for (const s of streams) {
          const last = s.reader.flush();
          if (last !== undefined) yield { stream: s.stream, line: last };
        }
        return;
      }
      if (!grew) await sleep(this.opts.pollMs ?? 200, signal).catch(() => undefined);
    }
  }

  /** Whether the log files changed size in the last moment (a final write racing the exit). */
  private async growing(id: string): Promise<boolean> {
    const size = async (): Promise<number> => (await fileSize(this.path(id, 'stdout.log'))) + (await fileSize(this.path(id, 'stderr.log')));
    const a = await size();
    await sleep(20);
    return (await size()) !== a;
  }

  async *events(outer: AbortSignal): AsyncGenerator<RuntimeEvent> {
    const signal = AbortSignal.any([outer, this.closed.signal]);
    const last = new Map<string, RuntimeEvent['state']>();
    for (const c of await this.list()) last.set(c.id, c.state);
    let wake: (() => void) | undefined;
    const listener = (): void => wake?.();
    this.exitListeners.add(listener);
    try {
      while (!signal.aborted) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          const t = setTimeout(resolve, this.opts.pollMs ?? 200);
          signal.addEventListener('abort', () => resolve(), { once: true });
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        if (signal.aborted) return;
        const now = new Map<string, ContainerInfo>();
        for (const c of await this.list()) now.set(c.id, c);
        for (const [id, c] of now) {
          if (last.get(id) !== c.state) yield { containerId: id, taskId: c.taskId, state: c.state };
          last.set(id, c.state);
        }
        for (const [id] of last) {
          if (now.has(id)) continue;
          last.delete(id);
          yield { containerId: id, taskId: '', state: 'missing' };
        }
      }
    } finally {
      this.exitListeners.delete(listener);
    }
  }

  async close(): Promise<void> {
    this.closed.abort();
  }
}
