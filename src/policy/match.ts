// Which requests a policy applies to: `match` compiled once into a predicate over operation, project and spec.

import { projectOf, type PolicyDocument, type PolicyOperation, type ServiceSpec } from '../core/index.js';

/** A compiled `match`: each absent field matches everything. */
export interface CompiledMatch {
  operations?: ReadonlySet<PolicyOperation>;
  projects?: ReadonlySet<string>;
  services?: RegExp;
  labels?: readonly (readonly [string, string])[];
  /** Patterns tried against the full image reference. */
  images?: RegExp;
  /** Patterns without a tag or digest, tried against the image without its tag and digest. */
  repositories?: RegExp;
}

/**
 * One regular expression for a list of globs. As in Kyverno's wildcards, `*` matches any run of characters — `/` and
 * `:` included, so `registry.example/*` covers every repository (and tag) under that registry — and `?` any one
 * character; everything else is literal and the whole string must match.
 */
export const globsToRegExp = (globs: readonly string[]): RegExp => {
  const alternatives = globs.map((g) =>
    g
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
      .join(''),
  );
  // Globs only make `.*` runs without nesting, so this cannot backtrack exponentially.
  return new RegExp(`^(?:${alternatives.join('|')})$`, 's');
};

/** Whether an image pattern names a tag (`:tag` after the last `/`) or a digest (`@`). */
const hasTagOrDigest = (pattern: string): boolean => pattern.includes('@') || pattern.lastIndexOf(':') > pattern.lastIndexOf('/');

/** The image reference without its tag and digest: `registry.example:5000/x:1.2@sha256:…` → `registry.example:5000/x`. */
export const imageRepository = (image: string): string => {
  const noDigest = image.split('@')[0] ?? image;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
};

/**
 * Compiles a policy's `match`. An image pattern without a tag or digest matches every tag and digest of the images it
 * names (`registry.example/x` matches `registry.example/x:1.2`); one with a tag matches the full reference.
 */
export const compileMatch = (match: PolicyDocument['match']): CompiledMatch => {
  const tagged = match.images?.filter(hasTagOrDigest) ?? [];
  const untagged = match.images?.filter((p) => !hasTagOrDigest(p)) ?? [];
  return {
    ...(match.operations ? { operations: new Set(match.operations) } : {}),
    ...(match.projects ? { projects: new Set(match.projects) } : {}),
    ...(match.services ? { services: globsToRegExp(match.services) } : {}),
    ...(match.labels ? { labels: Object.entries(match.labels) } : {}),
    ...(tagged.length > 0 ? { images: globsToRegExp(tagged) } : {}),
    ...(untagged.length > 0 ? { repositories: globsToRegExp(untagged) } : {}),
  };
};

/** What `match` looks at in a request, computed once per request. */
export interface MatchSubject {
  operation: PolicyOperation;
  project: string;
  name: string;
  labels: Readonly<Record<string, string>>;
  image: string;
  /** The image without tag and digest. */
  repository: string;
}

export const matchSubject = (operation: PolicyOperation, spec: ServiceSpec): MatchSubject => ({
  operation,
  project: projectOf(spec),
  name: spec.name,
  labels: spec.labels,
  image: spec.task.container.image,
  repository: imageRepository(spec.task.container.image),
});

const imageMatches = (m: CompiledMatch, s: MatchSubject): boolean =>
  (m.images === undefined && m.repositories === undefined) || m.images?.test(s.image) === true || m.repositories?.test(s.repository) === true;

/** Whether a request falls under a compiled `match`. */
export const matchesSubject = (m: CompiledMatch, s: MatchSubject): boolean =>
  (m.operations?.has(s.operation) ?? true) &&
  (m.projects?.has(s.project) ?? true) &&
  (m.services?.test(s.name) ?? true) &&
  (m.labels?.every(([k, v]) => s.labels[k] === v) ?? true) &&
  imageMatches(m, s);
