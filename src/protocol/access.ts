// Wire shapes of the access API: sign-in, users, teams, API tokens, grants, projects, policies and the audit log.

import { z } from 'zod';
import { NAME_PATTERN, ROLES, type AuditEvent, type GrantScope, type GrantSubject, type Role } from '../core/index.js';

const name = (what: string) => z.string().regex(NAME_PATTERN, `${what} names are lower-case letters, digits and - (at most 63, not starting or ending with -)`);
/** Passwords: long enough to resist guessing, short enough that hashing them is bounded. */
const password = z.string().min(8, 'a password has at least 8 characters').max(1024);

/** `POST /v1/login` (no credentials needed): a user's password for a session token. */
export const loginSchema = z.object({ user: name('user'), password: z.string().min(1).max(1024) }).strict();
export type LoginRequest = z.input<typeof loginSchema>;
export interface LoginResponse {
  token: string;
  user: string;
  expiresAt: string;
}

/** `GET /v1/whoami`: who the credential is, and what it may do. */
export interface WhoAmIResponse {
  user: string;
  teams: string[];
  grants: GrantView[];
}

export const userCreateSchema = z.object({ name: name('user'), password: password.optional() }).strict();
export type UserCreateRequest = z.input<typeof userCreateSchema>;
/** `POST /v1/users/:name/password`: a user changing their own password sends the current one; an admin need not. */
export const passwordSchema = z.object({ password, currentPassword: z.string().max(1024).optional() }).strict();
export type PasswordRequest = z.input<typeof passwordSchema>;
export interface UserView {
  name: string;
  hasPassword: boolean;
  teams: string[];
  createdAt: string;
}

export const teamCreateSchema = z.object({ name: name('team'), members: z.array(name('user')).max(10_000).default([]) }).strict();
export type TeamCreateRequest = z.input<typeof teamCreateSchema>;
export const teamMembersSchema = z.object({ add: z.array(name('user')).max(10_000).default([]), remove: z.array(name('user')).max(10_000).default([]) }).strict();
export type TeamMembersRequest = z.input<typeof teamMembersSchema>;
export interface TeamView {
  name: string;
  members: string[];
  createdAt: string;
}

/** `POST /v1/tokens`: a token for yourself, or (admin) for `user`. */
export const tokenCreateSchema = z
  .object({ user: name('user').optional(), description: z.string().max(200).default(''), expiresInMs: z.number().int().positive().max(10 * 365 * 86_400_000).optional() })
  .strict();
export type TokenCreateRequest = z.input<typeof tokenCreateSchema>;
export interface TokenView {
  id: string;
  user: string;
  description: string;
  createdAt: string;
  expiresAt?: string;
}
/** The only time the secret is shown. */
export interface TokenCreateResponse extends TokenView {
  token: string;
}

/** `POST /v1/grants`: a role to a user or a team, on the cluster or one project. */
export const grantCreateSchema = z
  .object({
    user: name('user').optional(),
    team: name('team').optional(),
    role: z.enum(ROLES as [Role, ...Role[]]),
    project: name('project').optional(),
    cluster: z.boolean().optional(),
  })
  .strict()
  .refine((g) => (g.user === undefined) !== (g.team === undefined), { message: 'set exactly one of user or team', path: ['user'] })
  .refine((g) => (g.project === undefined) !== (g.cluster !== true), { message: 'set exactly one of project or cluster', path: ['project'] })
  .refine((g) => g.role !== 'admin' || g.cluster === true, { message: 'the admin role is cluster-wide: grant it with cluster, not a project', path: ['role'] });
export type GrantCreateRequest = z.input<typeof grantCreateSchema>;
export interface GrantView {
  id: string;
  subject: GrantSubject;
  role: Role;
  scope: GrantScope;
  createdAt: string;
}

export interface ProjectView {
  name: string;
  services: number;
  grants: number;
}

/** `POST /v1/policies` (apply) and `POST /v1/policies/test` (dry run): one YAML file, one or more documents. */
export const policySourceSchema = z.object({ source: z.string().min(1).max(1024 * 1024) }).strict();
export type PolicySourceRequest = z.input<typeof policySourceSchema>;
export interface PolicyApplyResult {
  name: string;
  version: number;
  result: 'created' | 'updated' | 'unchanged';
}
/** One policy against one existing service in a dry run. */
export interface PolicyTestResult {
  policy: string;
  service: string;
  project: string;
  /** pass: every validation holds; or the policy's action had it been enforced. */
  outcome: 'pass' | 'deny' | 'warn' | 'audit';
  messages: string[];
}

export type AuditEntry = Omit<AuditEvent, 'kind' | 'meta'>;

/** The header carrying the messages of warn policies a write matched (URI-encoded JSON array of strings). */
export const WARNINGS_HEADER = 'shoal-warnings';
