// The policy document (`kind: Policy`) as users write it in YAML: its schema and the parser `shoal policy apply` uses.

import { z } from 'zod';
import { NAME_PATTERN, POLICY_OPERATIONS, ShoalError, type PolicyAction, type PolicyDocument, type PolicyOperation } from '../core/index.js';
import { parseYamlDocuments } from './yaml.js';

/** Bounds of `params`: every list and map in it has at most this many entries, so cost estimates can rely on it. */
export const MAX_PARAMS_ENTRIES = 1000;
const MAX_PARAMS_DEPTH = 16;
const MAX_PARAMS_JSON = 64 * 1024;

const name = (what: string) => z.string().regex(NAME_PATTERN, `${what} names are lower-case letters, digits and - (at most 63, not starting or ending with -)`);
/** A glob: `*` matches any run of characters (also `/` and `:`), `?` any one character. */
const glob = z.string().min(1).max(512).regex(/^\S+$/, 'a pattern has no spaces');
/** An empty list would match nothing, silently: leaving the field out is how to match everything. */
const nonEmpty = <T extends z.ZodType>(item: T) => z.array(item).min(1, 'an empty list matches nothing; leave the field out to match all').max(1000);

const matchSchema = z
  .object({
    operations: nonEmpty(z.enum(POLICY_OPERATIONS as [PolicyOperation, ...PolicyOperation[]])),
    projects: nonEmpty(name('project')),
    services: nonEmpty(glob),
    labels: z.record(z.string().min(1).max(128), z.string().max(4096)),
    images: nonEmpty(glob),
  })
  .partial()
  .strict();

const validationSchema = z
  .object({
    expression: z.string().min(1, 'an expression is required').max(4096),
    message: z.string().min(1, 'a message is required').max(1024),
  })
  .strict();

/** Where a JSON value exceeds the params bounds, or undefined. */
const paramsProblem = (v: unknown, depth = 0): string | undefined => {
  if (v === null || typeof v !== 'object') return undefined;
  if (depth > MAX_PARAMS_DEPTH) return `params nest at most ${MAX_PARAMS_DEPTH} levels deep`;
  const items = Array.isArray(v) ? (v as unknown[]) : Object.values(v);
  if (items.length > MAX_PARAMS_ENTRIES) return `a list or map in params has at most ${MAX_PARAMS_ENTRIES} entries`;
  for (const item of items) {
    const p = paramsProblem(item, depth + 1);
    if (p !== undefined) return p;
  }
  return undefined;
};

const paramsSchema = z
  .record(z.string(), z.json())
  .superRefine((p, ctx) => {
    const problem = paramsProblem(p) ?? (JSON.stringify(p).length > MAX_PARAMS_JSON ? `params take at most ${MAX_PARAMS_JSON} bytes as JSON` : undefined);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });

export const policyDocumentSchema = z
  .object({
    kind: z.literal('Policy'),
    name: name('policy'),
    description: z.string().max(1024).optional(),
    match: matchSchema.default({}),
    validations: z.array(validationSchema).min(1, 'a policy has at least one validation').max(64),
    action: z.enum(['deny', 'warn', 'audit'] as const satisfies readonly PolicyAction[]),
    params: paramsSchema.optional(),
  })
  .strict();

// Compile-time check that the schema produces exactly the domain's PolicyDocument.
const _documentMatches = (d: z.output<typeof policyDocumentSchema>): PolicyDocument => d;
void _documentMatches;

/**
 * Parses a YAML file of one or more policy documents (separated by `---`; empty documents are skipped). Errors are
 * invalid_argument and say where: line and column for YAML syntax, field path (and line) for schema problems.
 */
export const parsePolicyDocuments = (yamlText: string): PolicyDocument[] => parseYamlDocuments(yamlText, policyDocumentSchema, 'policy');

/** Parses a YAML file that must hold exactly one policy document. */
export const parsePolicyDocument = (yamlText: string): PolicyDocument => {
  const docs = parsePolicyDocuments(yamlText);
  if (docs.length !== 1) throw new ShoalError('invalid_argument', `invalid policy: expected one document, the file holds ${docs.length}`);
  return docs[0]!;
};
