// `shoal service …`: create, update, rollback, ls, ps, scale, inspect, logs, rm.

import type { Command } from 'commander';
import { parseDuration } from '../../core/index.js';
import type { TaskListItem } from '../../protocol/index.js';
import type { ShoalClient } from '../client.js';
import { clientOf } from '../context.js';
import { ConvergeError, waitConverged, waitRemoved, waitUpdated, type Progress } from '../converge.js';
import { applyUpdateFlags, configFromFlags, updateConfigOptions, type UpdateConfigFlags, type UpdateFlags } from '../update-flags.js';
import { ago, parseFormat, printJson, printTable, shortId } from '../output.js';
import { collect, parseCount, parsePairs, specFromFlags, type CreateFlags } from '../service-flags.js';

/** Shows "web: 2/3 running" progress: rewritten in place on a terminal, one line per change otherwise. */
const progressPrinter = (name: string): { update: (p: Progress) => void; done: () => void } => {
  const tty = process.stderr.isTTY;
  let shown = false;
  return {
    update: (p) => {
      const text = `${name}: ${p.running}/${p.desired} running`;
      process.stderr.write(tty ? `\r\x1b[2K${text}` : `${text}\n`);
      shown = true;
    },
    done: () => {
      if (tty && shown) process.stderr.write('\n');
    },
  };
};

/** Waits for convergence with progress; turns a failure into an error that says why and how to look further. */
const converge = async (client: ShoalClient, name: string, desired: number | 'global'): Promise<void> => {
  const pp = progressPrinter(name);
  try {
    await waitConverged(client, name, { desired, onProgress: pp.update });
    pp.done();
    process.stderr.write(`${name}: converged\n`);
  } catch (e) {
    pp.done();
    if (e instanceof ConvergeError) throw new Error(`service ${name} did not converge: ${e.message} (see 'shoal service ps ${name}')`);
    throw e;
  }
};

/** The health check options `service create` and `service update` take (as `docker service create`). */
const healthOptions = (cmd: Command): void => {
  cmd
    .option('--health-cmd <command>', 'command to run to check health (run with /bin/sh -c); a task counts as running once healthy')
    .option('--health-interval <duration>', 'time between checks (default 30s)')
    .option('--health-timeout <duration>', 'longest a check may run (default 30s)')
    .option('--health-retries <n>', 'consecutive failures to report unhealthy (default 3)')
    .option('--health-start-period <duration>', 'time after start when failures do not count (default 0s)')
    .option('--no-healthcheck', "disable any health check, the image's too");
};

/** Follows a rolling update or rollback, showing "web: updating 3/6 tasks updated"; fails with the reason it stopped. */
const followUpdate = async (client: ShoalClient, name: string, expect: 'update' | 'rollback'): Promise<void> => {
  const tty = process.stderr.isTTY;
  let last = '';
  try {
    await waitUpdated(client, name, {
      expect,
      onProgress: (p) => {
        const doing = p.replacing.length > 0 ? `, replacing ${p.replacing.join(' ')}` : '';
        const failed = p.failures > 0 ? `, ${p.failures} failed` : '';
        const text = `${name}: ${p.state.replace('_', ' ')}: ${p.updated}/${p.total} tasks updated${doing}${failed}${p.message && p.state !== 'updating' ? ` (${p.message})` : ''}`;
        if (text === last) return;
        last = text;
        process.stderr.write(tty ? `\r\x1b[2K${text}` : `${text}\n`);
      },
    });
    process.stderr.write(`${tty ? '\n' : ''}${name}: ${expect} completed\n`);
  } catch (e) {
    if (tty) process.stderr.write('\n');
    if (e instanceof ConvergeError) throw new Error(`service ${name}: ${e.message} (see 'shoal service ps ${name}' and 'shoal service inspect ${name}')`);
    throw e;
  }
};

const taskName = (t: TaskListItem): string => `${t.serviceName}.${t.slot}`;

export const registerServiceCommands = (program: Command): void => {
  const service = program.command('service').description('manage services').enablePositionalOptions();

  const create = service
    .command('create')
    .description('create a service and wait until its tasks run')
    .usage('[options] IMAGE [COMMAND [ARG...]]')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions()
    .option('--name <name>', 'service name')
    .option('--project <project>', "project the service belongs to (default 'default'); grants and policies apply per project")
    .option('--mode <mode>', 'replicated (default) or global (one task per eligible node)')
    .option('--replicas <n>', 'number of tasks (default 1)')
    .option('-e, --env <KEY=VALUE>', 'environment variable (repeatable)', collect, [])
    .option('--label <KEY=VALUE>', 'service label (repeatable)', collect, [])
    .option('--container-label <KEY=VALUE>', 'container label (repeatable)', collect, [])
    .option('--restart-condition <cond>', 'none, on-failure or any (default any)')
    .option('--restart-delay <duration>', 'delay between restarts, e.g. 5s (default 5s)')
    .option('--restart-max-attempts <n>', 'restarts before giving up, within the window (default 0 = unlimited)')
    .option('--restart-window <duration>', 'window over which restarts are counted (default 0 = unbounded)')
    .option('--reserve-cpu <cpus>', 'CPUs reserved per task, e.g. 0.5')
    .option('--reserve-memory <bytes>', 'memory reserved per task, e.g. 64M')
    .option('--limit-cpu <cpus>', 'CPU limit per task')
    .option('--limit-memory <bytes>', 'memory limit per task')
    .option('--constraint <expr>', 'placement constraint, e.g. node.labels.zone==eu (repeatable)', collect, [])
    .option('--placement-pref <pref>', 'spread tasks over the values of a node label: spread=node.labels.zone (repeatable)', collect, [])
    .option('--stop-grace-period <duration>', 'time between SIGTERM and SIGKILL (default 10s)')
    .option('-d, --detach', 'return at once instead of waiting for the tasks to run');
  healthOptions(create);
  updateConfigOptions(create);
  create.action(async (image: string, args: string[], flags: CreateFlags & UpdateConfigFlags & { detach?: boolean }, cmd: Command) => {
      const updateConfig = configFromFlags(flags, 'update');
      const rollbackConfig = configFromFlags(flags, 'rollback');
      const spec = { ...specFromFlags(image, args, flags), ...(updateConfig ? { updateConfig } : {}), ...(rollbackConfig ? { rollbackConfig } : {}) };
      const client = clientOf(cmd);
      const created = await client.createService(spec);
      process.stdout.write(`${created.id}\n`);
      if (flags.detach) return;
      await converge(client, created.spec.name, 'replicated' in created.spec.mode ? created.spec.mode.replicated.replicas : 'global');
    });

  const update = service
    .command('update')
    .description('change a service; a changed task template replaces its tasks in a rolling update, shown as it goes')
    .argument('<service>')
    .option('--image <image>', 'new image')
    .option('--args <command>', 'new command and arguments, as one string')
    .option('--replicas <n>', 'number of tasks')
    .option('--env-add <KEY=VALUE>', 'add or change an environment variable (repeatable)', collect, [])
    .option('--env-rm <KEY>', 'remove an environment variable (repeatable)', collect, [])
    .option('--label-add <KEY=VALUE>', 'add or change a service label (repeatable)', collect, [])
    .option('--label-rm <KEY>', 'remove a service label (repeatable)', collect, [])
    .option('--container-label-add <KEY=VALUE>', 'add or change a container label (repeatable)', collect, [])
    .option('--container-label-rm <KEY>', 'remove a container label (repeatable)', collect, [])
    .option('--constraint-add <expr>', 'add a placement constraint (repeatable)', collect, [])
    .option('--constraint-rm <expr>', 'remove a placement constraint (repeatable)', collect, [])
    .option('--restart-condition <cond>', 'none, on-failure or any')
    .option('--restart-delay <duration>', 'delay between restarts')
    .option('--restart-max-attempts <n>', 'restarts before giving up, within the window')
    .option('--restart-window <duration>', 'window over which restarts are counted')
    .option('--reserve-cpu <cpus>', 'CPUs reserved per task')
    .option('--reserve-memory <bytes>', 'memory reserved per task')
    .option('--limit-cpu <cpus>', 'CPU limit per task')
    .option('--limit-memory <bytes>', 'memory limit per task')
    .option('--stop-grace-period <duration>', 'time between SIGTERM and SIGKILL')
    .option('--force', 'replace every task even if nothing changed')
    .option('-d, --detach', 'return at once instead of following the update');
  healthOptions(update);
  updateConfigOptions(update);
  update.action(async (ref: string, flags: UpdateFlags & { detach?: boolean }, cmd: Command) => {
    const client = clientOf(cmd);
    const before = await client.inspectService(ref);
    const updated = await client.updateService(ref, applyUpdateFlags(before.spec, flags), before.meta.version);
    process.stdout.write(`${updated.id}\n`);
    if (flags.detach) return;
    const started = updated.updateStatus?.state === 'updating' && updated.updateStatus.startedAt !== before.updateStatus?.startedAt;
    if (started) return followUpdate(client, updated.spec.name, 'update');
    await converge(client, updated.spec.name, 'replicated' in updated.spec.mode ? updated.spec.mode.replicated.replicas : 'global');
  });

  service
    .command('rollback')
    .description("return a service to its spec before the last update, replacing its tasks per its rollback config")
    .argument('<service>')
    .option('-d, --detach', 'return at once instead of following the rollback')
    .action(async (ref: string, flags: { detach?: boolean }, cmd: Command) => {
      const client = clientOf(cmd);
      const s = await client.rollbackService(ref);
      process.stdout.write(`${s.id}\n`);
      if (!flags.detach) await followUpdate(client, s.spec.name, 'rollback');
    });

  service
    .command('ls')
    .description('list services')
    .option('--format <format>', 'table or json')
    .action(async (flags: { format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const rows = await clientOf(cmd).listServices();
      if (format === 'json') return printJson(rows);
      printTable(
        ['ID', 'NAME', 'PROJECT', 'MODE', 'REPLICAS', 'IMAGE'],
        rows.map((s) => [shortId(s.id), s.name, s.project, s.mode, `${s.replicas.running}/${s.replicas.desired}`, s.image]),
      );
    });

  service
    .command('ps')
    .description('list the tasks of a service')
    .argument('<service>')
    .option('--format <format>', 'table or json')
    .action(async (ref: string, flags: { format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const tasks = await clientOf(cmd).serviceTasks(ref);
      if (format === 'json') {
        return printJson(
          tasks.map(({ id, serviceName, slot, nodeId, desiredState, state, stateSince, containerId, error, createdAt, image, upToDate }) => ({ id, serviceName, slot, nodeId, desiredState, state, stateSince, containerId, error, createdAt, image, upToDate })),
        );
      }
      let prevSlot = -1;
      printTable(
        ['ID', 'NAME', 'IMAGE', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'],
        tasks.map((t) => {
          // Like docker: older tasks of a slot are shown indented under the current one.
          const name = t.slot === prevSlot ? ` \\_ ${taskName(t)}` : taskName(t);
          prevSlot = t.slot;
          // As docker's CURRENT STATE: how long the task has been in its state (a task running for an hour, made two ago,
          // is "running 1 hour ago").
          const current = t.state === 'pending' && t.message ? `pending: ${t.message}` : `${t.state} ${ago(t.stateSince)}`;
          return [shortId(t.id), name, t.image, t.node || '-', t.desiredState, current, t.error];
        }),
      );
    });

  service
    .command('inspect')
    .description('show services in full, as JSON')
    .argument('<service...>')
    .action(async (refs: string[], _flags: unknown, cmd: Command) => {
      const client = clientOf(cmd);
      printJson(await Promise.all(refs.map((r) => client.inspectService(r))));
    });

  service
    .command('scale')
    .description('set the replica count of services: shoal service scale web=5 [api=2 …]')
    .argument('<service=replicas...>')
    .option('-d, --detach', 'return at once instead of waiting for convergence')
    .action(async (pairs: string[], flags: { detach?: boolean }, cmd: Command) => {
      const client = clientOf(cmd);
      const wanted = pairs.map((p) => {
        const i = p.lastIndexOf('=');
        if (i <= 0) throw new Error(`invalid argument '${p}': expected SERVICE=REPLICAS`);
        return { ref: p.slice(0, i), replicas: parseCount(p.slice(i + 1), `replicas of ${p.slice(0, i)}`) };
      });
      for (const w of wanted) {
        const s = await client.scaleService(w.ref, w.replicas);
        process.stdout.write(`${s.spec.name} scaled to ${w.replicas}\n`);
      }
      if (flags.detach) return;
      for (const w of wanted) await converge(client, w.ref, w.replicas);
    });

  service
    .command('logs')
    .description('show the logs of the tasks of a service, or of one task (in order per task)')
    .argument('<service|task>')
    .option('-f, --follow', 'keep following new output')
    .option('--tail <n>', "lines per task from the end, or 'all'", 'all')
    .option('--since <time>', 'only lines since this time: RFC 3339, Unix seconds, or a duration before now (10m)')
    .option('-t, --timestamps', "prefix each line with the time the runtime recorded (the exec runtime records none: '-')")
    .option('--no-task-ids', 'do not prefix lines with the task')
    .action(async (ref: string, flags: { follow?: boolean; tail: string; since?: string; timestamps?: boolean; taskIds: boolean }, cmd: Command) => {
      const tail = flags.tail === 'all' ? undefined : parseCount(flags.tail, '--tail');
      const ctl = new AbortController();
      process.once('SIGINT', () => ctl.abort());
      const opts = { follow: flags.follow ?? false, signal: ctl.signal, ...(tail === undefined ? {} : { tail }), ...(flags.since === undefined ? {} : { since: flags.since }) };
      try {
        for await (const l of clientOf(cmd).serviceLogs(ref, opts)) {
          const time = flags.timestamps ? `${l.time ?? '-'} ` : '';
          const task = flags.taskIds ? `${l.serviceName}.${l.slot}.${shortId(l.taskId)}@${l.node}    | ` : '';
          (l.stream === 'stderr' ? process.stderr : process.stdout).write(`${time}${task}${l.line}\n`);
        }
      } catch (e) {
        if (!ctl.signal.aborted) throw e;
      }
    });

  service
    .command('rm')
    .description('remove services; waits until their containers are gone')
    .argument('<service...>')
    .option('-d, --detach', 'return at once instead of waiting for the containers to be removed')
    .action(async (refs: string[], flags: { detach?: boolean }, cmd: Command) => {
      const client = clientOf(cmd);
      const removed = [];
      for (const ref of refs) {
        const r = await client.removeService(ref);
        removed.push(r);
        process.stdout.write(`${r.name}\n`);
      }
      if (flags.detach) return;
      for (const r of removed) await waitRemoved(client, r.id);
    });
};

export const registerClusterSettingsCommands = (program: Command): void => {
  const cluster = program.command('cluster').description('cluster-wide settings');
  cluster
    .command('inspect')
    .description('show the cluster settings as JSON')
    .action(async (_flags: unknown, cmd: Command) => printJson(await clientOf(cmd).inspectCluster()));
  cluster
    .command('status')
    .description('who leads, the managers, and the health of the store and its members')
    .option('--format <format>', 'table or json')
    .action(async (flags: { format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const st = await clientOf(cmd).clusterStatus();
      if (format === 'json') return printJson(st);
      process.stdout.write(`Leader: ${st.leader ? `${shortId(st.leader.nodeId)} at ${st.leader.address}` : 'none (an election is under way, or no manager can reach the store)'}\n\nManagers:\n`);
      printTable(
        ['ID', 'HOSTNAME', 'ADDRESS', 'STATUS', 'LEADER'],
        st.managers.map((m) => [shortId(m.nodeId), m.hostname, m.address, m.status, m.leader ? 'yes' : '']),
      );
      process.stdout.write(`\nStore (${st.store.backend}):\n`);
      printTable(
        ['MEMBER', 'ENDPOINT', 'HEALTH', 'LEADER', 'ERROR'],
        st.store.members.map((m) => [m.name, m.endpoint, m.healthy ? 'healthy' : 'unhealthy', m.leader ? 'yes' : '', m.error ?? '']),
      );
    });
  cluster
    .command('update')
    .description('change cluster settings')
    .option('--heartbeat-period <duration>', 'how often agents heartbeat (a node is down after 5 silent periods)')
    .option('--task-history-limit <n>', 'dead tasks kept per slot')
    .option('--cert-expiry <duration>', 'lifetime of node certificates issued from now on (default 90 days); nodes renew at 50-80% of it')
    .action(async (flags: { heartbeatPeriod?: string; taskHistoryLimit?: string; certExpiry?: string }, cmd: Command) => {
      const c = await clientOf(cmd).updateCluster({
        ...(flags.heartbeatPeriod === undefined ? {} : { heartbeatPeriodMs: parseDuration(flags.heartbeatPeriod, '--heartbeat-period') }),
        ...(flags.taskHistoryLimit === undefined ? {} : { taskHistoryLimit: parseCount(flags.taskHistoryLimit, '--task-history-limit') }),
        ...(flags.certExpiry === undefined ? {} : { nodeCertExpiryMs: parseDuration(flags.certExpiry, '--cert-expiry') }),
      });
      printJson(c);
    });
};

export const registerNodeCommands = (program: Command): void => {
  const node = program.command('node').description('manage nodes');
  node
    .command('ls')
    .description('list nodes')
    .option('--format <format>', 'table or json')
    .action(async (flags: { format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const client = clientOf(cmd);
      const [rows, info] = await Promise.all([client.listNodes(), client.info()]);
      if (format === 'json') return printJson(rows);
      const managerStatus = { leader: 'Leader', reachable: 'Reachable', unreachable: 'Unreachable' } as const;
      printTable(
        ['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS', 'ADDRESS'],
        rows.map((n) => [`${shortId(n.id)}${n.id === info.nodeId ? ' *' : ''}`, n.hostname, n.status, n.availability, n.managerStatus ? managerStatus[n.managerStatus] : '', n.address]),
      );
    });
  node
    .command('update')
    .description('change a node: availability (active, pause, drain) and labels')
    .argument('<node>')
    .option('--availability <availability>', 'active, pause or drain')
    .option('--label-add <KEY=VALUE>', 'add or change a node label (repeatable)', collect, [])
    .option('--label-rm <KEY>', 'remove a node label (repeatable)', collect, [])
    .action(async (ref: string, flags: { availability?: string; labelAdd: string[]; labelRm: string[] }, cmd: Command) => {
      const a = flags.availability;
      if (a !== undefined && a !== 'active' && a !== 'pause' && a !== 'drain') throw new Error(`invalid --availability '${a}': use active, pause or drain`);
      const n = await clientOf(cmd).updateNode(ref, { ...(a ? { availability: a } : {}), labelAdd: parsePairs(flags.labelAdd, '--label-add'), labelRm: flags.labelRm });
      process.stdout.write(`${n.id}\n`);
    });
  for (const [verb, role, what] of [
    ['promote', 'manager', 'make workers managers (the cluster must run its store on etcd); each restarts itself as a manager'],
    ['demote', 'worker', 'make managers workers (at least one manager stays); each restarts itself as a worker'],
  ] as const) {
    node
      .command(verb)
      .description(what)
      .argument('<node...>')
      .action(async (refs: string[], _flags: unknown, cmd: Command) => {
        const client = clientOf(cmd);
        for (const ref of refs) {
          const n = await client.updateNode(ref, { role });
          process.stdout.write(`Node ${n.id} (${n.description.hostname}) is now a ${role}.\n`);
        }
      });
  }
  node
    .command('rm')
    .description('remove nodes from the cluster; their certificates are refused from then on')
    .argument('<node...>')
    .option('-f, --force', 'remove a node that is still ready')
    .action(async (refs: string[], flags: { force?: boolean }, cmd: Command) => {
      const client = clientOf(cmd);
      for (const ref of refs) process.stdout.write(`${(await client.removeNode(ref, flags.force ?? false)).id}\n`);
    });
  node
    .command('inspect')
    .description('show nodes in full, as JSON')
    .argument('<node...>')
    .action(async (refs: string[], _flags: unknown, cmd: Command) => {
      const client = clientOf(cmd);
      printJson(await Promise.all(refs.map((r) => client.inspectNode(r))));
    });
};
