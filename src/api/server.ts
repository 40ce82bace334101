// The HTTP/JSON API under /v1: authenticates every request, authorizes it by the route's rule, checks service writes
// against the policies, records every write decision in the audit log, and writes desired state to the store.
//
// Handlers never schedule or reconcile: they write specs and return once the cache has seen the write, so a client
// that reads right after a write sees it. Writes that must not race (unique names) go through one mutex.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { ShoalError, TEMPLATE_LABEL, invalid, notFound, projectOf, taskTemplateChanged, type Cluster, type Node, type Service, type ServiceSpec, type StoredObject, type Task } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { isoNow } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { secretDigest, secretMatches } from '../lib/secrets.js';
import { authorize, projectsAllowed, type Permission } from '../policy/authorize.js';
import { caDigest, formatJoinToken, newJoinSecret, parseJoinToken, signNodeCsr, verifyNodeCertificate } from '../pki/index.js';
import {
  API_PREFIX,
  clusterUpdateSchema,
  joinRequestSchema,
  joinRotateSchema,
  renewRequestSchema,
  type JoinResponse,
  nodeUpdateSchema,
  scaleRequestSchema,
  serviceSpecSchema,
  serviceUpdateSchema,
  type ClusterStatusResponse,
  type RenewResponse,
  type InfoResponse,
  type LogEntry,
  type AuditEntry,
  LEADER_HEADER,
  MANAGERS_HEADER,
  parseHostPort,
} from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { Op, Store } from '../store/store.js';
import { serveEvents, type EventLog } from './events.js';
import { AccessApi } from './access-routes.js';
import { Admission } from './admission.js';
import { AuditLog } from './audit.js';
import { ANONYMOUS, Authenticator } from './authn.js';
import { Router, UNMATCHED_ROUTE, fromZod, holdResponse, queryFlag, readJson, sendError, sendJson, type RequestContext, type RouteAccess, type RouteInfo } from './http.js';
import { PolicyApi } from './policy-routes.js';
import { TemplateApi } from './template-routes.js';
import { StoreWriter, type WriteOrigin } from './writes.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';
import type { ShoalMetrics } from './shoal-metrics.js';
import { parseTimeQuery } from './time-query.js';
import { openApiDocument } from './openapi.js';
import { nodeRow, serviceRow, taskRows } from './views.js';

/** Where the API gets a task's log lines from: the node that runs it (relayed over its session). */
export interface LogSource {
  taskLogs(task: Task, opts: { follow: boolean; tail?: number; since?: number; signal: AbortSignal }): AsyncIterable<{ stream: 'stdout' | 'stderr'; time?: string; line: string }>;
}

/** What the API knows of the managers; the manager's leadership loop keeps it current. */
export interface ManagerView {
  /** Node id of the leading manager, while one is known. */
  leaderId(): string | undefined;
  /** HOST:PORT of every manager, the leader first. */
  addresses(): string[];
}

/** What the API needs to admit nodes: the cluster CA, key included (held by managers only). */
export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

export interface ApiDeps {
  ca: CaMaterial;
  store: Store;
  cache: Cache;
  clock: Clock;
  logger: Logger;
  newId: () => string;
  logs: LogSource;
  /** This manager's cluster events (history since it started, and the live feed). */
  events: EventLog;
  metrics: ShoalMetrics;
  nodeId: string;
  version: string;
  storeName: string;
  managers: ManagerView;
  /** The shared store's URL, handed to managers that join (absent: the embedded store, which cannot be shared). */
  storeUrl?: string;
}

/**
 * The template label says which template a service was deployed from, which lets a provisioner scale and remove it:
 * only `template deploy` sets it, so a raw create or update may not set or change it.
 */
const keepTemplateLabel = (spec: ServiceSpec, old?: ServiceSpec): void => {
  if (spec.labels[TEMPLATE_LABEL] !== old?.labels[TEMPLATE_LABEL]) {
    throw invalid('labels', `label '${TEMPLATE_LABEL}' is set by 'template deploy' only; a service spec may not ${old ? 'change' : 'set'} it`);
  }
};

export class Api {
  private readonly router = new Router();
  private readonly writer: StoreWriter;
  private readonly authn: Authenticator;
  private readonly auditLog: AuditLog;
  private readonly access: AccessApi;
  private readonly policies: PolicyApi;
  private readonly admission: Admission;
  private readonly templates: TemplateApi;

  constructor(private readonly deps: ApiDeps) {
    const p = API_PREFIX;
    const { store, cache, clock, logger, newId } = deps;
    this.writer = new StoreWriter({ store, cache });
    this.authn = new Authenticator({ cache, clock, caPem: deps.ca.certPem, cluster: () => this.cluster() });
    this.auditLog = new AuditLog({ store, clock, logger });
    this.access = new AccessApi({ cache, clock, logger, newId, writer: this.writer, authn: this.authn });
    this.admission = new Admission({ cache, logger, observe: (sec) => deps.metrics.observeAdmission(sec) });
    this.templates = new TemplateApi({ cache, clock, logger, newId, writer: this.writer, admission: this.admission });
    this.policies = new PolicyApi({ cache, clock, logger, writer: this.writer, auditLog: this.auditLog, admission: this.admission });
    const svc = (c: Pick<RequestContext, 'params'>): string => projectOf(this.service(c.params.ref).spec);
    this.router
      .add('GET', `${p}/info`, { signedIn: true }, (c) => this.info(c))
      .add('GET', `${p}/openapi.json`, { signedIn: true }, async (c) => sendJson(c.res, 200, openApiDocument(this.deps.version)))
      .add('GET', `${p}/services`, { permission: 'service.read' }, (c) => this.listServices(c))
      .add('POST', `${p}/services`, { permission: 'service.create' }, (c) => this.createService(c))
      .add('GET', `${p}/services/:ref`, { permission: 'service.read', project: svc }, async (c) => sendJson(c.res, 200, this.service(c.params.ref)))
      .add('DELETE', `${p}/services/:ref`, { permission: 'service.remove', or: 'template.remove', project: svc }, (c) => this.removeService(c))
      .add('POST', `${p}/services/:ref/scale`, { permission: 'service.scale', or: 'template.scale', project: svc }, (c) => this.scaleService(c))
      .add('POST', `${p}/services/:ref/update`, { permission: 'service.update', project: svc }, (c) => this.updateService(c))
      .add('POST', `${p}/services/:ref/rollback`, { permission: 'service.rollback', project: svc }, (c) => this.rollbackService(c))
      .add('GET', `${p}/services/:ref/tasks`, { permission: 'service.read', project: (c) => this.projectOfTasks(c.params.ref) }, (c) => this.serviceTasks(c))
      .add('GET', `${p}/services/:ref/logs`, { permission: 'service.logs', project: (c) => this.projectOfTasks(c.params.ref) }, (c) => this.serviceLogs(c))
      .add('GET', `${p}/tasks/:id`, { permission: 'service.read', project: (c) => this.projectOfTasks(c.params.id) }, async (c) => sendJson(c.res, 200, this.task(c.params.id)))
      .add('GET', `${p}/nodes`, { permission: 'node.read' }, async (c) => sendJson(c.res, 200, this.deps.cache.list('node').sort(byHostname).map((n) => nodeRow(n, this.deps.managers.leaderId()))))
      .add('GET', `${p}/nodes/:ref`, { permission: 'node.read' }, async (c) => sendJson(c.res, 200, this.node(c.params.ref)))
      .add('POST', `${p}/nodes/:ref/update`, { permission: 'node.write' }, (c) => this.updateNode(c))
      .add('DELETE', `${p}/nodes/:ref`, { permission: 'node.write' }, (c) => this.removeNode(c))
      .add('GET', `${p}/cluster`, { permission: 'cluster.read' }, async (c) => sendJson(c.res, 200, this.clusterView()))
      .add('POST', `${p}/cluster/update`, { permission: 'cluster.write' }, (c) => this.updateCluster(c))
      .add('GET', `${p}/cluster/status`, { permission: 'cluster.read' }, (c) => this.clusterStatus(c))
      .add('GET', `${p}/ca`, { public: 'a joining node fetches the CA to check it against its join token' }, async (c) => sendJson(c.res, 200, { ca: this.deps.ca.certPem }))
      .add('POST', `${p}/join`, { public: 'a joining node proves itself with its join token' }, (c) => this.join(c))
      .add('POST', `${p}/renew`, { public: 'a node proves itself with its current certificate on the TLS connection' }, (c) => this.renew(c))
      // Join tokens are credentials: only admins see or rotate them.
      .add('GET', `${p}/join-tokens`, { permission: 'cluster.write' }, async (c) => sendJson(c.res, 200, this.joinTokens()))
      .add('POST', `${p}/join-tokens/rotate`, { permission: 'cluster.write' }, (c) => this.rotateJoinToken(c))
      .add('GET', `${p}/events`, { permission: 'cluster.read' }, (c) => serveEvents(c, this.deps.events, this.deps.clock))
      // Prometheus' conventional path, outside /v1; it needs a bearer token like every API route.
      .add('GET', '/metrics', { permission: 'cluster.read' }, async (c) => {
        c.res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'cache-control': 'no-store' });
        c.res.end(this.deps.metrics.render());
      });
    this.access.register(this.router);
    this.policies.register(this.router);
    this.templates.register(this.router);
  }

  /** Every route with who may call it: the authorization table (docs/authorization.md) is checked against this. */
  routes(): RouteInfo[] {
    return this.router.list();
  }

  /** The request listener for node:http. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const ctl = new AbortController();
    const started = performance.now();
    // Metrics label requests by route pattern, never by path: ids in paths would make a series per object.
    let route = UNMATCHED_ROUTE;
    res.on('close', () => {
      ctl.abort();
      this.deps.metrics.observeRequest(req.method ?? 'GET', route, res.statusCode, (performance.now() - started) / 1000);
    });
    // Every answer tells the client where all managers are, so it can go to another when this one is lost.
    res.setHeader(MANAGERS_HEADER, this.deps.managers.addresses().join(','));
    void this.dispatch(req, res, ctl.signal, (pattern) => (route = pattern)).catch((e: unknown) =>
      sendError(res, e, (err) => this.deps.logger.error('request failed', { method: req.method, url: req.url, error: err })),
    );
  };

  private async dispatch(req: IncomingMessage, res: ServerResponse, signal: AbortSignal, onRoute: (pattern: string) => void): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = this.router.match(req.method ?? 'GET', url.pathname);
    if ('error' in m) {
      // Unknown routes answer only to signed-in callers: a stranger learns nothing of the API.
      this.authn.authenticate(req);
      throw m.error;
    }
    onRoute(m.pattern);
    const who = 'public' in m.access ? ANONYMOUS : this.authn.authenticate(req);
    const c: RequestContext = { req, res, params: m.params, query: url.searchParams, signal, who, audit: { rules: [], warnings: [], audits: [] } };
    if (req.method === 'GET') {
      this.authorizeRoute(c, m.access);
      await m.handler(c);
      return;
    }
    // A write is answered only once the audit log has its decision: a caller never sees a result the log lacks. The
    // entry of a write that is allowed goes in the same commit as the write; the entry of one refused or failed (and
    // of one that wrote nothing), in a commit of its own. A request that fails after its write was committed (its
    // client went away while it waited for the cache) has both: the write allowed, then the request failed.
    const release = holdResponse(res);
    const route = { method: req.method ?? 'POST', pattern: m.pattern, access: m.access };
    const withWrite = { event: () => this.auditLog.event(auditEntry(c, route, undefined)), committed: false };
    c.audit.withWrite = withWrite;
    let failure: Error | undefined;
    try {
      this.authorizeRoute(c, m.access);
      await m.handler(c);
    } catch (e) {
      failure = e instanceof Error ? e : new Error(String(e));
    }
    try {
      if (failure !== undefined || !withWrite.committed) await this.auditLog.record(auditEntry(c, route, failure));
    } catch (e) {
      this.deps.logger.error('audit log write failed', { method: req.method, route: m.pattern, error: String(e) });
    }
    release();
    if (failure !== undefined) throw failure;
  }

  /** Checks the route's rule; a project permission is checked on the project of the object the request names. */
  private authorizeRoute(c: RequestContext, access: RouteAccess): void {
    if (!('permission' in access)) return;
    const project = access.project?.(c);
    if (project !== undefined) c.audit.project = project;
    if ('or' in access && !authorize(c.who, access.permission, project).allowed && authorize(c.who, access.or, project).allowed) {
      this.requirePermission(c, access.or, project);
      c.allowedBy = access.or;
      return;
    }
    this.requirePermission(c, access.permission, project);
    c.allowedBy = access.permission;
  }

  private requirePermission(c: RequestContext, permission: Permission, project?: string): void {
    const d = authorize(c.who, permission, project);
    if (!d.allowed) throw new ShoalError('permission_denied', d.rule);
    c.audit.rules.push(d.rule);
  }

  private cluster(): Cluster {
    const c = this.deps.cache.list('cluster')[0];
    if (!c) throw new ShoalError('unavailable', 'the cluster is not initialized');
    return c;
  }

  // ------------------------------------------------------------ lookups (id, name, or unique id prefix, like docker)

  private service(ref: string | undefined): Service {
    const r = ref ?? '';
    const { cache } = this.deps;
    const byId = cache.get('service', r);
    if (byId) return byId;
    const all = cache.list('service');
    const byName = all.find((s) => s.spec.name === r);
    if (byName) return byName;
    const prefixed = r.length >= 3 ? all.filter((s) => s.id.startsWith(r)) : [];
    if (prefixed.length === 1 && prefixed[0]) return prefixed[0];
    if (prefixed.length > 1) throw new ShoalError('invalid_argument', `service reference '${r}' is ambiguous: it matches ${prefixed.length} service ids`);
    throw notFound(`service '${r}'`);
  }

  private node(ref: string | undefined): Node {
    const r = ref ?? '';
    const all = this.deps.cache.list('node');
    const n = all.find((x) => x.id === r) ?? all.find((x) => x.description.hostname === r);
    if (n) return n;
    const prefixed = r.length >= 3 ? all.filter((x) => x.id.startsWith(r)) : [];
    if (prefixed.length === 1 && prefixed[0]) return prefixed[0];
    throw notFound(`node '${r}'`);
  }

  private task(id: string | undefined): Task {
    const t = this.deps.cache.get('task', id ?? '');
    if (!t) throw notFound(`task '${id ?? ''}'`);
    return t;
  }

  /**
   * The project of what a task route names: a service, or a task (by its service). Tasks of a removed service keep
   * the project they were made in (tasks made before projects existed: only a cluster-wide grant reaches them).
   */
  private projectOfTasks(ref: string | undefined): string {
    const { cache } = this.deps;
    const direct = cache.get('service', ref ?? '') ?? cache.list('service').find((s) => s.spec.name === ref);
    if (direct) return projectOf(direct.spec);
    const task = cache.get('task', ref ?? '') ?? cache.tasksOfService(ref ?? '')[0] ?? this.logTasks(ref)[0];
    if (!task) return NO_PROJECT;
    const service = cache.get('service', task.serviceId);
    return service ? projectOf(service.spec) : (task.project ?? NO_PROJECT);
  }

  /** What `service logs REF` reads, like docker: a service's tasks (id, name, prefix), else one task (id or unique prefix). */
  private logTasks(ref: string | undefined): Task[] {
    try {
      return this.deps.cache.tasksOfService(this.service(ref).id);
    } catch (e) {
      if (!(e instanceof ShoalError && e.code === 'not_found')) throw e;
    }
    const r = ref ?? '';
    const byId = this.deps.cache.get('task', r);
    const found = byId ? [byId] : r.length >= 3 ? this.deps.cache.list('task').filter((t) => t.id.startsWith(r)) : [];
    if (found.length > 1) throw new ShoalError('invalid_argument', `task reference '${r}' is ambiguous: it matches ${found.length} task ids`);
    if (found.length === 0) throw notFound(`service or task '${r}'`);
    return found;
  }

  private nodes(): Map<string, Node> {
    return new Map(this.deps.cache.list('node').map((n) => [n.id, n]));
  }

  // ------------------------------------------------------------ handlers

  private async info(c: RequestContext): Promise<void> {
    const cluster = this.cluster();
    const body: InfoResponse = { clusterId: cluster.id, clusterName: cluster.spec.name, nodeId: this.deps.nodeId, version: this.deps.version, store: this.deps.storeName };
    sendJson(c.res, 200, body);
  }

  private async listServices(c: RequestContext): Promise<void> {
    const { cache } = this.deps;
    const allowed = projectsAllowed(c.who, 'service.read');
    const rows = cache
      .list('service')
      .filter((s) => allowed === 'all' || allowed.has(projectOf(s.spec)))
      .sort((a, b) => a.spec.name.localeCompare(b.spec.name))
      .map((s) => serviceRow(s, cache.taskCounts(s.id)));
    sendJson(c.res, 200, rows);
  }

  private async createService(c: RequestContext): Promise<void> {
    const parsed = serviceSpecSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'service spec');
    const spec: ServiceSpec = parsed.data;
    c.audit.target = `service/${spec.name}`;
    this.requirePermission(c, 'service.create', projectOf(spec));
    c.audit.project = projectOf(spec);
    keepTemplateLabel(spec);
    this.admission.check(c, 'create', spec);
    const service = await this.writer.createService(spec, this.deps.newId(), this.deps.clock, c);
    this.deps.logger.info('service created', { service: spec.name, id: service.id });
    sendJson(c.res, 201, service);
  }

  private async scaleService(c: RequestContext): Promise<void> {
    const parsed = scaleRequestSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'scale request');
    const { replicas, version } = parsed.data;
    const updated = await this.retryOnConflict(async () => {
      const s = this.service(c.params.ref);
      expectVersion(s, version);
      if (!('replicated' in s.spec.mode)) {
        throw new ShoalError('failed_precondition', `cannot scale service '${s.spec.name}': it is global (one task per node)`, { violations: [{ field: 'replicas', reason: 'only replicated services scale' }] });
      }
      const next: Service = { ...s, spec: { ...s.spec, mode: { replicated: { replicas } } } };
      if (c.allowedBy === 'template.scale') this.templates.checkScale(s, replicas);
      this.admission.check(c, 'scale', next.spec, s.spec);
      return (await this.commit([{ op: 'update', object: next }], c))[0] as Service;
    });
    this.deps.logger.info('service scaled', { service: updated.spec.name, replicas });
    sendJson(c.res, 200, updated);
  }

  /**
   * Replaces a service's spec. A changed task template starts a rolling update (the controller replaces the tasks
   * per the update config) and keeps the old spec for `service rollback`; other changes (replicas, labels, update
   * settings) apply at once.
   */
  private async updateService(c: RequestContext): Promise<void> {
    const parsed = serviceUpdateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'service update');
    const { spec, version } = parsed.data;
    const updated = await this.retryOnConflict(async () => {
      const s = this.service(c.params.ref);
      expectVersion(s, version);
      if (spec.name !== s.spec.name) throw invalid('spec.name', `a service cannot be renamed (it is '${s.spec.name}')`);
      if ('global' in spec.mode !== 'global' in s.spec.mode) throw invalid('spec.mode', 'a service cannot change between replicated and global; remove it and create it again');
      // Moving a service to another project needs the right to update services there too.
      if (projectOf(spec) !== projectOf(s.spec)) this.requirePermission(c, 'service.update', projectOf(spec));
      keepTemplateLabel(spec, s.spec);
      this.admission.check(c, 'update', spec, s.spec);
      const next: Service = taskTemplateChanged(s.spec, spec)
        ? { ...s, spec, previousSpec: s.spec, updateStatus: { state: 'updating', startedAt: isoNow(this.deps.clock), message: 'update in progress' } }
        : { ...s, spec };
      return (await this.commit([{ op: 'update', object: next }], c))[0] as Service;
    });
    this.deps.logger.info('service updated', { service: updated.spec.name, update: updated.updateStatus?.state ?? 'none' });
    sendJson(c.res, 200, updated);
  }

  /** Returns a service to its previous spec, replacing its tasks per its rollback config. */
  private async rollbackService(c: RequestContext): Promise<void> {
    const updated = await this.retryOnConflict(async () => {
      const s = this.service(c.params.ref);
      if (!s.previousSpec) throw new ShoalError('failed_precondition', `service '${s.spec.name}' has no previous spec to roll back to (it was never updated)`);
      if (projectOf(s.previousSpec) !== projectOf(s.spec)) this.requirePermission(c, 'service.rollback', projectOf(s.previousSpec));
      this.admission.check(c, 'rollback', s.previousSpec, s.spec);
      const next: Service = { ...s, spec: s.previousSpec, previousSpec: s.spec, updateStatus: { state: 'rollback_started', startedAt: isoNow(this.deps.clock), message: 'rollback requested' } };
      return (await this.commit([{ op: 'update', object: next }], c))[0] as Service;
    });
    this.deps.logger.info('service rolled back', { service: updated.spec.name });
    sendJson(c.res, 200, updated);
  }

  private async removeService(c: RequestContext): Promise<void> {
    const removed = await this.retryOnConflict(async () => {
      const s = this.service(c.params.ref);
      if (c.allowedBy === 'template.remove') this.templates.checkOrigin(s, 'remove');
      this.admission.check(c, 'remove', s.spec, s.spec);
      await this.commit([{ op: 'delete', kind: 'service', id: s.id, version: s.meta.version }], c);
      return s;
    });
    this.deps.logger.info('service removed', { service: removed.spec.name, id: removed.id });
    sendJson(c.res, 200, { id: removed.id, name: removed.spec.name });
  }

  /**
   * Tasks of a service. With `?watch=1` the response is NDJSON: the full list now and again after every change
   * (coalesced), until the client disconnects — what `service create` and `service rm` follow to show progress.
   * A watched service that is removed ends the stream once its last task is gone.
   */
  private async serviceTasks(c: RequestContext): Promise<void> {
    const { cache } = this.deps;
    const ref = c.params.ref ?? '';
    // A removed service's tasks stay visible by its id until the last one is gone (what `service rm` waits for).
    const s = cache.tasksOfService(ref).length > 0 && !cache.get('service', ref) ? { id: ref } : this.service(ref);
    const rows = (): string => JSON.stringify(taskRows(cache.tasksOfService(s.id), this.nodes(), cache.get('service', s.id)));
    if (c.query.get('watch') !== '1' && c.query.get('watch') !== 'true') {
      c.res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
      c.res.end(rows());
      return;
    }
    c.res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
    let last = '';
    const emit = (): boolean => {
      const now = rows();
      if (now !== last) c.res.write(now + '\n');
      last = now;
      // Removed and fully wound down: nothing more will ever change.
      return !cache.get('service', s.id) && cache.tasksOfService(s.id).length === 0;
    };
    if (emit()) {
      c.res.end();
      return;
    }
    await new Promise<void>((resolve) => {
      let scheduled = false;
      const unsubscribe = cache.subscribe((events) => {
        if (scheduled || !events.some((e) => e.id === s.id || (e.object.kind === 'task' && e.object.serviceId === s.id))) return;
        scheduled = true;
        setTimeout(() => {
          scheduled = false;
          if (!c.signal.aborted && emit()) done();
        }, 10);
      });
      const done = (): void => {
        unsubscribe();
        resolve();
      };
      c.signal.addEventListener('abort', done, { once: true });
    });
    c.res.end();
  }

  /** Logs of a service's tasks as NDJSON LogEntry lines, relayed from the nodes that hold the containers. */
  private async serviceLogs(c: RequestContext): Promise<void> {
    const tasks = this.logTasks(c.params.ref).filter((t) => t.status.containerId !== '' && t.nodeId !== '');
    this.requireLeader(c, 'log streams are relayed by the leading manager, which holds the nodes\' sessions');
    const follow = queryFlag(c.query, 'follow');
    const tailText = c.query.get('tail');
    const tail = tailText === null || tailText === 'all' ? undefined : Number(tailText);
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw invalid('tail', `'${tailText}' is not a line count (a whole number or 'all')`);
    const since = parseTimeQuery(c.query.get('since'), this.deps.clock.now(), 'since');
    const nodes = this.nodes();
    c.res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
    await Promise.all(
      tasks.map(async (t) => {
        const node = nodes.get(t.nodeId)?.description.hostname ?? t.nodeId;
        try {
          const opts = { follow, signal: c.signal, ...(tail === undefined ? {} : { tail }), ...(since === undefined ? {} : { since }) };
          for await (const l of this.deps.logs.taskLogs(t, opts)) {
            const entry: LogEntry = { taskId: t.id, serviceName: t.serviceName, slot: t.slot, nodeId: t.nodeId, node, stream: l.stream, line: l.line, ...(l.time === undefined ? {} : { time: l.time }) };
            c.res.write(JSON.stringify(entry) + '\n');
          }
        } catch (e) {
          if (c.signal.aborted) return;
          const line = `error reading logs of task ${t.id}: ${e instanceof Error ? e.message : String(e)}`;
          const entry: LogEntry = { taskId: t.id, serviceName: t.serviceName, slot: t.slot, nodeId: t.nodeId, node, stream: 'stderr', line };
          c.res.write(JSON.stringify(entry) + '\n');
        }
      }),
    );
    c.res.end();
  }

  private async updateNode(c: RequestContext): Promise<void> {
    const parsed = nodeUpdateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'node update');
    const u = parsed.data;
    const updated = await this.retryOnConflict(async () => {
      const n = this.node(c.params.ref);
      const labels = { ...n.spec.labels, ...u.labelAdd };
      for (const k of u.labelRm) delete labels[k];
      const next: Node = { ...n, spec: { ...n.spec, labels, ...(u.availability ? { availability: u.availability } : {}), ...(u.role ? { role: u.role } : {}) } };
      const ops: Op[] = [{ op: 'update', object: next }];
      if (u.role && u.role !== n.spec.role) ops.push(...this.roleChange(n, u.role));
      return (await this.commit(ops, c))[0] as Node;
    });
    this.deps.logger.info('node updated', { nodeId: updated.id, availability: updated.spec.availability, role: updated.spec.role });
    sendJson(c.res, 200, updated);
  }

  /**
   * Checks a promotion or demotion and returns the writes that go with it. Promoting needs a shared store (managers
   * share it); demoting must leave a manager, and revokes the admin tokens the node made as a manager. The node takes
   * up its new role itself when its session tells it (see the dispatcher's welcome).
   */
  private roleChange(n: Node, role: 'manager' | 'worker'): Op[] {
    if (role === 'manager') {
      if (this.deps.storeUrl === undefined) throw new ShoalError('failed_precondition', `cannot promote node ${n.id}: managers share a store, and this cluster runs the embedded SQLite store (start the first manager with --store etcd://…)`);
      if (parseAddress(n.description.address) === undefined) throw new ShoalError('failed_precondition', `cannot promote node ${n.id}: it has no HOST:PORT address to serve on (restart it with --listen-addr or --advertise-addr)`);
      return [];
    }
    const removed = new Set(this.cluster().auth.removedNodeIds);
    const others = this.deps.cache.list('node').filter((m) => m.spec.role === 'manager' && m.id !== n.id && !removed.has(m.id));
    if (others.length === 0) throw new ShoalError('failed_precondition', `cannot demote node ${n.id}: it is the last manager`);
    return this.revokeAdminTokens(n.id);
  }

  /** The cluster update that revokes the admin tokens a manager node made (none: no write). */
  private revokeAdminTokens(nodeId: string): Op[] {
    const cl = this.cluster();
    const owners = cl.auth.adminTokenOwners ?? {};
    const owned = new Set(Object.keys(owners).filter((d) => owners[d] === nodeId));
    if (owned.size === 0) return [];
    const adminTokenOwners = Object.fromEntries(Object.entries(owners).filter(([d]) => !owned.has(d)));
    return [{ op: 'update', object: { ...cl, auth: { ...cl.auth, adminTokenDigests: cl.auth.adminTokenDigests.filter((d) => !owned.has(d)), adminTokenOwners } } }];
  }

  /** Removes a node: its object goes, its id is remembered so its certificate is refused, its tasks move elsewhere. */
  private async removeNode(c: RequestContext): Promise<void> {
    const force = c.query.get('force') === '1' || c.query.get('force') === 'true';
    const removed = await this.retryOnConflict(async () => {
      const n = this.node(c.params.ref);
      if (n.id === this.deps.nodeId) throw new ShoalError('failed_precondition', `cannot remove node ${n.id}: it is the manager serving this request`);
      if (n.status.state === 'ready' && !force) {
        throw new ShoalError('failed_precondition', `node ${n.id} (${n.description.hostname}) is ready; drain it and stop it first, or remove it with --force`);
      }
      if (n.spec.role === 'manager') this.roleChange(n, 'worker');
      // The node's id is refused from now on, and any admin token it made as a manager is revoked.
      const cl = (this.revokeAdminTokens(n.id)[0] as { object: Cluster } | undefined)?.object ?? this.cluster();
      const auth = { ...cl.auth, removedNodeIds: [...new Set([...(cl.auth.removedNodeIds ?? []), n.id])] };
      await this.commit([{ op: 'delete', kind: 'node', id: n.id, version: n.meta.version }, { op: 'update', object: { ...cl, auth } }], c);
      return n;
    });
    this.deps.logger.info('node removed', { nodeId: removed.id, force });
    sendJson(c.res, 200, { id: removed.id });
  }

  /** The cluster object without its credentials (digests are not for clients either). */
  private clusterView(): { id: string; meta: Cluster['meta']; spec: Cluster['spec'] } {
    const { id, meta, spec } = this.cluster();
    return { id, meta, spec };
  }

  private async updateCluster(c: RequestContext): Promise<void> {
    const parsed = clusterUpdateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'cluster update');
    const u = parsed.data;
    await this.retryOnConflict(async () => {
      const cl = this.cluster();
      const spec = {
        ...cl.spec,
        ...(u.heartbeatPeriodMs === undefined ? {} : { heartbeatPeriodMs: u.heartbeatPeriodMs }),
        ...(u.taskHistoryLimit === undefined ? {} : { taskHistoryLimit: u.taskHistoryLimit }),
        ...(u.nodeCertExpiryMs === undefined ? {} : { nodeCertExpiryMs: u.nodeCertExpiryMs }),
      };
      return this.commit([{ op: 'update', object: { ...cl, spec } }], c);
    });
    sendJson(c.res, 200, this.clusterView());
  }

  // ------------------------------------------------------------ joining

  private joinTokens(): { worker: string; manager: string } {
    const { joinSecrets } = this.cluster().auth;
    const digest = caDigest(this.deps.ca.certPem);
    return { worker: formatJoinToken(digest, joinSecrets.worker), manager: formatJoinToken(digest, joinSecrets.manager) };
  }

  private async rotateJoinToken(c: RequestContext): Promise<void> {
    const parsed = joinRotateSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'rotate request');
    const { role } = parsed.data;
    await this.retryOnConflict(async () => {
      const cl = this.cluster();
      // Only new joins use the token: nodes that joined hold certificates and are not affected.
      const auth = { ...cl.auth, joinSecrets: { ...cl.auth.joinSecrets, [role]: newJoinSecret() } };
      return this.commit([{ op: 'update', object: { ...cl, auth } }], c);
    });
    this.deps.logger.info('join token rotated', { role });
    sendJson(c.res, 200, this.joinTokens());
  }

  /** Issues a certificate to a node that presents a valid join token; the token decides the role, the manager the id. */
  private async join(c: RequestContext): Promise<void> {
    const parsed = joinRequestSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'join request');
    const token = parseJoinToken(parsed.data.token);
    const cluster = this.cluster();
    if (token.caDigest !== caDigest(this.deps.ca.certPem)) throw new ShoalError('unauthenticated', 'invalid join token: it is for another cluster (its CA digest does not match)');
    const role = (['worker', 'manager'] as const).find((r) => secretMatches(token.secret, [secretDigest(cluster.auth.joinSecrets[r])]));
    if (!role) throw new ShoalError('unauthenticated', 'invalid join token: the secret is not a current join token of this cluster (rotated?)');
    const joining = parsed.data.manager;
    if (role === 'manager') {
      if (this.deps.storeUrl === undefined) throw new ShoalError('failed_precondition', 'joining as a manager needs a shared store: this cluster runs the embedded SQLite store (start the first manager with --store etcd://…)');
      if (!joining) throw invalid('manager', 'a node joining with a manager token must send its admin token digest and address');
      parseHostPort(joining.address, 'manager.address');
    }
    const nodeId = this.deps.newId();
    const cert = await signNodeCsr({ ca: this.deps.ca, csrPem: parsed.data.csr, nodeId, role, clusterId: cluster.id, now: new Date(this.deps.clock.now()), ...certLifetime(cluster) });
    if (role === 'manager' && joining) await this.admitManager(nodeId, joining, c);
    this.deps.logger.info('node joined', { nodeId, role });
    const body: JoinResponse = {
      nodeId,
      clusterId: cluster.id,
      role,
      cert,
      ca: this.deps.ca.certPem,
      managers: this.deps.managers.addresses(),
      // A manager signs certificates and reads the store like every other manager; the connection is pinned to the
      // CA the token names, and only a manager token gets this far.
      ...(role === 'manager' ? this.managerShare() : {}),
    };
    sendJson(c.res, 200, body);
  }

  /**
   * Records a manager before it starts (joined with a manager token, or promoted): its node, with the address every
   * agent will learn, and its admin token (by digest, with its owner, so demoting or removing the node revokes it).
   */
  private async admitManager(nodeId: string, m: { adminTokenDigest: string; address: string }, from: WriteOrigin): Promise<void> {
    await this.retryOnConflict(async () => {
      const cl = this.cluster();
      const iso = isoNow(this.deps.clock);
      const existing = this.deps.cache.get('node', nodeId);
      const op: Op = existing
        ? { op: 'update', object: { ...existing, spec: { ...existing.spec, role: 'manager' }, description: { ...existing.description, address: m.address } } }
        : {
            op: 'create',
            object: {
              kind: 'node',
              id: nodeId,
              meta: { version: 0, createdAt: iso, updatedAt: iso },
              spec: { role: 'manager', availability: 'active', labels: {} },
              description: { hostname: '', address: m.address, runtime: '', resources: { nanoCpus: 0, memoryBytes: 0 }, engineLabels: {} },
              status: { state: 'unknown', message: 'joined; not started yet' },
            },
          };
      const auth = {
        ...cl.auth,
        adminTokenDigests: [...cl.auth.adminTokenDigests, m.adminTokenDigest],
        adminTokenOwners: { ...cl.auth.adminTokenOwners, [m.adminTokenDigest]: nodeId },
      };
      return this.commit([op, { op: 'update', object: { ...cl, auth } }], from);
    });
  }

  /** Only the leader serves this request: elsewhere it fails with unavailable and names the leader for the client. */
  private requireLeader(c: RequestContext, why: string): void {
    const leaderId = this.deps.managers.leaderId();
    if (leaderId === this.deps.nodeId) return;
    const leader = leaderId === undefined ? undefined : this.deps.cache.get('node', leaderId)?.description.address;
    if (leader) c.res.setHeader(LEADER_HEADER, leader);
    throw new ShoalError('unavailable', `${why}; ${leader ? `the leader is at ${leader}` : 'no manager leads right now, retry shortly'}`);
  }

  private async clusterStatus(c: RequestContext): Promise<void> {
    const leaderId = this.deps.managers.leaderId();
    const managers = this.deps.cache
      .list('node')
      .filter((n) => n.spec.role === 'manager')
      .sort(byHostname)
      .map((n) => ({ nodeId: n.id, hostname: n.description.hostname, address: n.description.address, status: n.status.state, leader: n.id === leaderId }));
    const leader = managers.find((m) => m.leader);
    const body: ClusterStatusResponse = {
      leader: leader ? { nodeId: leader.nodeId, address: leader.address } : null,
      managers,
      store: await this.deps.store.status(),
    };
    sendJson(c.res, 200, body);
  }

  /**
   * Renews the certificate of the node presenting a valid one on this TLS connection: same id, in the role the
   * cluster gives the node now. A promoted worker takes up its manager role here: it sends what a joining manager
   * sends and gets what managers share. An expired or removed node cannot renew: it must join again.
   */
  private async renew(c: RequestContext): Promise<void> {
    const parsed = renewRequestSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'renew request');
    const peer = (c.req.socket as TLSSocket).getPeerCertificate?.();
    if (!peer?.raw) throw new ShoalError('unauthenticated', 'renewing needs the current node certificate on the TLS connection');
    const identity = verifyNodeCertificate(peer.raw, { ca: this.deps.ca.certPem, now: new Date(this.deps.clock.now()) });
    const cluster = this.cluster();
    if (cluster.auth.removedNodeIds.includes(identity.nodeId)) throw new ShoalError('unauthenticated', `node ${identity.nodeId} was removed from the cluster`);
    const role = this.deps.cache.get('node', identity.nodeId)?.spec.role ?? identity.role;
    const promoted = role === 'manager' && identity.role === 'worker';
    if (promoted) {
      if (!parsed.data.manager) throw invalid('manager', `node ${identity.nodeId} was promoted: renewing must send its admin token digest and address`);
      parseHostPort(parsed.data.manager.address, 'manager.address');
    }
    const cert = await signNodeCsr({ ca: this.deps.ca, csrPem: parsed.data.csr, nodeId: identity.nodeId, role, clusterId: cluster.id, now: new Date(this.deps.clock.now()), ...certLifetime(cluster) });
    if (promoted && parsed.data.manager) await this.admitManager(identity.nodeId, parsed.data.manager, c);
    this.deps.logger.info('node certificate renewed', { nodeId: identity.nodeId, role });
    const body: RenewResponse = { cert, role, managers: this.deps.managers.addresses(), ...(promoted ? this.managerShare() : {}) };
    sendJson(c.res, 200, body);
  }

  /** What every manager holds: the CA key (managers sign certificates) and the shared store's address. */
  private managerShare(): { caKey: string; store?: string } {
    return { caKey: this.deps.ca.keyPem, ...(this.deps.storeUrl === undefined ? {} : { store: this.deps.storeUrl }) };
  }

  // ------------------------------------------------------------ writes

  private commit(ops: Op[], from: WriteOrigin): Promise<StoredObject[]> {
    return this.writer.commit(ops, from);
  }

  private retryOnConflict<T>(fn: () => Promise<T>): Promise<T> {
    return this.writer.retryOnConflict(fn);
  }
}

/** No project's grant matches this (names are DNS labels). */
const NO_PROJECT = '(none)';

/** The audit entry of a write: allowed, denied (by a grant or a policy), or failed for another reason. */
const auditEntry = (c: RequestContext, route: RouteInfo, failure: Error | undefined): Omit<AuditEntry, 'id' | 'time'> => {
  const denied = failure instanceof ShoalError && (failure.code === 'permission_denied' || failure.code === 'unauthenticated' || failure.code === 'resource_exhausted');
  const paramTarget = Object.values(c.params)[0];
  const target = c.audit.target ?? (paramTarget === undefined ? '' : `${route.pattern.split('/')[2]?.replace(/s$/, '') ?? ''}/${paramTarget}`);
  return {
    user: c.audit.user ?? c.who.user,
    action: 'permission' in route.access ? route.access.permission : `${route.method} ${route.pattern}`,
    target,
    ...(c.audit.project === undefined ? {} : { project: c.audit.project }),
    outcome: failure === undefined ? 'allowed' : denied ? 'denied' : 'failed',
    rule: c.audit.rules.join('; ') || ('public' in route.access ? 'public route' : ''),
    message: failure?.message ?? '',
    ...(c.audit.warnings.length ? { warnings: c.audit.warnings } : {}),
    ...(c.audit.audits.length ? { audits: c.audit.audits } : {}),
  };
};

const expectVersion = (s: Service, version: number | undefined): void => {
  if (version !== undefined && version !== s.meta.version) {
    throw new ShoalError('conflict', `service '${s.spec.name}' is at version ${s.meta.version}, not ${version}: it changed since you read it`, { violations: [{ field: 'version', reason: 'stale' }] });
  }
};

/** HOST:PORT parsed, or undefined when `text` is not one. */
const parseAddress = (text: string): { host: string; port: number } | undefined => {
  try {
    return parseHostPort(text);
  } catch {
    return undefined;
  }
};

const certLifetime = (cluster: Cluster): { validityMs?: number } =>
  cluster.spec.nodeCertExpiryMs === undefined ? {} : { validityMs: cluster.spec.nodeCertExpiryMs };

const byHostname = (a: Node, b: Node): number => a.description.hostname.localeCompare(b.description.hostname) || a.id.localeCompare(b.id);
