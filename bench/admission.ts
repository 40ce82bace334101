// bench/admission: the latency that active policies add to a service update, with 1, 10 and 100 policies against the
// same update with none, in the same run. Prints end-to-end p50/p99 over HTTPS (what a client sees; on a busy machine
// its p99 is mostly noise), the manager's own admission time per policy count (the added latency itself: its
// shoal_admission_duration_seconds histogram, scraped around each block of updates, quantiles interpolated within
// buckets as Prometheus' histogram_quantile does), and the engine alone timed in this process.
//
//   node dist/bench/admission.js [--updates 300] [--rounds 3]

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ShoalClient } from '../src/cli/client.js';
import type { Service } from '../src/core/index.js';
import { admit, compilePolicy } from '../src/policy/index.js';
import { parsePolicyDocuments } from '../src/protocol/index.js';
import { benchCluster, median } from './cluster-support.js';
import { freePort, httpsRequest, killExecTasks } from '../test/helpers.js';

const { values } = parseArgs({ options: { updates: { type: 'string', default: '300' }, rounds: { type: 'string', default: '3' } } });
const UPDATES = Number(values.updates);
const ROUNDS = Number(values.rounds);
const COUNTS = [0, 1, 10, 100];

/**
 * Policy i: one of four shapes teams write (who may deploy, a replica cap from params, allowed registries, a required
 * label), each matching the benchmark's service and passing, so every validation of every policy is evaluated.
 */
const policyYaml = (i: number): string => {
  const shapes = [
    `validations:\n  - expression: "request.user in ['admin', 'dev-a', 'dev-b', 'dev-c']"\n    message: "only the deployers may deploy"`,
    `validations:\n  - expression: "!has(object.replicas) || object.replicas <= params.max"\n    message: "at most params.max replicas"\nparams:\n  max: ${1000 + i}`,
    `validations:\n  - expression: "params.registries.exists(r, object.image.startsWith(r + '/')) || object.image == 'sh'"\n    message: "allowed registries only"\nparams:\n  registries: ["registry.example", "mirror.example", "ghcr.example"]`,
    `validations:\n  - expression: "'team' in object.labels && object.labels['team'] != ''"\n    message: "every service names its team"`,
  ];
  return `kind: Policy\nname: bench-${i}\nmatch: {operations: [create, update, scale], services: ["bench*"]}\n${shapes[i % shapes.length]}\naction: deny\n`;
};

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
};

/** The q-quantile of a cumulative histogram (upper bound → count), interpolated linearly within its bucket. */
const histogramQuantile = (buckets: Map<number, number>, q: number): number => {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  let [prevLe, prevCount] = [0, 0];
  for (const [le, count] of sorted) {
    if (count >= q * total && total > 0) return le === Infinity ? prevLe : prevLe + ((le - prevLe) * (q * total - prevCount)) / Math.max(1, count - prevCount);
    [prevLe, prevCount] = [le, count];
  }
  return prevLe;
};

const fmt = (ms: number): string => ms.toFixed(3).padStart(8);

const main = async (): Promise<void> => {
  const { dir, shoal, stop, context } = benchCluster('shoal-admission-');
  const addr = `127.0.0.1:${await freePort()}`;
  shoal('init', '--detach', '--data-dir', join(dir, 'manager'), '--listen-addr', addr, '--runtime', 'exec');
  const ctx = context();
  const client = new ShoalClient({ hosts: ctx.hosts, token: ctx.token, ca: ctx.ca });
  try {
    await client.raw('POST', '/services', { name: 'bench', labels: { team: 'shop' }, mode: { replicated: { replicas: 0 } }, task: { container: { image: 'sh' } } });
    const samples = new Map<number, number[]>(COUNTS.map((n) => [n, []]));
    const server = new Map<number, Map<number, number>>(COUNTS.map((n) => [n, new Map()]));
    const scrape = async (): Promise<Map<number, number>> => {
      const text = String((await httpsRequest(addr, '/metrics', { ca: ctx.ca, headers: { authorization: `Bearer ${ctx.token}` } })).json);
      const buckets = new Map<number, number>();
      for (const m of text.matchAll(/^shoal_admission_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)) buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
      return buckets;
    };
    let serial = 0;
    const setPolicies = async (n: number): Promise<void> => {
      const current = ((await client.raw('GET', '/policies')) as { id: string }[]).map((p) => p.id);
      for (const id of current) if (Number(id.slice('bench-'.length)) >= n) await client.raw('DELETE', `/policies/${id}`);
      if (n > 0) await client.raw('POST', '/policies', { source: Array.from({ length: n }, (_, i) => policyYaml(i)).join('---\n') });
    };
    const update = async (): Promise<number> => {
      const s = (await client.raw('GET', '/services/bench')) as Service;
      const spec = { ...s.spec, labels: { ...s.spec.labels, serial: String(++serial) } };
      const t0 = performance.now();
      await client.raw('POST', '/services/bench/update', { spec });
      return performance.now() - t0;
    };
    // Rounds interleave the policy counts, so drift of the machine over the run falls on every count alike.
    for (let round = 0; round < ROUNDS; round++) {
      for (const n of COUNTS) {
        await setPolicies(n);
        for (let i = 0; i < 20; i++) await update(); // warm-up: JIT, connection, compiled-policy cache
        const before = await scrape();
        for (let i = 0; i < UPDATES; i++) samples.get(n)?.push(await update());
        const after = await scrape();
        const acc = server.get(n);
        for (const [le, count] of after) acc?.set(le, (acc.get(le) ?? 0) + count - (before.get(le) ?? 0));
      }
    }

    // The engine alone, in this process: the same policies on the same spec.
    const spec = ((await client.raw('GET', '/services/bench')) as Service).spec;
    const engine = new Map<number, number[]>();
    for (const n of COUNTS) {
      const compiled = n === 0 ? [] : parsePolicyDocuments(Array.from({ length: n }, (_, i) => policyYaml(i)).join('---\n')).map(compilePolicy);
      const xs: number[] = [];
      for (let i = 0; i < 2000; i++) {
        const t0 = performance.now();
        admit(compiled, { user: 'admin', teams: [], operation: 'update', object: spec, oldObject: spec }, { now: () => performance.now() });
        xs.push(performance.now() - t0);
      }
      engine.set(n, xs.slice(200));
    }

    const base = samples.get(0) ?? [];
    const [b50, b99] = [quantile(base, 0.5), quantile(base, 0.99)];
    console.log(`\nservice update latency (ms), ${ROUNDS} rounds x ${UPDATES} updates per policy count, one manager on SQLite, HTTPS on loopback`);
    console.log('policies |   e2e p50 |   e2e p99 | added p50 | added p99 | manager admission p50 | p99 | engine p50 | engine p99');
    const summary: Record<string, unknown>[] = [];
    for (const n of COUNTS) {
      const xs = samples.get(n) ?? [];
      const e = engine.get(n) ?? [];
      const h = server.get(n) ?? new Map<number, number>();
      const row = {
        policies: n,
        p50: quantile(xs, 0.5),
        p99: quantile(xs, 0.99),
        addedP50: quantile(xs, 0.5) - b50,
        addedP99: quantile(xs, 0.99) - b99,
        admissionP50: histogramQuantile(h, 0.5) * 1000,
        admissionP99: histogramQuantile(h, 0.99) * 1000,
        engineP50: quantile(e, 0.5),
        engineP99: quantile(e, 0.99),
      };
      summary.push(row);
      console.log(`${String(n).padStart(8)} | ${fmt(row.p50)}  | ${fmt(row.p99)}  | ${fmt(row.addedP50)}  | ${fmt(row.addedP99)}  |              ${fmt(row.admissionP50)} | ${fmt(row.admissionP99)} | ${fmt(row.engineP50)}   | ${fmt(row.engineP99)}`);
    }
    console.log(`\ntarget: <= 1 ms added at p99 with 100 policies; median update with none ${b50.toFixed(2)} ms (median of medians ${median(base).toFixed(2)} ms)`);
    console.log(JSON.stringify({ bench: 'admission', updates: UPDATES, rounds: ROUNDS, results: summary }));
  } finally {
    client.close();
    stop('manager');
    killExecTasks(join(dir, 'manager'));
  }
};

await main();
