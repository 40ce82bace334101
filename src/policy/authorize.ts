// Role-based access: which role grants which permission, and whether a principal's grants allow an action — pure.

import { ADMIN_USER, type Grant, type Role } from '../core/index.js';

/**
 * Every action the API authorizes, by where a grant must apply to give it:
 * - project: one project's objects, given by a grant on that project or on the cluster;
 * - cluster: cluster-wide objects (nodes, users, …), given only by a grant on the cluster;
 * - any: given by a grant anywhere (reading the policies every write is checked against).
 */
export const PERMISSION_SCOPES = {
  'service.read': 'project',
  'service.create': 'project',
  'service.update': 'project',
  'service.scale': 'project',
  'service.rollback': 'project',
  'service.remove': 'project',
  'service.logs': 'project',
  'cluster.read': 'cluster',
  'cluster.write': 'cluster',
  'node.read': 'cluster',
  'node.write': 'cluster',
  'template.read': 'any',
  'template.write': 'cluster',
  'template.deploy': 'project',
  'template.scale': 'project',
  'template.remove': 'project',
  'policy.read': 'any',
  'policy.write': 'cluster',
  'access.read': 'cluster',
  'access.write': 'cluster',
  'audit.read': 'cluster',
} as const satisfies Record<string, 'project' | 'cluster' | 'any'>;
export type Permission = keyof typeof PERMISSION_SCOPES;
export type ProjectPermission = { [P in Permission]: (typeof PERMISSION_SCOPES)[P] extends 'project' ? P : never }[Permission];
export const PERMISSIONS = Object.keys(PERMISSION_SCOPES) as Permission[];

/** What each built-in role may do. The admin role has every permission. */
export const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  admin: PERMISSIONS,
  developer: [
    'service.read',
    'service.create',
    'service.update',
    'service.scale',
    'service.rollback',
    'service.remove',
    'service.logs',
    'template.read',
    'template.deploy',
    'template.scale',
    'template.remove',
    'policy.read',
  ],
  // Provisioners act through templates only: deploy one, scale its services within its bounds, remove them. Raw
  // services they only read.
  provisioner: ['service.read', 'template.read', 'template.deploy', 'template.scale', 'template.remove', 'policy.read'],
  viewer: ['service.read', 'cluster.read', 'node.read', 'template.read', 'policy.read'],
};

/** Who is asking: a user, the teams they are in, and the grants that apply to them (their own and their teams'). */
export interface Principal {
  user: string;
  teams: string[];
  grants: Grant[];
  /** The admin tokens of the cluster (`shoal init`): the built-in admin, allowed everything. */
  superuser: boolean;
}

export interface AuthzDecision {
  allowed: boolean;
  /** The rule that allowed, or why nothing did. */
  rule: string;
}

/** The grants of a user, directly or through their teams. */
export const grantsOf = (user: string, teams: readonly string[], grants: readonly Grant[]): Grant[] =>
  grants.filter((g) => ('user' in g.subject ? g.subject.user === user : teams.includes(g.subject.team)));

export const describeGrant = (g: Grant): string =>
  `role ${g.role} on ${'cluster' in g.scope ? 'the cluster' : `project ${g.scope.project}`}${'team' in g.subject ? ` (team ${g.subject.team})` : ''}`;

const grantCovers = (g: Grant, permission: Permission, project: string | undefined): boolean => {
  if (!ROLE_PERMISSIONS[g.role].includes(permission)) return false;
  switch (PERMISSION_SCOPES[permission]) {
    case 'any':
      return true;
    case 'cluster':
      return 'cluster' in g.scope;
    case 'project':
      // No project: the permission in some project (a listing, filtered afterwards with projectsAllowed).
      return 'cluster' in g.scope || project === undefined || g.scope.project === project;
  }
};

/** The roles that have a permission, for messages ("it needs developer or admin"). */
const rolesWith = (permission: Permission): Role[] => (Object.keys(ROLE_PERMISSIONS) as Role[]).filter((r) => ROLE_PERMISSIONS[r].includes(permission));

/**
 * Whether `who` may do `permission` — on `project` for a project permission (undefined: in some project, as for a
 * listing that is then filtered with `projectsAllowed`).
 */
export const authorize = (who: Principal, permission: Permission, project?: string): AuthzDecision => {
  if (who.superuser) return { allowed: true, rule: `the ${ADMIN_USER} token` };
  const g = who.grants.find((x) => grantCovers(x, permission, project));
  if (g) return { allowed: true, rule: describeGrant(g) };
  const scope = PERMISSION_SCOPES[permission];
  const where = scope === 'project' ? (project === undefined ? 'in any project' : `in project '${project}'`) : scope === 'cluster' ? 'on the cluster' : '';
  const has = who.grants.length === 0 ? 'no grants' : `grants: ${who.grants.map(describeGrant).join('; ')}`;
  const needs = { project: 'on the project or the cluster', cluster: 'on the cluster', any: 'anywhere' }[scope];
  return { allowed: false, rule: `user '${who.user}' may not ${permission}${where ? ` ${where}` : ''}: it needs ${rolesWith(permission).join(' or ')} ${needs} (${has})` };
};

/** The projects in which `who` has a project permission: `all` through a cluster grant (or as the admin). */
export const projectsAllowed = (who: Principal, permission: ProjectPermission): 'all' | Set<string> => {
  if (who.superuser) return 'all';
  const projects = new Set<string>();
  for (const g of who.grants) {
    if (!ROLE_PERMISSIONS[g.role].includes(permission)) continue;
    if ('cluster' in g.scope) return 'all';
    projects.add(g.scope.project);
  }
  return projects;
};
