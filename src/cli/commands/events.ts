// `shoal events`: cluster events (services, tasks, nodes) as they happen, like `docker events`: it streams until
// interrupted, or until --until; --since first shows the manager's history from then.

import type { Command } from 'commander';
import { parseTimeQuery } from '../../api/time-query.js';
import type { ClusterEvent } from '../../protocol/index.js';
import { clientFor } from '../context.js';
import { parseFormat } from '../output.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** One event as a line: `TIME TYPE ACTION ID (name=NAME, key=value, …)`, as docker prints them. */
export const formatEvent = (e: ClusterEvent): string => {
  const attrs = [`name=${e.name}`, ...Object.entries(e.attributes).map(([k, v]) => `${k}=${v}`)];
  return `${e.time} ${e.type} ${e.action} ${e.id} (${attrs.join(', ')})`;
};

/** What to tell when `since` reaches back before the history the manager keeps; undefined when it does not. */
export const historyNotice = (sinceMs: number | undefined, historyStart: string): string | undefined => {
  if (sinceMs === undefined || sinceMs >= Date.parse(historyStart)) return undefined;
  return `note: this manager's event history starts at ${historyStart} (when it started, or its oldest kept event): earlier events are not shown`;
};

export const registerEventsCommand = (program: Command): void => {
  program
    .command('events')
    .description('stream cluster events (services, tasks, nodes) until interrupted or --until')
    .option('--since <time>', 'first show events since this time: RFC 3339, Unix seconds, or a duration before now (10m)')
    .option('--until <time>', 'end at this time (same forms); a past time shows the history and ends')
    .option('-f, --filter <type=TYPE>', 'only events of a type: type=service, type=task or type=node (repeatable)', collect, [])
    .option('--format <format>', 'table (plain lines, the default) or json (one object per line)')
    .action(async (flags: { since?: string; until?: string; filter: string[]; format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const client = clientFor(cmd.optsWithGlobals<{ host?: string }>());
      const sinceMs = parseTimeQuery(flags.since ?? null, Date.now(), '--since');
      const ctl = new AbortController();
      process.once('SIGINT', () => ctl.abort());
      const events = client.events({
        ...(flags.since === undefined ? {} : { since: flags.since }),
        ...(flags.until === undefined ? {} : { until: flags.until }),
        filters: flags.filter,
        follow: true,
        signal: ctl.signal,
        onHistoryStart: (start) => {
          const notice = historyNotice(sinceMs, start);
          if (notice) process.stderr.write(notice + '\n');
        },
      });
      try {
        for await (const e of events) process.stdout.write((format === 'json' ? JSON.stringify(e) : formatEvent(e)) + '\n');
      } catch (err) {
        if (!ctl.signal.aborted) throw err;
      }
    });
};
