// Spread ranking: picks, among a group's candidate nodes, the one that best spreads a service, via nested heaps.
//
// Without preferences the order is (tasks of the service on the node, tasks on the node, node id).
// Each spread preference adds a level above that: nodes are grouped by the value of the preference's
// attribute (nodes without it form one more group) and groups are ordered by (tasks of the service in
// the group, value). Preferences nest in order, so the structure is a tree of heaps whose leaves are nodes.
//
// Keys are kept lazily: an entry stores the counts it was ordered by, and when it reaches the top of
// its heap the counts are re-read; if they moved, the entry sinks and the next one is tried. That is
// correct because within a batch counts only grow, so a stored key is never above the true key and a
// top entry whose stored key is current is a true minimum. A placement therefore costs O(depth · log n),
// never a pass over the nodes.

import { compareText, nodeAttribute } from '../core/index.js';
import type { NodeInfo } from './filters.js';
import { Heap } from './heap.js';

interface LeafSlot {
  info: NodeInfo;
  /** Tasks of the service on the node, when last ordered. */
  svc: number;
  /** Tasks on the node, when last ordered. */
  total: number;
}

interface GroupSlot {
  /** The node attribute is absent on this group's nodes; such a group orders after all valued ones. */
  missing: boolean;
  value: string;
  /** Key of this group's count in SpreadCounts. */
  counterKey: string;
  /** Tasks of the service in the group, when last ordered. */
  count: number;
  level: Level;
}

type Level = { kind: 'leaves'; heap: Heap<LeafSlot> } | { kind: 'groups'; heap: Heap<GroupSlot> };

const leafLess = (a: LeafSlot, b: LeafSlot): boolean =>
  a.svc !== b.svc ? a.svc < b.svc : a.total !== b.total ? a.total < b.total : a.info.node.id < b.info.node.id;

const groupLess = (a: GroupSlot, b: GroupSlot): boolean =>
  a.count !== b.count ? a.count < b.count : a.missing !== b.missing ? !a.missing : compareText(a.value, b.value) < 0;

/** One (service, preference list) whose per-group task counts are being kept. */
interface Signature {
  serviceId: string;
  prefs: readonly string[];
  /** Per node id: the counter key of each level of the node's group path. */
  paths: Map<string, string[]>;
}

/**
 * Tasks of a service per spread group, over all nodes of the snapshot (a full or unready node still
 * holds its tasks, and they still count toward their group's share). Shared by every task group of
 * the batch, so two versions of one service spread as one.
 */
export class SpreadCounts {
  private readonly counts = new Map<string, number>();
  private readonly byService = new Map<string, Signature[]>();
  private readonly bySignature = new Map<string, Signature>();

  constructor(private readonly nodes: readonly NodeInfo[]) {}

  /** Starts (once) keeping counts for `serviceId` grouped by `prefs`, seeded from the nodes' current counts. */
  signature(serviceId: string, prefs: readonly string[]): Signature {
    const key = `${serviceId}\0${prefs.join('\0')}`;
    let sig = this.bySignature.get(key);
    if (sig) return sig;
    sig = { serviceId, prefs, paths: new Map() };
    this.bySignature.set(key, sig);
    const list = this.byService.get(serviceId);
    if (list) list.push(sig);
    else this.byService.set(serviceId, [sig]);
    // Without preferences there are no group levels, hence no counts to seed (a node's own count is read from it).
    if (prefs.length === 0) return sig;
    for (const info of this.nodes) {
      const n = info.serviceCounts.get(serviceId);
      if (n > 0) for (const k of this.path(sig, info)) this.counts.set(k, (this.counts.get(k) ?? 0) + n);
    }
    return sig;
  }

  count(counterKey: string): number {
    return this.counts.get(counterKey) ?? 0;
  }

  /** Records one more task of `serviceId` on `info`'s node. */
  placed(serviceId: string, info: NodeInfo): void {
    const sigs = this.byService.get(serviceId);
    if (!sigs) return;
    for (const sig of sigs) {
      for (const k of this.path(sig, info)) this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
    }
  }

  /** Counter keys of the node's group at each level: the service, then attribute=value pairs so far. */
  path(sig: Signature, info: NodeInfo): string[] {
    let keys = sig.paths.get(info.node.id);
    if (keys) return keys;
    keys = [];
    let prefix = sig.serviceId;
    for (const attr of sig.prefs) {
      const v = nodeAttribute(info.node, attr);
      prefix += `\0${attr}${v === undefined ? '\u0001' : `=${v}`}`;
      keys.push(prefix);
    }
    sig.paths.set(info.node.id, keys);
    return keys;
  }
}

/** Hands out the best candidate node of one task group, one task at a time. */
export class Ranker {
  private readonly root: Level;
  private readonly sig: Signature;
  private readonly spread: SpreadCounts;

  constructor(
    private readonly serviceId: string,
    candidates: readonly NodeInfo[],
    opts: { prefs: readonly string[]; spread: SpreadCounts },
  ) {
    this.spread = opts.spread;
    this.sig = opts.spread.signature(serviceId, opts.prefs);
    this.root = this.build(candidates, 0);
  }

  /**
   * The best node for which `fits` holds, or undefined when none is left. Nodes that do not fit are
   * dropped for good (dynamic filters only ever start failing during a batch). The caller must record
   * the placement in the NodeInfo and SpreadCounts before asking again.
   */
  next(fits: (info: NodeInfo) => boolean): NodeInfo | undefined {
    return this.pick(this.root, fits);
  }

  private build(nodes: readonly NodeInfo[], depth: number): Level {
    if (depth === this.sig.prefs.length) {
      const slots = nodes.map((info) => ({ info, svc: info.serviceCounts.get(this.serviceId), total: info.taskCount }));
      return { kind: 'leaves', heap: new Heap(leafLess, slots) };
    }
    const attr = this.sig.prefs[depth] ?? '';
    const byKey = new Map<string, { value: string | undefined; nodes: NodeInfo[] }>();
    for (const info of nodes) {
      const key = this.spread.path(this.sig, info)[depth] ?? '';
      const g = byKey.get(key);
      if (g) g.nodes.push(info);
      else byKey.set(key, { value: nodeAttribute(info.node, attr), nodes: [info] });
    }
    const slots: GroupSlot[] = [];
    for (const [counterKey, g] of byKey) {
      slots.push({
        missing: g.value === undefined,
        value: g.value ?? '',
        counterKey,
        count: this.spread.count(counterKey),
        level: this.build(g.nodes, depth + 1),
      });
    }
    return { kind: 'groups', heap: new Heap(groupLess, slots) };
  }

  private pick(level: Level, fits: (info: NodeInfo) => boolean): NodeInfo | undefined {
    if (level.kind === 'leaves') {
      const heap = level.heap;
      for (let top = heap.peek(); top; top = heap.peek()) {
        const svc = top.info.serviceCounts.get(this.serviceId);
        const total = top.info.taskCount;
        if (svc !== top.svc || total !== top.total) {
          top.svc = svc;
          top.total = total;
          heap.topChanged();
        } else if (!fits(top.info)) {
          heap.pop();
        } else {
          return top.info;
        }
      }
      return undefined;
    }
    const heap = level.heap;
    for (let top = heap.peek(); top; top = heap.peek()) {
      const count = this.spread.count(top.counterKey);
      if (count !== top.count) {
        top.count = count;
        heap.topChanged();
        continue;
      }
      const info = this.pick(top.level, fits);
      if (info) return info;
      heap.pop(); // nothing in this group fits any more
    }
    return undefined;
  }
}
