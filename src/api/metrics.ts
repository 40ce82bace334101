// A small Prometheus metrics registry: gauges read at scrape time, labelled histograms, and the text exposition
// format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/), written by hand to need no dependency.

import { ShoalError } from '../core/index.js';

/** The Content-Type of the text exposition format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  labels: Labels;
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'histogram';
  /** Sample lines without the family's HELP and TYPE header. */
  lines(): string[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Registering a family wrongly is a programming error: fail at startup, naming the metric. */
const checkNames = (name: string, labelNames: readonly string[]): void => {
  if (!METRIC_NAME.test(name)) throw new ShoalError('internal', `invalid metric name '${name}'`);
  for (const l of labelNames) {
    if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new ShoalError('internal', `invalid label name '${l}' of metric '${name}'`);
  }
};

/** HELP text escapes backslash and newline; label values also escape the double quote. */
export const escapeHelp = (text: string): string => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
export const escapeLabelValue = (text: string): string => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/** Go's float formatting as Prometheus parses it: +Inf, -Inf, NaN, else the shortest round-tripping decimal. */
export const formatValue = (v: number): string => {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
};

const formatLabels = (labels: Labels): string => {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
};

const sampleLine = (name: string, labels: Labels, value: number): string => `${name}${formatLabels(labels)} ${formatValue(value)}`;

/** A histogram, optionally by labels: cumulative buckets (`le`), `_sum` and `_count` per label set. */
export class Histogram implements Family {
  readonly type = 'histogram';
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  private readonly buckets: number[];

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    private readonly labelNames: readonly string[] = [],
  ) {
    checkNames(name, labelNames);
    if (labelNames.includes('le')) throw new ShoalError('internal', `histogram '${name}' cannot have a label named 'le'`);
    this.buckets = [...new Set(buckets)].filter((b) => Number.isFinite(b)).sort((a, b) => a - b);
    // Without labels the one series exists from the start (all zero), as client libraries do.
    if (labelNames.length === 0) this.series.set('[]', this.emptySeries({}));
  }

  private emptySeries(labels: Labels): { labels: Labels; counts: number[]; sum: number; count: number } {
    return { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }

  /** Records one value; `labels` must name exactly the histogram's label names. */
  observe(value: number, labels: Labels = {}): void {
    const names = Object.keys(labels);
    if (names.length !== this.labelNames.length || !this.labelNames.every((l) => l in labels)) {
      throw new ShoalError('internal', `histogram '${this.name}' takes labels [${this.labelNames.join(', ')}], not [${names.join(', ')}]`);
    }
    // One key per label set, in the declared label order so that {a,b} and {b,a} are the same series.
    const ordered = Object.fromEntries(this.labelNames.map((l) => [l, labels[l] ?? '']));
    const key = JSON.stringify(Object.values(ordered));
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = this.emptySeries(ordered)));
    for (let i = 0; i < this.buckets.length; i++) if (value <= (this.buckets[i] ?? 0)) s.counts[i] = (s.counts[i] ?? 0) + 1;
    s.sum += value;
    s.count++;
  }

  lines(): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => out.push(sampleLine(`${this.name}_bucket`, { ...s.labels, le: formatValue(b) }, s.counts[i] ?? 0)));
      out.push(sampleLine(`${this.name}_bucket`, { ...s.labels, le: '+Inf' }, s.count));
      out.push(sampleLine(`${this.name}_sum`, s.labels, s.sum));
      out.push(sampleLine(`${this.name}_count`, s.labels, s.count));
    }
    return out;
  }
}

export class Registry {
  private readonly families = new Map<string, Family>();

  /** A gauge whose samples are read from `collect` at each scrape (a number, or one sample per label set). */
  gauge(name: string, help: string, collect: () => number | Sample[]): void {
    checkNames(name, []);
    this.add({
      name,
      help,
      type: 'gauge',
      lines: () => {
        const v = collect();
        const samples = typeof v === 'number' ? [{ labels: {}, value: v }] : v;
        for (const s of samples) checkNames(name, Object.keys(s.labels));
        return samples.map((s) => sampleLine(name, s.labels, s.value));
      },
    });
  }

  histogram(name: string, help: string, opts: { buckets: readonly number[]; labelNames?: readonly string[] }): Histogram {
    const h = new Histogram(name, help, opts.buckets, opts.labelNames);
    this.add(h);
    return h;
  }

  /** Every family in the text exposition format, in registration order, ending with a newline. */
  render(): string {
    const out: string[] = [];
    for (const f of this.families.values()) out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`, ...f.lines());
    return out.join('\n') + '\n';
  }

  private add(f: Family): void {
    if (this.families.has(f.name)) throw new ShoalError('internal', `metric '${f.name}' is registered twice`);
    this.families.set(f.name, f);
  }
}
