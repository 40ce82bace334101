// `shoal login|whoami|user|team|token|grant|project|audit`: who may use the cluster and what they did, Docker style.
//
// Passwords are never arguments (they would land in shell history and `ps`): they come from stdin with
// --password-stdin, or are typed at the terminal without echo.

import type { Command } from 'commander';
import { invalid, parseDuration } from '../../core/index.js';
import type { GrantView, TokenCreateRequest } from '../../protocol/index.js';
import type { ShoalClient } from '../client.js';
import { clientOf, contextPath, requireContext, writeContext } from '../context.js';
import { ago, parseFormat, printJson, printTable } from '../output.js';
import { collect, parseCount } from '../service-flags.js';

// ------------------------------------------------------------ output shared with `shoal policy`

export interface ListFlags {
  format?: string;
  quiet?: boolean;
}

/** The options of an `ls`: --format table|json and -q (ids only). */
export const listOptions = (cmd: Command, what: string): Command => cmd.option('--format <format>', 'table or json').option('-q, --quiet', `print only the ${what}`);

/** An `ls`'s rows: their ids only (-q), as JSON, or as a table. */
export const printList = <T>(rows: T[], flags: ListFlags, id: (r: T) => string, header: string[], row: (r: T) => string[]): void => {
  const format = parseFormat(flags.format);
  if (flags.quiet) return void process.stdout.write(rows.map((r) => `${id(r)}\n`).join(''));
  if (format === 'json') return printJson(rows);
  printTable(header, rows.map(row));
};

const printLines = (lines: string[]): void => void process.stdout.write(lines.map((l) => `${l}\n`).join(''));

/** A command on each of its arguments in turn (rm, revoke), printing what each call names; the first failure stops it. */
export const eachArgument = (cmd: Command, act: (client: ShoalClient, ref: string) => Promise<string>): Command =>
  cmd.action(async (refs: string[], _flags: unknown, c: Command) => {
    const client = clientOf(c);
    for (const ref of refs) process.stdout.write(`${await act(client, ref)}\n`);
  });

/** `inspect NAME...`: the objects in full, as one JSON array (as `docker inspect` shows them). */
export const inspectEach = (cmd: Command, get: (client: ShoalClient, ref: string) => Promise<unknown>): Command =>
  cmd.action(async (refs: string[], _flags: unknown, c: Command) => {
    const client = clientOf(c);
    printJson(await Promise.all(refs.map((r) => get(client, r))));
  });

// ------------------------------------------------------------ passwords

const readStdin = async (): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
};

/** The lines of stdin, line breaks removed (a password may well end in a space). */
const stdinLines = async (): Promise<string[]> => {
  const lines = (await readStdin()).split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines;
};

/** Reads a password typed at the terminal without echoing it; refuses when stdin is not a terminal. */
const askPassword = (prompt: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const { stdin, stderr } = process;
    if (!stdin.isTTY) return reject(new Error('stdin is not a terminal: pass the password on stdin with --password-stdin'));
    let text = '';
    const finish = (err?: Error): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish();
        if (ch === '\u0003') return finish(new Error('interrupted'));
        text = ch === '\u007f' || ch === '\b' ? text.slice(0, -1) : text + ch;
      }
    };
    stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    stdin.on('data', onData);
    stdin.resume();
  });

/** The password from stdin's first line (--password-stdin) or typed at the terminal. */
const password = async (fromStdin: boolean | undefined, prompt = 'Password: '): Promise<string> => {
  const p = fromStdin ? (await stdinLines())[0] : await askPassword(prompt);
  if (!p) throw invalid('password', fromStdin ? 'stdin holds no password' : 'no password typed');
  return p;
};

/**
 * The passwords of `user passwd`: from stdin one line (the new password), or two (the current one, then the new one:
 * changing your own password needs the current one); at a terminal, the current one is asked for your own only.
 */
const passwordChange = async (fromStdin: boolean | undefined, own: () => Promise<boolean>): Promise<{ password: string; currentPassword?: string }> => {
  if (fromStdin) {
    const lines = await stdinLines();
    const [a, b] = lines;
    if (!a || lines.length > 2) throw invalid('password', 'stdin holds the new password on one line, or the current password and then the new one on two');
    return b === undefined ? { password: a } : { currentPassword: a, password: b };
  }
  const currentPassword = (await own()) ? await password(false, 'Current password: ') : undefined;
  const next = await password(false, 'New password: ');
  if ((await password(false, 'Repeat the new password: ')) !== next) throw invalid('password', 'the two new passwords differ');
  return { password: next, ...(currentPassword === undefined ? {} : { currentPassword }) };
};

// ------------------------------------------------------------ formatting

const subjectText = (g: GrantView): string => ('user' in g.subject ? `user ${g.subject.user}` : `team ${g.subject.team}`);
const scopeText = (g: GrantView): string => ('cluster' in g.scope ? 'cluster' : `project ${g.scope.project}`);

/** `30d`, `12h`, `1d12h`, `90m`: a token's lifetime in ms (days added to the durations the rest of the CLI takes). */
const parseExpiry = (text: string): number => {
  const m = /^(?:(\d+)d)?(.*)$/.exec(text.trim());
  const rest = m?.[2] ?? '';
  let ms = NaN;
  try {
    ms = Number(m?.[1] ?? 0) * 86_400_000 + (rest === '' ? 0 : parseDuration(rest, '--expires'));
  } catch {
    // Said below, with the forms a lifetime takes (days included).
  }
  if (!(ms > 0)) throw invalid('--expires', `'${text}' is not a lifetime (e.g. 30d, 12h, 1d12h, 90m)`);
  return ms;
};

/** A token's id, also from the token's text (`shoal_<id>_<secret>`): only the id is ever sent. */
const tokenId = (ref: string): string => /^shoal_([a-z0-9]{16})_/.exec(ref)?.[1] ?? ref;

// ------------------------------------------------------------ commands

const registerSignIn = (program: Command): void => {
  program
    .command('login')
    .description("sign in with a user's password; the session token (valid 12 hours) replaces the context file's credential")
    .requiredOption('-u, --user <name>', 'user name')
    .option('--password-stdin', 'read the password from stdin (else it is asked for at the terminal)')
    .action(async (flags: { user: string; passwordStdin?: boolean }, cmd: Command) => {
      requireContext();
      const secret = await password(flags.passwordStdin);
      const r = await clientOf(cmd).login(flags.user, secret);
      // Read again: the client may have recorded the managers it learned meanwhile.
      writeContext({ ...requireContext(), token: r.token });
      process.stdout.write(`Login Succeeded: ${r.user} until ${r.expiresAt} (credential saved in ${contextPath()})\n`);
    });

  program
    .command('whoami')
    .description('show who the credential acts as: the user, their teams and their grants')
    .option('--format <format>', 'table or json')
    .action(async (flags: { format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const me = await clientOf(cmd).whoami();
      if (format === 'json') return printJson(me);
      const grants = me.grants.map((g) => `  ${g.role} on ${scopeText(g)}${'team' in g.subject ? ` (team ${g.subject.team})` : ''}`);
      printLines([`User: ${me.user}`, `Teams: ${me.teams.join(', ') || '-'}`, `Grants:${grants.length === 0 ? ' -' : ''}`, ...grants]);
    });
};

const registerUsers = (program: Command): void => {
  const user = program.command('user').description('manage users (admin)');
  user
    .command('create')
    .description('create a user; without --password-stdin the user signs in with API tokens only (shoal token create --user)')
    .argument('<name>')
    .option('--password-stdin', 'read the password from stdin (at least 8 characters)')
    .action(async (name: string, flags: { passwordStdin?: boolean }, cmd: Command) => {
      const secret = flags.passwordStdin ? await password(true) : undefined;
      const u = await clientOf(cmd).createUser({ name, ...(secret === undefined ? {} : { password: secret }) });
      process.stdout.write(`${u.name}\n`);
    });
  listOptions(user.command('ls').description('list users'), 'names').action(async (flags: ListFlags, cmd: Command) => {
    printList(await clientOf(cmd).listUsers(), flags, (u) => u.name, ['NAME', 'TEAMS', 'PASSWORD', 'CREATED'], (u) => [u.name, u.teams.join(',') || '-', u.hasPassword ? 'yes' : 'no', ago(u.createdAt)]);
  });
  eachArgument(user.command('rm').description('remove users, with their tokens, their grants and their team memberships').argument('<name...>'), async (client, n) => (await client.removeUser(n)).name);
  user
    .command('passwd')
    .description("set a user's password: your own (the current one is needed), or anyone's as an admin")
    .argument('<name>')
    .option('--password-stdin', 'read the new password from stdin; for your own, the current password on the first line and the new one on the second')
    .action(async (name: string, flags: { passwordStdin?: boolean }, cmd: Command) => {
      const client = clientOf(cmd);
      const change = await passwordChange(flags.passwordStdin, async () => (await client.whoami()).user === name);
      process.stdout.write(`${(await client.setPassword(name, change)).name}\n`);
    });
};

const registerTeams = (program: Command): void => {
  const team = program.command('team').description('manage teams: grants to a team apply to its members (admin)');
  team
    .command('create')
    .description('create a team')
    .argument('<name>')
    .option('--member <user>', 'a member (repeatable)', collect, [])
    .action(async (name: string, flags: { member: string[] }, cmd: Command) => {
      process.stdout.write(`${(await clientOf(cmd).createTeam({ name, members: flags.member })).name}\n`);
    });
  listOptions(team.command('ls').description('list teams'), 'names').action(async (flags: ListFlags, cmd: Command) => {
    printList(await clientOf(cmd).listTeams(), flags, (t) => t.name, ['NAME', 'MEMBERS', 'CREATED'], (t) => [t.name, t.members.join(',') || '-', ago(t.createdAt)]);
  });
  inspectEach(team.command('inspect').description('show teams in full, as JSON').argument('<name...>'), (client, n) => client.inspectTeam(n));
  eachArgument(team.command('rm').description('remove teams and the grants made to them').argument('<name...>'), async (client, n) => (await client.removeTeam(n)).name);
  for (const [verb, key, what] of [
    ['add-member', 'add', 'add users to a team'],
    ['rm-member', 'remove', 'take users out of a team'],
  ] as const) {
    team
      .command(verb)
      .description(what)
      .argument('<team>')
      .argument('<user...>')
      .action(async (name: string, users: string[], _flags: unknown, cmd: Command) => {
        const t = await clientOf(cmd).changeTeamMembers(name, { [key]: users });
        process.stdout.write(`${t.name}: ${t.members.join(', ') || 'no members'}\n`);
      });
  }
};

const registerTokens = (program: Command): void => {
  const token = program.command('token').description('manage API tokens (the CLI acts with one through --token or SHOAL_TOKEN)');
  token
    .command('create')
    .description("create an API token for yourself, or (admin) for a user; it is shown only this once")
    .option('--user <name>', 'the user the token acts as (default: you)')
    .option('--description <text>', 'what the token is for')
    .option('--expires <lifetime>', 'lifetime, e.g. 30d, 12h, 90m (default: it does not expire)')
    .option('-q, --quiet', 'print only the token')
    .action(async (flags: { user?: string; description?: string; expires?: string; quiet?: boolean }, cmd: Command) => {
      const req: TokenCreateRequest = {
        ...(flags.user === undefined ? {} : { user: flags.user }),
        ...(flags.description === undefined ? {} : { description: flags.description }),
        ...(flags.expires === undefined ? {} : { expiresInMs: parseExpiry(flags.expires) }),
      };
      const t = await clientOf(cmd).createToken(req);
      if (flags.quiet) return void process.stdout.write(`${t.token}\n`);
      printLines([`Token ${t.id} for ${t.user} (${t.expiresAt ? `expires ${t.expiresAt}` : 'does not expire'}):`, '', `    ${t.token}`, '', 'It is shown only this once. Act with it through --token or SHOAL_TOKEN; revoke it with shoal token revoke.']);
    });
  listOptions(token.command('ls').description('list your API tokens, or (admin) a user’s or everyone’s; never their secrets'), 'ids')
    .option('--user <name>', "only this user's tokens")
    .action(async (flags: ListFlags & { user?: string }, cmd: Command) => {
      printList(await clientOf(cmd).listTokens(flags.user), flags, (t) => t.id, ['ID', 'USER', 'DESCRIPTION', 'CREATED', 'EXPIRES'], (t) => [t.id, t.user, t.description || '-', ago(t.createdAt), t.expiresAt ?? 'never']);
    });
  eachArgument(token.command('revoke').description('revoke API tokens (by id, or by the token itself): they are refused from then on').argument('<id...>'), async (client, r) => (await client.revokeToken(tokenId(r))).id);
};

const registerGrants = (program: Command): void => {
  const grant = program.command('grant').description('manage grants: a role to a user or team, on a project or the cluster (admin)');
  grant
    .command('add')
    .description('grant a role (admin, developer, provisioner, viewer) to a user or a team, on a project or the cluster')
    .option('--user <name>', 'the user')
    .option('--team <name>', 'the team')
    .requiredOption('--role <role>', 'admin, developer, provisioner or viewer')
    .option('--project <name>', 'the project the role applies in')
    .option('--cluster', 'the role applies cluster-wide (the only scope of admin)')
    .action(async (flags: { user?: string; team?: string; role: string; project?: string; cluster?: boolean }, cmd: Command) => {
      const { user, team, project, cluster } = flags;
      const g = await clientOf(cmd).addGrant({
        // The API checks the role's name and that exactly one subject and one scope are set.
        role: flags.role as GrantView['role'],
        ...(user === undefined ? {} : { user }),
        ...(team === undefined ? {} : { team }),
        ...(project === undefined ? {} : { project }),
        ...(cluster ? { cluster } : {}),
      });
      process.stdout.write(`${g.id}\n`);
    });
  listOptions(grant.command('ls').description('list grants'), 'ids')
    .option('--user <name>', "only the user's own grants (not their teams')")
    .option('--team <name>', "only the team's grants")
    .option('--project <name>', 'only grants on the project')
    .action(async (flags: ListFlags & { user?: string; team?: string; project?: string }, cmd: Command) => {
      const { user, team, project } = flags;
      const rows = await clientOf(cmd).listGrants({ user, team, project });
      printList(rows, flags, (g) => g.id, ['ID', 'SUBJECT', 'ROLE', 'SCOPE', 'CREATED'], (g) => [g.id, subjectText(g), g.role, scopeText(g), ago(g.createdAt)]);
    });
  eachArgument(grant.command('rm').description('remove grants').argument('<id...>'), async (client, id) => (await client.removeGrant(id)).id);
};

const registerProjectsAndAudit = (program: Command): void => {
  const project = program.command('project').description('projects group services; grants and policies apply per project');
  listOptions(project.command('ls').description('list the projects you may read services in'), 'names').action(async (flags: ListFlags, cmd: Command) => {
    printList(await clientOf(cmd).listProjects(), flags, (p) => p.name, ['NAME', 'SERVICES', 'GRANTS'], (p) => [p.name, String(p.services), String(p.grants)]);
  });

  const audit = program.command('audit').description('the audit log of every write decision (admin)');
  audit
    .command('ls')
    .description('list audit log entries, oldest first: who, when, what, the outcome and the rule that decided')
    .option('--user <name>', "only this user's requests")
    .option('--since <time>', 'only entries since this time: RFC 3339, Unix seconds, or a duration before now (10m)')
    .option('--until <time>', 'only entries until this time (same forms)')
    .option('--limit <n>', 'only the newest n entries')
    .option('--format <format>', 'table or json')
    .action(async (flags: { user?: string; since?: string; until?: string; limit?: string; format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const { user, since, until } = flags;
      const limit = flags.limit === undefined ? undefined : parseCount(flags.limit, '--limit');
      const rows = await clientOf(cmd).audit({ user, since, until, limit });
      if (format === 'json') return printJson(rows);
      printTable(
        ['TIME', 'USER', 'ACTION', 'TARGET', 'OUTCOME', 'RULE', 'MESSAGE'],
        rows.map((e) => [e.time, e.user, e.action, e.target || '-', e.outcome, e.rule || '-', [e.message, ...(e.warnings ?? [])].filter(Boolean).join('; ')]),
      );
    });
};

export const registerAccessCommands = (program: Command): void => {
  registerSignIn(program);
  registerUsers(program);
  registerTeams(program);
  registerTokens(program);
  registerGrants(program);
  registerProjectsAndAudit(program);
};
