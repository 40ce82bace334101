// Templates as admins write them (`kind: Template` YAML) and the request that deploys one.

import { z } from 'zod';
import { NAME_PATTERN, type Template } from '../core/index.js';
import { serviceSpecSchema } from './api.js';
import { parseYamlDocuments } from './yaml.js';

const name = z.string().regex(NAME_PATTERN, 'template and project names are lower-case letters, digits and - (at most 63, not starting or ending with -)');
const count = z.number().int().min(0).max(100_000);

/** The part of a service spec a deployment does not choose, validated like a service's. */
const serviceBody = z.record(z.string(), z.unknown());

export const templateDocumentSchema = z
  .object({
    kind: z.literal('Template'),
    name,
    description: z.string().max(1024).default(''),
    project: name,
    replicas: z.object({ min: count.default(1), max: count, default: count.optional() }).strict(),
    service: serviceBody,
  })
  .strict()
  .superRefine((t, ctx) => {
    const { min, max } = t.replicas;
    const def = t.replicas.default ?? min;
    if (min > max) ctx.addIssue({ code: 'custom', path: ['replicas', 'min'], message: `min (${min}) exceeds max (${max})` });
    if (def < min || def > max) ctx.addIssue({ code: 'custom', path: ['replicas', 'default'], message: `the default (${def}) is outside ${min}..${max}` });
    for (const k of ['name', 'project', 'mode'] as const) {
      if (k in t.service) ctx.addIssue({ code: 'custom', path: ['service', k], message: `set by each deployment (name, replicas) or by the template (project), not in service` });
    }
    const spec = serviceSpecSchema.safeParse({ ...t.service, name: 'template-check', project: t.project, mode: { replicated: { replicas: def } } });
    if (!spec.success) for (const i of spec.error.issues) ctx.addIssue({ ...i, code: 'custom', path: ['service', ...i.path], message: i.message } as never);
  });
export type TemplateDocument = z.input<typeof templateDocumentSchema>;

/** The stored form of a validated template document (the service spec with its defaults filled in). */
export const templateFields = (doc: z.output<typeof templateDocumentSchema>): Omit<Template, 'kind' | 'id' | 'meta'> => {
  const def = doc.replicas.default ?? doc.replicas.min;
  const { name: _n, project: _p, mode: _m, ...service } = serviceSpecSchema.parse({ ...doc.service, name: 'template-check', project: doc.project, mode: { replicated: { replicas: def } } });
  return { description: doc.description, project: doc.project, replicas: { min: doc.replicas.min, max: doc.replicas.max, default: def }, service };
};

/** `POST /v1/templates/:name/deploy`: the only choices a provisioner makes. */
export const templateDeploySchema = z
  .object({
    name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'names start with a letter or digit and use letters, digits, _ . - (at most 63)'),
    replicas: count.optional(),
  })
  .strict();
export type TemplateDeployRequest = z.input<typeof templateDeploySchema>;

export interface TemplateView {
  name: string;
  description: string;
  project: string;
  image: string;
  replicas: Template['replicas'];
  version: number;
  updatedAt: string;
}

/** Parses a YAML file of one or more template documents; errors name the field and its line. */
export const parseTemplateDocuments = (yamlText: string): z.output<typeof templateDocumentSchema>[] => parseYamlDocuments(yamlText, templateDocumentSchema, 'template');
