// Tests of policy compilation and admission: the documented example policies, actions, and every way a policy is refused.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ShoalError, type PolicyDocument, type PolicyOperation } from '../core/index.js';
import { admit, compilePolicy, denialMessage, violationMessage, type AdmissionRequest, type CompiledPolicy, type Decision } from './admit.js';
import { MAX_POLICY_COST } from './limits.js';
import { policyObject } from './object.js';
import { MiB, policyDoc, serviceSpec, type SpecOptions } from './testing.js';

/**
 * The example policies exactly as docs/policies has them. The policy layer may not import the protocol's parser, so
 * this reads the YAML plainly; src/protocol/policy.test.ts checks that the parser gives the very same documents.
 */
const DOCS = new URL('../../../docs/policies/', import.meta.url);
const docsPolicies = (): Map<string, CompiledPolicy> =>
  new Map(
    readdirSync(DOCS)
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAllDocuments(readFileSync(new URL(f, DOCS), 'utf8')).map((d) => compilePolicy(d.toJS() as PolicyDocument)))
      .map((p) => [p.name, p]),
  );

const clock = () => {
  let t = 0;
  return () => t++;
};

const request = (user: string, operation: PolicyOperation, spec: SpecOptions = {}, extra: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
  user,
  teams: [],
  operation,
  object: serviceSpec(spec),
  ...extra,
});

const decide = (policies: CompiledPolicy[], req: AdmissionRequest): Decision => admit(policies, req, { now: clock(), slowMs: Infinity });

/** Asserts compilePolicy refuses `doc` with invalid_argument on `field`, the message matching `message`. */
const refuses = (doc: PolicyDocument, field: string, message: RegExp): void => {
  assert.throws(
    () => compilePolicy(doc),
    (e: unknown) => {
      assert.ok(e instanceof ShoalError);
      assert.equal(e.code, 'invalid_argument');
      assert.equal(e.violations[0]?.field, field);
      assert.match(e.message, new RegExp(`^policy '${doc.name}': ${field.replace(/[[\]]/g, '\\$&')}: `));
      assert.match(e.message, message);
      return true;
    },
  );
};

describe('the example policies in docs/policies', () => {
  const policies = docsPolicies();
  const only = (name: string): CompiledPolicy[] => {
    const p = policies.get(name);
    assert.ok(p, `docs/policies has ${name}`);
    return [p];
  };

  it('are exactly the four documented examples', () => {
    assert.deepEqual([...policies.keys()].sort(), ['allowed-registries', 'latte-deployers', 'require-memory-limit', 'x-replica-cap']);
  });

  it('latte-deployers: only dev-a, dev-b and dev-c may deploy latte, on every write path', () => {
    const latte = only('latte-deployers');
    for (const op of ['create', 'update', 'scale', 'rollback', 'remove', 'deploy'] as const) {
      for (const user of ['dev-a', 'dev-b', 'dev-c']) assert.ok(decide(latte, request(user, op)).allowed, `${user} ${op}`);
      const req = request('dev-d', op);
      const d = decide(latte, req);
      assert.equal(d.allowed, false, op);
      assert.equal(denialMessage(req, d), `Cannot ${op} service 'latte': policy 'latte-deployers' denies user 'dev-d': only dev-a, dev-b and dev-c may deploy latte`);
    }
    // Other services are not its business.
    assert.deepEqual(decide(latte, request('dev-d', 'scale', { name: 'mocha' })), { allowed: true, denials: [], warnings: [], audits: [], evaluated: [], slow: [] });
  });

  it('x-replica-cap: registry.example/x may not scale past 5 replicas, through any path', () => {
    const cap = only('x-replica-cap');
    for (const op of ['create', 'update', 'scale', 'rollback', 'deploy'] as const) {
      assert.ok(decide(cap, request('dev-a', op, { replicas: 5 })).allowed, op);
      const req = request('dev-a', op, { replicas: 6 });
      assert.equal(denialMessage(req, decide(cap, req)), `Cannot ${op} service 'latte': policy 'x-replica-cap' denies user 'dev-a': registry.example/x may not scale past 5 replicas`);
    }
    assert.equal(decide(cap, request('dev-a', 'scale', { replicas: 6, image: 'registry.example/x@sha256:0123' })).allowed, false);
    assert.equal(decide(cap, request('dev-a', 'scale', { replicas: 'global' })).allowed, false, 'a global service has no replica cap');
    assert.ok(decide(cap, request('dev-a', 'scale', { replicas: 50, image: 'registry.example/y:1' })).allowed);
    assert.ok(decide(cap, request('dev-a', 'remove', { replicas: 50 })).allowed, 'removing an over-cap service is allowed');
  });

  it('allowed-registries: only images from registry.example or mirror.example', () => {
    const registries = only('allowed-registries');
    for (const image of ['registry.example/x:1', 'mirror.example/team/app@sha256:0123']) assert.ok(decide(registries, request('dev-a', 'create', { image })).allowed, image);
    for (const image of ['docker.io/library/busybox', 'registry.example.evil/x', 'busybox']) {
      const d = decide(registries, request('dev-a', 'update', { image }));
      assert.deepEqual(d.denials.map(violationMessage), ['policy \'allowed-registries\': images must come from registry.example or mirror.example'], image);
    }
  });

  it('require-memory-limit: every service sets a memory limit', () => {
    const memory = only('require-memory-limit');
    assert.ok(decide(memory, request('dev-a', 'create', { memoryLimit: 64 * MiB })).allowed);
    assert.equal(decide(memory, request('dev-a', 'create')).allowed, false);
  });

  it('all four together: each denial is reported', () => {
    const req = request('dev-d', 'create', { replicas: 9, image: 'registry.example/x:2' });
    const d = decide([...policies.values()], req);
    assert.deepEqual(d.denials.map((v) => v.policy).sort(), ['latte-deployers', 'require-memory-limit', 'x-replica-cap']);
    assert.deepEqual(d.evaluated.sort(), ['allowed-registries', 'latte-deployers', 'require-memory-limit', 'x-replica-cap']);
  });
});

describe('actions', () => {
  const failing = (action: 'deny' | 'warn' | 'audit') => compilePolicy(policyDoc('object.replicas <= 3', { name: `cap-${action}`, action, validations: [{ expression: 'object.replicas <= 3', message: 'at most 3' }] }));

  it('warn: allowed, the message returned as a warning', () => {
    const d = decide([failing('warn')], request('dev-a', 'scale', { replicas: 4 }));
    assert.equal(d.allowed, true);
    assert.deepEqual(d.warnings, [{ policy: 'cap-warn', action: 'warn', validation: 0, message: 'at most 3' }]);
    assert.deepEqual([d.denials, d.audits], [[], []]);
  });

  it('audit: allowed, the finding only recorded', () => {
    const d = decide([failing('audit')], request('dev-a', 'scale', { replicas: 4 }));
    assert.equal(d.allowed, true);
    assert.deepEqual(d.audits.map(violationMessage), ["policy 'cap-audit': at most 3"]);
    assert.deepEqual([d.denials, d.warnings], [[], []]);
  });

  it('deny, warn and audit together: only deny refuses', () => {
    const d = decide([failing('warn'), failing('deny'), failing('audit')], request('dev-a', 'scale', { replicas: 4 }));
    assert.equal(d.allowed, false);
    assert.deepEqual([d.denials.length, d.warnings.length, d.audits.length], [1, 1, 1]);
    assert.deepEqual(d.evaluated, ['cap-warn', 'cap-deny', 'cap-audit']);
  });

  it('every validation of a policy runs, in order', () => {
    const p = compilePolicy(policyDoc('', { validations: [
      { expression: 'object.replicas > 10', message: 'first' },
      { expression: 'true', message: 'second' },
      { expression: "object.name == 'mocha'", message: 'third' },
    ] }));
    assert.deepEqual(decide([p], request('dev-a', 'create')).denials.map((v) => [v.validation, v.message]), [[0, 'first'], [2, 'third']]);
  });
});

describe('expressions', () => {
  const allowed = (expression: string, req: AdmissionRequest, params?: Record<string, unknown>): boolean =>
    decide([compilePolicy(policyDoc(expression, params ? { params } : {}))], req).allowed;

  it('see request, object, oldObject and params', () => {
    const req = request('dev-a', 'update', { replicas: 3, labels: { team: 'payments' }, env: ['A=1'] }, { teams: ['payments', 'ops'], oldObject: serviceSpec({ replicas: 2 }) });
    for (const e of [
      "request.user == 'dev-a' && 'ops' in request.teams && request.operation == 'update'",
      "object.name == 'latte' && object.project == 'default' && object.image == 'registry.example/x:1.0'",
      "object.replicas == 3 && object.mode == 'replicated' && object.labels.team == 'payments' && object.env == ['A=1']",
      "object.constraints[0].key == 'node.labels.zone' && object.preferences == ['node.labels.rack']",
      "object.restartPolicy.condition == 'any' && object.updateConfig.order == 'stop-first' && object.stopGracePeriodMs == 10000",
      'oldObject != null && oldObject.replicas < object.replicas',
      "!has(object.healthcheck) && object.resources.reservations.memoryBytes == 0",
      'object.replicas <= params.max && params.ratio < 1.0 && params.names.size() == 2',
    ]) assert.ok(allowed(e, req, { max: 5, ratio: 0.5, names: ['a', 'b'] }), e);
    assert.ok(allowed('oldObject == null', request('dev-a', 'create')));
  });

  it('policyObject flattens the spec with ints as BigInt', () => {
    const o = policyObject(serviceSpec({ replicas: 2, memoryLimit: 8 * MiB }));
    assert.equal(o.replicas, 2n);
    assert.equal(o.resources.limits.memoryBytes, BigInt(8 * MiB));
    assert.equal(o.updateConfig.maxFailureRatio, 0);
    assert.equal(policyObject(serviceSpec({ replicas: 'global' })).replicas, undefined);
  });

  it('a runtime error is a violation; a deny policy fails closed and says so', () => {
    // A global service has no replicas: the field access fails at run time.
    const expr = 'object.replicas <= 5';
    const deny = decide([compilePolicy(policyDoc(expr))], request('dev-a', 'create', { replicas: 'global' }));
    assert.equal(deny.allowed, false);
    assert.match(deny.denials[0]?.message ?? '', /^test validation failed \(validations\[0\] could not be evaluated: .*replicas.*; denied: a deny policy fails closed\)$/);
    assert.match(deny.denials[0]?.error ?? '', /replicas/);
    const warn = decide([compilePolicy(policyDoc(expr, { action: 'warn' }))], request('dev-a', 'create', { replicas: 'global' }));
    assert.equal(warn.allowed, true);
    assert.doesNotMatch(warn.warnings[0]?.message ?? '', /fails closed/);
  });
});

describe('compilePolicy refuses', () => {
  it('a syntax error, with its position in the expression', () => {
    refuses(policyDoc("request.user in ['dev-a', 'dev-b'"), 'validations[0].expression', /Expected RBRACKET, got EOF at line 1, column 34$/);
    refuses(policyDoc("request.user == 'a' &&\n  object.name ==="), 'validations[0].expression', /at line 2, column \d+$/);
  });

  it('a type error: an unknown field, or mismatched operands', () => {
    refuses(policyDoc('object.replica > 1'), 'validations[0].expression', /No such key: replica at line 1, column 8$/);
    refuses(policyDoc("object.replicas == 'three'"), 'validations[0].expression', /no such overload/);
    refuses(policyDoc('request.nobody'), 'validations[0].expression', /No such key: nobody/);
  });

  it('an expression that is not a bool', () => {
    refuses(policyDoc('object.name'), 'validations[0].expression', /must be a bool, it is string/);
    refuses(policyDoc('params.enabled'), 'validations[0].expression', /must be a bool, it is dyn/);
  });

  it('an expression whose estimated cost exceeds the budget (nested comprehensions)', () => {
    refuses(policyDoc('object.env.all(a, object.env.exists(b, a == b))'), 'validations[0].expression', new RegExp(`exceeds the budget of ${MAX_POLICY_COST}`));
    // Affordable alone, too much together.
    const one = 'object.labels.all(a, object.labels.all(k, a != k))';
    const v = { expression: one, message: 'm' };
    refuses(policyDoc(one, { validations: [v, v, v, v, v, v, v] }), 'validations', /together: estimated cost/);
  });

  it('structural limits: too many nodes or too deep', () => {
    refuses(policyDoc(Array.from({ length: 600 }, () => 'true').join(' && ')), 'validations[0].expression', /maxAstNodes/);
    refuses(policyDoc(`${'['.repeat(40)}1${']'.repeat(40)} != []`), 'validations[0].expression', /maxDepth/);
  });

  it('a regular expression that can backtrack catastrophically', () => {
    refuses(policyDoc("object.name.matches('^(a+)+$')"), 'validations[0].expression', /unsafe pattern "\^\(a\+\)\+\$".* at line 1, column 21$/);
    refuses(policyDoc('object.name.matches(object.image)'), 'validations[0].expression', /must be a string literal/);
  });

  it('reports every bad validation at once', () => {
    const doc = policyDoc('', { validations: [{ expression: 'true', message: 'ok' }, { expression: 'object.x', message: 'a' }, { expression: '1 +', message: 'b' }] });
    assert.throws(() => compilePolicy(doc), (e: ShoalError) => {
      assert.deepEqual(e.violations.map((v) => v.field), ['validations[1].expression', 'validations[2].expression']);
      return true;
    });
  });
});

describe('admit', () => {
  it('evaluates 100 policies, skipping those that do not match', () => {
    const policies = Array.from({ length: 100 }, (_, i) =>
      compilePolicy(policyDoc("object.resources.limits.memoryBytes > 0 && request.user in ['dev-a', 'dev-b']", { name: `p${i}`, match: i % 2 === 0 ? {} : { services: ['mocha'] } })),
    );
    const d = decide(policies, request('dev-a', 'update', { memoryLimit: 64 * MiB }));
    assert.equal(d.allowed, true);
    assert.equal(d.evaluated.length, 50);
    assert.equal(decide(policies, request('dev-x', 'update', { memoryLimit: 64 * MiB })).denials.length, 50);
  });

  it('reports evaluations slower than slowMs by the injected clock', () => {
    const policies = [compilePolicy(policyDoc('true', { name: 'a' })), compilePolicy(policyDoc('true', { name: 'b' }))];
    // Each evaluation reads the clock twice; this clock advances 5 ms per read.
    let t = 0;
    const d = admit(policies, request('dev-a', 'create'), { now: () => (t += 5), slowMs: 4 });
    assert.deepEqual(d.slow, [{ policy: 'a', validation: 0, ms: 5 }, { policy: 'b', validation: 0, ms: 5 }]);
    assert.deepEqual(admit(policies, request('dev-a', 'create'), { now: () => (t += 5), slowMs: 10 }).slow, []);
  });

  it('joins several denials in one message', () => {
    const req = request('dev-d', 'scale');
    const d = decide([compilePolicy(policyDoc('false', { name: 'a' })), compilePolicy(policyDoc('false', { name: 'b' }))], req);
    assert.equal(denialMessage(req, d), "Cannot scale service 'latte': policy 'a' denies user 'dev-d': test validation failed; policy 'b' denies user 'dev-d': test validation failed");
  });
});
