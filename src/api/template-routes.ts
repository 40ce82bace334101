// The template API: admins apply templates; provisioners (and developers) deploy them by name into the template's
// project, scale their services within its bounds and remove them — never sending a raw spec.

import { ShoalError, TEMPLATE_LABEL, invalid, notFound, projectOf, type Service, type ServiceSpec, type Template } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { API_PREFIX, parseTemplateDocuments, policySourceSchema, templateDeploySchema, templateFields, type TemplateView } from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { Admission } from './admission.js';
import { fromZod, readJson, sendJson, type RequestContext, type Router } from './http.js';
import type { StoreWriter } from './writes.js';

const p = API_PREFIX;

export interface TemplateDeps {
  cache: Cache;
  clock: Clock;
  logger: Logger;
  newId: () => string;
  writer: StoreWriter;
  admission: Admission;
}

export class TemplateApi {
  constructor(private readonly deps: TemplateDeps) {}

  register(router: Router): void {
    router
      .add('GET', `${p}/templates`, { permission: 'template.read' }, async (c) => sendJson(c.res, 200, this.deps.cache.list('template').map(view).sort((a, b) => a.name.localeCompare(b.name))))
      .add('POST', `${p}/templates`, { permission: 'template.write' }, (c) => this.apply(c))
      .add('GET', `${p}/templates/:name`, { permission: 'template.read' }, async (c) => sendJson(c.res, 200, this.template(c.params.name)))
      .add('DELETE', `${p}/templates/:name`, { permission: 'template.write' }, (c) => this.remove(c))
      .add('POST', `${p}/templates/:name/deploy`, { permission: 'template.deploy', project: (c) => this.template(c.params.name).project }, (c) => this.deploy(c));
  }

  private template(name: string | undefined): Template {
    const t = this.deps.cache.get('template', name ?? '');
    if (!t) throw notFound(`template '${name ?? ''}'`);
    return t;
  }

  /** Creates or updates every template of a YAML file, all or nothing. Deployed services keep their spec. */
  private async apply(c: RequestContext): Promise<void> {
    const parsed = policySourceSchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'template request');
    const docs = parseTemplateDocuments(parsed.data.source);
    c.audit.target = docs.map((d) => `template/${d.name}`).join(',');
    const results = await this.deps.writer.applyByName('template', docs.map((doc) => ({ name: doc.name, content: templateFields(doc) })), this.deps.clock, c);
    this.deps.logger.info('templates applied', { templates: results.map((r) => `${r.name}:${r.result}`).join(',') });
    sendJson(c.res, 200, results);
  }

  private async remove(c: RequestContext): Promise<void> {
    const name = c.params.name ?? '';
    c.audit.target = `template/${name}`;
    await this.deps.writer.removeCurrent(() => this.template(name), c);
    sendJson(c.res, 200, { name });
  }

  /** A service from the template: its spec, the caller's name and replica count (within bounds), policies checked as `deploy`. */
  private async deploy(c: RequestContext): Promise<void> {
    const parsed = templateDeploySchema.safeParse(await readJson(c.req));
    if (!parsed.success) throw fromZod(parsed.error, 'deploy request');
    const t = this.template(c.params.name);
    const replicas = parsed.data.replicas ?? t.replicas.default;
    c.audit.target = `service/${parsed.data.name}`;
    withinBounds(t, replicas);
    const spec: ServiceSpec = {
      ...t.service,
      name: parsed.data.name,
      project: t.project,
      labels: { ...t.service.labels, [TEMPLATE_LABEL]: t.id },
      mode: { replicated: { replicas } },
    };
    this.deps.admission.check(c, 'deploy', spec);
    const created = await this.deps.writer.createService(spec, this.deps.newId(), this.deps.clock, c);
    this.deps.logger.info('service deployed from template', { service: spec.name, template: t.id });
    sendJson(c.res, 201, created);
  }

  /** A provisioner's scale: only of a template's service, and within the template's bounds. */
  checkScale(s: Service, replicas: number): void {
    withinBounds(this.checkOrigin(s, 'scale'), replicas);
  }

  /**
   * The template a service was deployed from; refused when it was not, the template is gone, or the template deploys
   * into another project than the service's (a deploy puts the service in the template's project: a service moved
   * since, or one whose template now deploys elsewhere, is no longer that template's).
   */
  checkOrigin(s: Service, what: string): Template {
    const name = s.spec.labels[TEMPLATE_LABEL];
    const t = name === undefined ? undefined : this.deps.cache.get('template', name);
    if (!t) throw new ShoalError('permission_denied', `cannot ${what} service '${s.spec.name}': it was not deployed from a template${name ? ` (its template '${name}' is gone)` : ''}, and a template grant covers only template services`);
    const project = projectOf(s.spec);
    if (t.project !== project) throw new ShoalError('permission_denied', `cannot ${what} service '${s.spec.name}': it is in project '${project}' but its template '${t.id}' deploys into project '${t.project}', and a template grant covers only template services`);
    return t;
  }
}

const withinBounds = (t: Template, replicas: number): void => {
  const { min, max } = t.replicas;
  if (replicas < min || replicas > max) throw invalid('replicas', `template '${t.id}' allows ${min} to ${max} replicas, not ${replicas}`);
};

const view = (t: Template): TemplateView => ({ name: t.id, description: t.description, project: t.project, image: t.service.task.container.image, replicas: t.replicas, version: t.meta.version, updatedAt: t.meta.updatedAt });
