// The authorization table: every API route has a row in docs/authorization.md with its rule and, per role, whether
// the role may call it — and the code agrees. A new route without a row fails here.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Grant, Role } from '../core/index.js';
import { authorize, type Principal } from '../policy/authorize.js';
import type { RouteAccess } from './http.js';
import { Api, type ApiDeps } from './server.js';

/** The columns of the table: who asks. Project roles are granted on project p1, where the route's object lives. */
export const TABLE_SUBJECTS: { column: string; role?: Role; scope?: Grant['scope'] }[] = [
  { column: 'admin', role: 'admin', scope: { cluster: true } },
  { column: 'developer', role: 'developer', scope: { project: 'p1' } },
  { column: 'provisioner', role: 'provisioner', scope: { project: 'p1' } },
  { column: 'viewer', role: 'viewer', scope: { project: 'p1' } },
  { column: 'cluster viewer', role: 'viewer', scope: { cluster: true } },
  { column: 'no grant' },
];

export const ruleText = (a: RouteAccess): string => ('public' in a ? 'public' : 'signedIn' in a ? 'signed in' : 'or' in a ? `${a.permission} or ${a.or}` : a.permission);

export interface TableRow {
  method: string;
  path: string;
  rule: string;
  cells: Record<string, 'allow' | 'deny'>;
}

/** The rows of the table in docs/authorization.md (the first table whose header starts with Method). */
export const readAuthorizationTable = (path: string): TableRow[] => {
  const lines = readFileSync(path, 'utf8').split('\n');
  const start = lines.findIndex((l) => /^\|\s*Method\s*\|/.test(l));
  assert.ok(start >= 0, `${path} has no table starting with | Method |`);
  const cellsOf = (l: string): string[] => l.split('|').slice(1, -1).map((x) => x.trim().replace(/`/g, ''));
  const header = cellsOf(lines[start] ?? '');
  const rows: TableRow[] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith('|')) break;
    const c = cellsOf(l);
    const cells: TableRow['cells'] = {};
    header.slice(3).forEach((h, i) => (cells[h] = c[i + 3] === 'allow' ? 'allow' : 'deny'));
    rows.push({ method: c[0] ?? '', path: c[1] ?? '', rule: c[2] ?? '', cells });
  }
  return rows;
};

const principal = (s: (typeof TABLE_SUBJECTS)[number]): Principal => {
  const grants: Grant[] = s.role && s.scope ? [{ kind: 'grant', id: 'g', meta: { version: 1, createdAt: '', updatedAt: '' }, subject: { user: 'u' }, role: s.role, scope: s.scope }] : [];
  return { user: 'u', teams: [], grants, superuser: false };
};

/** What the route's rule decides for a subject, on an object in project p1. */
const decide = (a: RouteAccess, s: (typeof TABLE_SUBJECTS)[number]): 'allow' | 'deny' => {
  if (!('permission' in a)) return 'allow';
  const project = a.project ? 'p1' : undefined;
  const any = [a.permission, ...('or' in a ? [a.or] : [])].some((p) => authorize(principal(s), p, project).allowed);
  return any ? 'allow' : 'deny';
};

/** The routes as the API declares them; listing them needs no running manager. */
export const declaredRoutes = (): ReturnType<Api['routes']> =>
  new Api({ ca: { certPem: '', keyPem: '' }, cache: { subscribe: () => () => undefined } } as unknown as ApiDeps).routes();

test('docs/authorization.md lists every API route, with the rule the code enforces and each role\'s outcome', () => {
  const table = readAuthorizationTable('docs/authorization.md');
  const routes = declaredRoutes();
  const key = (m: string, p: string): string => `${m} ${p}`;
  assert.deepEqual(table.map((r) => key(r.method, r.path)).sort(), routes.map((r) => key(r.method, r.pattern)).sort(), 'the table and the routes differ');
  for (const r of routes) {
    const row = table.find((x) => x.method === r.method && x.path === r.pattern);
    assert.ok(row);
    assert.equal(row.rule, ruleText(r.access), `${key(r.method, r.pattern)}: rule`);
    for (const s of TABLE_SUBJECTS) assert.equal(row.cells[s.column], decide(r.access, s), `${key(r.method, r.pattern)}: ${s.column}`);
  }
});
