// The access API: sign-in, users, teams, API tokens, grants and projects. Only admins manage other users; every user
// manages their own tokens and password.

import { ADMIN_USER, DEFAULT_PROJECT, ShoalError, invalid, notFound, projectOf, type ApiToken, type Grant, type Team, type User } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { isoNow } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { hashPassword, verifyPassword } from '../lib/passwords.js';
import { authorize, describeGrant, projectsAllowed, type Permission } from '../policy/authorize.js';
import {
  API_PREFIX,
  grantCreateSchema,
  loginSchema,
  passwordSchema,
  teamCreateSchema,
  teamMembersSchema,
  tokenCreateSchema,
  userCreateSchema,
  type GrantView,
  type LoginResponse,
  type ProjectView,
  type TeamView,
  type TokenCreateResponse,
  type TokenView,
  type UserView,
  type WhoAmIResponse,
} from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { Op } from '../store/store.js';
import { expired, newApiToken, type Authenticator } from './authn.js';
import { fromZod, readJson, sendJson, type RequestContext, type Router } from './http.js';
import type { StoreWriter, WriteOrigin } from './writes.js';

/** How long a password sign-in lasts. */
export const LOGIN_TOKEN_TTL_MS = 12 * 3_600_000;

export interface AccessDeps {
  cache: Cache;
  clock: Clock;
  logger: Logger;
  newId: () => string;
  writer: StoreWriter;
  authn: Authenticator;
}

const p = API_PREFIX;

/** Failed sign-ins a user name may have before further attempts must wait (doubling, up to 5 minutes). */
const FREE_LOGIN_FAILURES = 5;
const MAX_LOGIN_LOCK_MS = 5 * 60_000;
/** Bound on remembered names, so guessing many names cannot grow memory without limit. */
const MAX_THROTTLED_NAMES = 10_000;

export class AccessApi {
  /** Failed sign-ins per user name on this manager: password guessing gets slower and slower. */
  private readonly loginFailures = new Map<string, { count: number; until: number }>();

  constructor(private readonly deps: AccessDeps) {}

  register(router: Router): void {
    router
      .add('POST', `${p}/login`, { public: 'signing in is how a user gets a credential' }, (c) => this.login(c))
      .add('GET', `${p}/whoami`, { signedIn: true }, (c) => this.whoami(c))
      .add('GET', `${p}/users`, { permission: 'access.read' }, async (c) => sendJson(c.res, 200, this.cache.list('user').map((u) => this.userView(u)).sort(byName)))
      .add('POST', `${p}/users`, { permission: 'access.write' }, (c) => this.createUser(c))
      .add('GET', `${p}/users/:name`, { permission: 'access.read' }, async (c) => sendJson(c.res, 200, this.userView(this.user(c.params.name))))
      .add('DELETE', `${p}/users/:name`, { permission: 'access.write' }, (c) => this.removeUser(c))
      .add('POST', `${p}/users/:name/password`, { signedIn: true }, (c) => this.setPassword(c))
      .add('GET', `${p}/teams`, { permission: 'access.read' }, async (c) => sendJson(c.res, 200, this.cache.list('team').map(teamView).sort(byName)))
      .add('POST', `${p}/teams`, { permission: 'access.write' }, (c) => this.createTeam(c))
      .add('GET', `${p}/teams/:name`, { permission: 'access.read' }, async (c) => sendJson(c.res, 200, teamView(this.team(c.params.name))))
      .add('DELETE', `${p}/teams/:name`, { permission: 'access.write' }, (c) => this.removeTeam(c))
      .add('POST', `${p}/teams/:name/members`, { permission: 'access.write' }, (c) => this.changeMembers(c))
      .add('GET', `${p}/tokens`, { signedIn: true }, (c) => this.listTokens(c))
      .add('POST', `${p}/tokens`, { signedIn: true }, (c) => this.createToken(c))
      .add('DELETE', `${p}/tokens/:id`, { signedIn: true }, (c) => this.revokeToken(c))
      .add('GET', `${p}/grants`, { permission: 'access.read' }, (c) => this.listGrants(c))
      .add('POST', `${p}/grants`, { permission: 'access.write' }, (c) => this.createGrant(c))
      .add('DELETE', `${p}/grants/:id`, { permission: 'access.write' }, (c) => this.removeGrant(c))
      .add('GET', `${p}/projects`, { permission: 'service.read' }, (c) => this.listProjects(c));
  }

  private get cache(): Cache {
    return this.deps.cache;
  }

  // ------------------------------------------------------------ sign-in

  private async login(c: RequestContext): Promise<void> {
    const parsed = loginSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'login request');
    const { user, password } = parsed.data;
    c.audit.user = user;
    const now = this.deps.clock.now();
    const throttled = this.loginFailures.get(user);
    if (throttled && throttled.until > now) {
      throw new ShoalError('resource_exhausted', `too many failed sign-ins for '${user}': try again in ${Math.ceil((throttled.until - now) / 1000)} s`);
    }
    const u = this.cache.get('user', user);
    // Hash even for an unknown user, so the answer's timing does not tell which users exist.
    const ok = await verifyPassword(password, u?.passwordHash ?? UNKNOWN_USER_HASH);
    if (!u?.passwordHash || !ok) {
      this.failedLogin(user, now);
      throw new ShoalError('unauthenticated', 'invalid user name or password');
    }
    this.loginFailures.delete(user);
    const expiresAt = new Date(this.deps.clock.now() + LOGIN_TOKEN_TTL_MS).toISOString();
    const { text } = await this.storeToken(u.id, 'login', expiresAt, c);
    c.audit.rules.push('password');
    const body: LoginResponse = { token: text, user: u.id, expiresAt };
    sendJson(c.res, 200, body);
  }

  private failedLogin(user: string, now: number): void {
    const count = (this.loginFailures.get(user)?.count ?? 0) + 1;
    if (this.loginFailures.size >= MAX_THROTTLED_NAMES) this.loginFailures.delete(this.loginFailures.keys().next().value ?? '');
    const until = count < FREE_LOGIN_FAILURES ? 0 : now + Math.min(MAX_LOGIN_LOCK_MS, 1000 * 2 ** (count - FREE_LOGIN_FAILURES));
    this.loginFailures.set(user, { count, until });
  }

  private async whoami(c: RequestContext): Promise<void> {
    const body: WhoAmIResponse = { user: c.who.user, teams: c.who.teams, grants: c.who.grants.map(grantView) };
    sendJson(c.res, 200, body);
  }

  // ------------------------------------------------------------ users

  private user(name: string | undefined): User {
    const u = this.cache.get('user', name ?? '');
    if (!u) throw notFound(`user '${name ?? ''}'`);
    return u;
  }

  private userView(u: User): UserView {
    const teams = this.cache.list('team').filter((t) => t.members.includes(u.id)).map((t) => t.id).sort();
    return { name: u.id, hasPassword: u.passwordHash !== undefined, teams, createdAt: u.meta.createdAt };
  }

  private async createUser(c: RequestContext): Promise<void> {
    const parsed = userCreateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'user');
    const { name, password } = parsed.data;
    c.audit.target = `user/${name}`;
    if (name === ADMIN_USER || name === 'anonymous') throw invalid('name', `'${name}' is reserved (the cluster's admin token acts as '${ADMIN_USER}')`);
    const passwordHash = password === undefined ? undefined : await hashPassword(password);
    const created = await this.deps.writer.retryOnConflict(async () => {
      if (this.cache.get('user', name)) throw new ShoalError('already_exists', `user '${name}' already exists`);
      const u: User = { kind: 'user', id: name, meta: this.newMeta(), ...(passwordHash ? { passwordHash } : {}) };
      return (await this.deps.writer.commit([{ op: 'create', object: u }], c))[0] as User;
    });
    this.deps.logger.info('user created', { user: name });
    sendJson(c.res, 201, this.userView(created));
  }

  /** Removing a user also revokes their tokens, removes their grants and takes them out of their teams, at once. */
  private async removeUser(c: RequestContext): Promise<void> {
    const name = c.params.name ?? '';
    c.audit.target = `user/${name}`;
    await this.deps.writer.retryOnConflict(async () => {
      const u = this.user(name);
      const ops: Op[] = [{ op: 'delete', kind: 'user', id: u.id, version: u.meta.version }];
      for (const t of this.cache.list('token')) if (t.user === u.id) ops.push({ op: 'delete', kind: 'token', id: t.id, version: t.meta.version });
      for (const g of this.cache.list('grant')) if ('user' in g.subject && g.subject.user === u.id) ops.push({ op: 'delete', kind: 'grant', id: g.id, version: g.meta.version });
      for (const t of this.cache.list('team')) if (t.members.includes(u.id)) ops.push({ op: 'update', object: { ...t, members: t.members.filter((m) => m !== u.id) } });
      await this.deps.writer.commit(ops, c);
    });
    this.deps.logger.info('user removed', { user: name });
    sendJson(c.res, 200, { name });
  }

  /** A user sets their own password (sending the current one, if they have one); an admin sets anyone's. */
  private async setPassword(c: RequestContext): Promise<void> {
    const parsed = passwordSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'password change');
    const name = c.params.name ?? '';
    c.audit.target = `user/${name}`;
    const self = name === c.who.user;
    if (!self) this.require(c, 'access.write');
    const u = this.user(name);
    if (self && u.passwordHash !== undefined) {
      if (!(await verifyPassword(parsed.data.currentPassword ?? '', u.passwordHash))) throw new ShoalError('permission_denied', 'the current password is wrong', { violations: [{ field: 'currentPassword', reason: 'does not match' }] });
    }
    const passwordHash = await hashPassword(parsed.data.password);
    await this.deps.writer.retryOnConflict(async () => {
      const cur = this.user(name);
      await this.deps.writer.commit([{ op: 'update', object: { ...cur, passwordHash } }], c);
    });
    this.deps.logger.info('password changed', { user: name });
    sendJson(c.res, 200, { name });
  }

  // ------------------------------------------------------------ teams

  private team(name: string | undefined): Team {
    const t = this.cache.get('team', name ?? '');
    if (!t) throw notFound(`team '${name ?? ''}'`);
    return t;
  }

  private requireUsers(names: readonly string[], field: string): void {
    const missing = names.filter((n) => !this.cache.get('user', n));
    if (missing.length > 0) throw invalid(field, `no such user: ${missing.join(', ')}`);
  }

  private async createTeam(c: RequestContext): Promise<void> {
    const parsed = teamCreateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'team');
    const { name, members } = parsed.data;
    c.audit.target = `team/${name}`;
    const created = await this.deps.writer.retryOnConflict(async () => {
      if (this.cache.get('team', name)) throw new ShoalError('already_exists', `team '${name}' already exists`);
      this.requireUsers(members, 'members');
      const t: Team = { kind: 'team', id: name, meta: this.newMeta(), members: [...new Set(members)].sort() };
      return (await this.deps.writer.commit([{ op: 'create', object: t }], c))[0] as Team;
    });
    this.deps.logger.info('team created', { team: name });
    sendJson(c.res, 201, teamView(created));
  }

  private async removeTeam(c: RequestContext): Promise<void> {
    const name = c.params.name ?? '';
    c.audit.target = `team/${name}`;
    await this.deps.writer.retryOnConflict(async () => {
      const t = this.team(name);
      const ops: Op[] = [{ op: 'delete', kind: 'team', id: t.id, version: t.meta.version }];
      for (const g of this.cache.list('grant')) if ('team' in g.subject && g.subject.team === t.id) ops.push({ op: 'delete', kind: 'grant', id: g.id, version: g.meta.version });
      await this.deps.writer.commit(ops, c);
    });
    this.deps.logger.info('team removed', { team: name });
    sendJson(c.res, 200, { name });
  }

  private async changeMembers(c: RequestContext): Promise<void> {
    const parsed = teamMembersSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'team members');
    const { add, remove } = parsed.data;
    c.audit.target = `team/${c.params.name ?? ''}`;
    this.requireUsers(add, 'add');
    const updated = await this.deps.writer.retryOnConflict(async () => {
      const t = this.team(c.params.name);
      const members = [...new Set([...t.members, ...add])].filter((m) => !remove.includes(m)).sort();
      return (await this.deps.writer.commit([{ op: 'update', object: { ...t, members } }], c))[0] as Team;
    });
    sendJson(c.res, 200, teamView(updated));
  }

  // ------------------------------------------------------------ tokens

  /** Whose tokens a request is about: the caller's own, or (with the permission) another user's. */
  private tokenOwner(c: RequestContext, user: string | undefined, permission: Permission): string {
    const owner = user ?? c.who.user;
    if (owner !== c.who.user) this.require(c, permission);
    if (owner === ADMIN_USER && c.who.superuser) throw invalid('user', `the '${ADMIN_USER}' token is the cluster's own credential; create a user for API tokens (shoal user create)`);
    return owner;
  }

  private async listTokens(c: RequestContext): Promise<void> {
    const owner = c.query.get('user') ?? undefined;
    const all = owner === undefined && authorize(c.who, 'access.read').allowed;
    const user = all ? undefined : this.tokenOwner(c, owner, 'access.read');
    const rows = this.cache
      .list('token')
      .filter((t) => user === undefined || t.user === user)
      .map(tokenView)
      .sort((a, b) => a.user.localeCompare(b.user) || a.createdAt.localeCompare(b.createdAt));
    sendJson(c.res, 200, rows);
  }

  private async createToken(c: RequestContext): Promise<void> {
    const parsed = tokenCreateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'token request');
    const owner = this.tokenOwner(c, parsed.data.user, 'access.write');
    c.audit.target = `user/${owner}`;
    this.user(owner);
    const { expiresInMs, description } = parsed.data;
    const expiresAt = expiresInMs === undefined ? undefined : new Date(this.deps.clock.now() + expiresInMs).toISOString();
    const { token, text } = await this.storeToken(owner, description, expiresAt, c);
    this.deps.logger.info('token created', { user: owner, token: token.id });
    const body: TokenCreateResponse = { ...tokenView(token), token: text };
    sendJson(c.res, 201, body);
  }

  private async storeToken(user: string, description: string, expiresAt: string | undefined, from: WriteOrigin): Promise<{ token: ApiToken; text: string }> {
    const { id, digest, text } = newApiToken();
    // Expired tokens of the user go in the same write, so sign-ins do not pile up tokens.
    const stale: Op[] = this.cache
      .list('token')
      .filter((t) => t.user === user && expired(t, this.deps.clock.now()))
      .map((t) => ({ op: 'delete', kind: 'token', id: t.id, version: t.meta.version }));
    const token: ApiToken = { kind: 'token', id, meta: this.newMeta(), user, digest, description, ...(expiresAt ? { expiresAt } : {}) };
    await this.deps.writer.commit([{ op: 'create', object: token }, ...stale], from);
    return { token, text };
  }

  private async revokeToken(c: RequestContext): Promise<void> {
    const id = c.params.id ?? '';
    c.audit.target = `token/${id}`;
    const t = this.cache.get('token', id);
    // Another user's token is "not found" unless the caller may manage tokens: ids are not confirmed to strangers.
    if (!t || (t.user !== c.who.user && !authorize(c.who, 'access.write').allowed)) throw notFound(`token '${id}'`);
    await this.deps.writer.commit([{ op: 'delete', kind: 'token', id: t.id, version: t.meta.version }], c);
    this.deps.logger.info('token revoked', { user: t.user, token: t.id });
    sendJson(c.res, 200, { id });
  }

  // ------------------------------------------------------------ grants and projects

  private async listGrants(c: RequestContext): Promise<void> {
    const user = c.query.get('user');
    const team = c.query.get('team');
    const project = c.query.get('project');
    const rows = this.cache
      .list('grant')
      .filter((g) => (user === null || ('user' in g.subject && g.subject.user === user)) && (team === null || ('team' in g.subject && g.subject.team === team)))
      .filter((g) => project === null || ('project' in g.scope && g.scope.project === project))
      .map(grantView)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    sendJson(c.res, 200, rows);
  }

  private async createGrant(c: RequestContext): Promise<void> {
    const parsed = grantCreateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'grant');
    const g = parsed.data;
    const subject: Grant['subject'] = g.user !== undefined ? { user: g.user } : { team: g.team ?? '' };
    const scope: Grant['scope'] = g.project !== undefined ? { project: g.project } : { cluster: true };
    const target = 'user' in subject ? `user/${subject.user}` : `team/${subject.team}`;
    c.audit.target = target;
    if ('user' in subject) this.requireUsers([subject.user], 'user');
    else this.team(subject.team);
    const created = await this.deps.writer.retryOnConflict(async () => {
      const same = this.cache.list('grant').find((x) => sameGrant(x, subject, g.role, scope));
      if (same) throw new ShoalError('already_exists', `${target} already has ${describeGrant(same)} (grant ${same.id})`);
      const grant: Grant = { kind: 'grant', id: this.deps.newId(), meta: this.newMeta(), subject, role: g.role, scope };
      return (await this.deps.writer.commit([{ op: 'create', object: grant }], c))[0] as Grant;
    });
    this.deps.logger.info('grant added', { grant: created.id, role: created.role });
    sendJson(c.res, 201, grantView(created));
  }

  private async removeGrant(c: RequestContext): Promise<void> {
    const id = c.params.id ?? '';
    c.audit.target = `grant/${id}`;
    const g = this.cache.get('grant', id);
    if (!g) throw notFound(`grant '${id}'`);
    await this.deps.writer.commit([{ op: 'delete', kind: 'grant', id: g.id, version: g.meta.version }], c);
    this.deps.logger.info('grant removed', { grant: id });
    sendJson(c.res, 200, { id });
  }

  /** Projects are implicit: named by services and grants. A user sees those they may read services in. */
  private async listProjects(c: RequestContext): Promise<void> {
    const counts = new Map<string, ProjectView>();
    const row = (name: string): ProjectView => {
      let v = counts.get(name);
      if (!v) counts.set(name, (v = { name, services: 0, grants: 0 }));
      return v;
    };
    row(DEFAULT_PROJECT);
    for (const s of this.cache.list('service')) row(projectOf(s.spec)).services++;
    for (const g of this.cache.list('grant')) if ('project' in g.scope) row(g.scope.project).grants++;
    const allowed = projectsAllowed(c.who, 'service.read');
    sendJson(c.res, 200, [...counts.values()].filter((v) => allowed === 'all' || allowed.has(v.name)).sort(byName));
  }

  // ------------------------------------------------------------ helpers

  private require(c: RequestContext, permission: Permission): void {
    const d = authorize(c.who, permission);
    if (!d.allowed) throw new ShoalError('permission_denied', d.rule);
    c.audit.rules.push(d.rule);
  }

  private newMeta(): User['meta'] {
    const iso = isoNow(this.deps.clock);
    return { version: 0, createdAt: iso, updatedAt: iso };
  }
}

/** A fixed scrypt hash of a random password, verified against when the user does not exist. */
const UNKNOWN_USER_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

const byName = <T extends { name: string }>(a: T, b: T): number => a.name.localeCompare(b.name);

const teamView = (t: Team): TeamView => ({ name: t.id, members: t.members, createdAt: t.meta.createdAt });

const tokenView = (t: ApiToken): TokenView => ({ id: t.id, user: t.user, description: t.description, createdAt: t.meta.createdAt, ...(t.expiresAt ? { expiresAt: t.expiresAt } : {}) });

export const grantView = (g: Grant): GrantView => ({ id: g.id, subject: g.subject, role: g.role, scope: g.scope, createdAt: g.meta.createdAt });

const sameGrant = (g: Grant, subject: Grant['subject'], role: Grant['role'], scope: Grant['scope']): boolean =>
  g.role === role && JSON.stringify(g.subject) === JSON.stringify(subject) && JSON.stringify(g.scope) === JSON.stringify(scope);
