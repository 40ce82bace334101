// The OpenAPI 3.1 document served at /v1/openapi.json; request schemas come from the same zod schemas the API validates with.

import { z } from 'zod';
import { API_PREFIX, EVENTS_HISTORY_HEADER, scaleRequestSchema, serviceSpecSchema } from '../protocol/index.js';

const jsonSchema = (s: z.ZodType): Record<string, unknown> => {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });
  return rest;
};

const ref = (name: string): Record<string, string> => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Record<string, unknown>): Record<string, unknown> => ({ 'application/json': { schema } });
const ndjson = (schema: Record<string, unknown>): Record<string, unknown> => ({ 'application/x-ndjson': { schema } });
const ok = (description: string, content?: Record<string, unknown>): Record<string, unknown> => ({ description, ...(content ? { content } : {}) });
const errors = { default: ok('Error', json(ref('Error'))) };
const serviceRef = { name: 'ref', in: 'path', required: true, description: 'Service id, name, or unique id prefix', schema: { type: 'string' } };
const timeParam = (name: string, description: string): Record<string, unknown> => ({
  name,
  in: 'query',
  schema: { type: 'string' },
  description: `${description}: RFC 3339 (2024-05-01T10:00:00Z), Unix seconds, or a duration before now (10m)`,
});

const stringProps = (keys: string[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  ...Object.fromEntries(keys.map((k) => [k, { type: 'string' }])),
  ...extra,
});

let cached: Record<string, unknown> | undefined;

export const openApiDocument = (version: string): Record<string, unknown> => {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'Shoal API',
      version,
      description: 'Every request needs "Authorization: Bearer <admin token>", /metrics too (Prometheus: authorization.credentials in the scrape config).',
    },
    servers: [{ url: API_PREFIX }],
    security: [{ bearer: [] }],
    paths: {
      '/info': { get: { summary: 'Cluster and manager information', responses: { 200: ok('Info', json(ref('Info'))), ...errors } } },
      '/services': {
        get: { summary: 'List services', responses: { 200: ok('Services', json({ type: 'array', items: ref('ServiceListItem') })), ...errors } },
        post: {
          summary: 'Create a service',
          requestBody: { required: true, content: json(ref('ServiceSpec')) },
          responses: { 201: ok('The created service', json(ref('Service'))), ...errors },
        },
      },
      '/services/{ref}': {
        parameters: [serviceRef],
        get: { summary: 'Inspect a service', responses: { 200: ok('Service', json(ref('Service'))), ...errors } },
        delete: { summary: 'Remove a service; its tasks are stopped and their containers removed', responses: { 200: ok('Removed'), ...errors } },
      },
      '/services/{ref}/scale': {
        parameters: [serviceRef],
        post: { summary: 'Scale a replicated service', requestBody: { required: true, content: json(ref('ScaleRequest')) }, responses: { 200: ok('Service', json(ref('Service'))), ...errors } },
      },
      '/services/{ref}/tasks': {
        parameters: [serviceRef, { name: 'watch', in: 'query', schema: { type: 'boolean' }, description: 'Stream the list (NDJSON) after every change' }],
        get: { summary: 'Tasks of a service', responses: { 200: ok('Tasks', { ...json({ type: 'array', items: ref('TaskListItem') }), ...ndjson({ type: 'array', items: ref('TaskListItem') }) }), ...errors } },
      },
      '/services/{ref}/logs': {
        parameters: [
          { ...serviceRef, description: 'Service id, name, or unique id prefix; or a task id or unique prefix (that task only)' },
          { name: 'follow', in: 'query', schema: { type: 'boolean' } },
          { name: 'tail', in: 'query', schema: { type: 'string' }, description: "Lines per task from the end, or 'all'" },
          timeParam('since', 'Only lines at or after this time'),
        ],
        get: {
          summary: 'Logs of the tasks of a service, or of one task, in order per task; served by the leader only (elsewhere 503 with the shoal-leader header)',
          responses: { 200: ok('Log lines', ndjson(ref('LogEntry'))), ...errors },
        },
      },
      '/events': {
        parameters: [
          timeParam('since', 'Send the history from this time (without it: all history, or when following only new events)'),
          timeParam('until', 'End at this time'),
          { name: 'filter', in: 'query', schema: { type: 'array', items: { enum: ['type=service', 'type=task', 'type=node'] } }, style: 'form', explode: true, description: 'Only these event types (any of them)' },
          { name: 'follow', in: 'query', schema: { type: 'boolean' }, description: 'Keep sending new events until `until` or the client disconnects' },
        ],
        get: {
          summary: 'Cluster events; every manager keeps its own history of the last 10,000 events since it started',
          responses: {
            200: {
              description: 'Events, one per line',
              headers: { [EVENTS_HISTORY_HEADER]: { description: 'From this time on the history is complete', schema: { type: 'string', format: 'date-time' } } },
              content: ndjson(ref('ClusterEvent')),
            },
            ...errors,
          },
        },
      },
      '/metrics': {
        servers: [{ url: '/' }],
        get: {
          summary: 'Prometheus metrics (text exposition format 0.0.4) of this manager and the cluster',
          responses: { 200: ok('Metrics', { 'text/plain; version=0.0.4': { schema: { type: 'string' } } }), ...errors },
        },
      },
      '/tasks/{id}': { parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], get: { summary: 'Inspect a task', responses: { 200: ok('Task'), ...errors } } },
      '/nodes': { get: { summary: 'List nodes', responses: { 200: ok('Nodes', json({ type: 'array', items: ref('NodeListItem') })), ...errors } } },
      '/nodes/{ref}': { parameters: [{ name: 'ref', in: 'path', required: true, schema: { type: 'string' } }], get: { summary: 'Inspect a node', responses: { 200: ok('Node'), ...errors } } },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        ServiceSpec: jsonSchema(serviceSpecSchema),
        ScaleRequest: jsonSchema(scaleRequestSchema),
        Service: { type: 'object', required: ['id', 'meta', 'spec'], properties: { id: { type: 'string' }, meta: ref('Meta'), spec: ref('ServiceSpec') } },
        Meta: { type: 'object', properties: { version: { type: 'integer' }, createdAt: { type: 'string' }, updatedAt: { type: 'string' } } },
        Info: { type: 'object', properties: { clusterId: { type: 'string' }, clusterName: { type: 'string' }, nodeId: { type: 'string' }, version: { type: 'string' }, store: { type: 'string' } } },
        ServiceListItem: {
          type: 'object',
          required: ['id', 'name', 'project', 'mode', 'image', 'replicas'],
          properties: {
            id: { type: 'string' },
            name: { type: 'string' },
            project: { type: 'string' },
            mode: { enum: ['replicated', 'global'] },
            image: { type: 'string' },
            replicas: { type: 'object', properties: { desired: { type: 'integer' }, running: { type: 'integer' } } },
          },
        },
        TaskListItem: {
          type: 'object',
          required: ['id', 'serviceName', 'slot', 'nodeId', 'desiredState', 'state', 'containerId', 'error', 'createdAt', 'stateSince'],
          properties: stringProps(['id', 'serviceName', 'nodeId', 'desiredState', 'state', 'containerId', 'error', 'createdAt', 'stateSince', 'message', 'node'], { slot: { type: 'integer' } }),
        },
        NodeListItem: {
          type: 'object',
          required: ['id', 'hostname', 'role', 'availability', 'status', 'address'],
          properties: stringProps(['id', 'hostname', 'role', 'availability', 'status', 'address']),
        },
        LogEntry: {
          type: 'object',
          properties: stringProps(['taskId', 'serviceName', 'nodeId', 'node', 'stream', 'time', 'line'], { slot: { type: 'integer' } }),
        },
        ClusterEvent: {
          type: 'object',
          required: ['revision', 'time', 'type', 'action', 'id', 'name', 'attributes'],
          properties: {
            revision: { type: 'integer' },
            time: { type: 'string', format: 'date-time' },
            type: { enum: ['service', 'task', 'node'] },
            action: { enum: ['create', 'update', 'remove', 'state', 'desired', 'up', 'down'] },
            id: { type: 'string' },
            name: { type: 'string' },
            attributes: { type: 'object', additionalProperties: { type: 'string' } },
          },
        },
        Error: {
          type: 'object',
          properties: {
            error: {
              type: 'object',
              properties: {
                code: { type: 'string' },
                message: { type: 'string' },
                violations: { type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, reason: { type: 'string' } } } },
              },
            },
          },
        },
      },
    },
  };
  return cached;
};
