// Who may do what: users, teams, API tokens, grants of roles, declarative policies, and the audit log of decisions.

import type { Meta, ServiceSpec } from './objects.js';

/** The built-in principal of the admin tokens `shoal init` and each manager write to their CLI context. */
export const ADMIN_USER = 'admin';

/** The project of a service created without one. */
export const DEFAULT_PROJECT = 'default';

/** Names of users, teams, projects and policies: lower-case DNS labels, so they are safe in URLs and messages. */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface User {
  kind: 'user';
  /** The user's name. */
  id: string;
  meta: Meta;
  /** scrypt hash (`scrypt$N$r$p$salt$hash`, base64); absent: the user signs in with API tokens only. */
  passwordHash?: string;
}

export interface Team {
  kind: 'team';
  /** The team's name. */
  id: string;
  meta: Meta;
  /** User names, sorted. */
  members: string[];
}

/** An API token: the secret is shown once at creation; only its SHA-256 digest is stored. */
export interface ApiToken {
  kind: 'token';
  /** Public part of the token (`shoal_<id>_<secret>`), used to find it. */
  id: string;
  meta: Meta;
  /** The user the token acts as. */
  user: string;
  /** SHA-256 (hex) of the secret part. */
  digest: string;
  description: string;
  /** ISO time after which the token is refused; absent: it does not expire. */
  expiresAt?: string;
}

/**
 * Built-in roles.
 * - admin: everything, cluster-wide;
 * - developer: full control of services in the granted projects (create, update, scale, rollback, remove, logs);
 * - provisioner: deploys and removes from templates only, scales within a template's bounds; no raw specs;
 * - viewer: read only, no secrets and no logs.
 */
export type Role = 'admin' | 'developer' | 'provisioner' | 'viewer';
export const ROLES: readonly Role[] = ['admin', 'developer', 'provisioner', 'viewer'];

export type GrantSubject = { user: string } | { team: string };
/** Where a grant applies: the whole cluster, or one project's objects. */
export type GrantScope = { cluster: true } | { project: string };

export interface Grant {
  kind: 'grant';
  id: string;
  meta: Meta;
  subject: GrantSubject;
  role: Role;
  scope: GrantScope;
}

/** The write operations policies match on. `deploy` is a stack deploy or a template provisioning. */
export type PolicyOperation = 'create' | 'update' | 'scale' | 'rollback' | 'remove' | 'deploy';
export const POLICY_OPERATIONS: readonly PolicyOperation[] = ['create', 'update', 'scale', 'rollback', 'remove', 'deploy'];

/**
 * deny: refuse the request with the policy's name and message; warn: allow it and return the message to the caller;
 * audit: allow it and only record the violation in the audit log.
 */
export type PolicyAction = 'deny' | 'warn' | 'audit';

/** The policy document (`kind: Policy`), a public interface: extend it, never rename a field. */
export interface PolicyDocument {
  kind: 'Policy';
  name: string;
  description?: string;
  /** Which requests the policy applies to; an absent field matches everything. */
  match: {
    operations?: PolicyOperation[];
    projects?: string[];
    /** Service name globs. */
    services?: string[];
    /** Every label must be present with this value. */
    labels?: Record<string, string>;
    /** Image globs. */
    images?: string[];
  };
  /** CEL expressions over {request, object, oldObject, params}; false is a violation. */
  validations: { expression: string; message: string }[];
  action: PolicyAction;
  params?: Record<string, unknown>;
}

export interface Policy {
  kind: 'policy';
  /** The policy's name. */
  id: string;
  meta: Meta;
  document: PolicyDocument;
}

/** What became of a write request: allowed; denied by a grant or a policy; failed for another reason (bad input, a conflict); violation: an existing object a newly applied policy flags. */
export type AuditOutcome = 'allowed' | 'denied' | 'failed' | 'violation';

/** One entry of the audit log: who asked for what, when, and what was decided by which rule. */
export interface AuditEvent {
  kind: 'audit';
  /** Time-ordered: the log lists in id order. */
  id: string;
  meta: Meta;
  /** ISO time of the decision. */
  time: string;
  user: string;
  /** What was asked, e.g. `service.scale`, `user.create`, `policy.apply`, `login`. */
  action: string;
  /** The object acted on, e.g. `service/latte`; empty when none. */
  target: string;
  project?: string;
  outcome: AuditOutcome;
  /** The rule that decided: `role developer on project default`, `policy latte-deployers`, … */
  rule: string;
  message: string;
  /** Messages of warn and audit policies that matched and failed. */
  warnings?: string[];
  audits?: string[];
}
export const projectOf = (spec: { project?: string }): string => spec.project ?? DEFAULT_PROJECT;

/** The label a service deployed from a template carries: the template's name. */
export const TEMPLATE_LABEL = 'shoal.template';

/**
 * A service recipe an admin makes for provisioners: they deploy it by name into the template's project, choosing
 * only a name and a replica count within bounds — never a raw spec.
 */
export interface Template {
  kind: 'template';
  /** The template's name. */
  id: string;
  meta: Meta;
  description: string;
  project: string;
  replicas: { min: number; max: number; default: number };
  /** The service spec of every deployment, but its name, project and replica count. */
  service: Omit<ServiceSpec, 'name' | 'project' | 'mode'>;
}
