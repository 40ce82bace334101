// Cluster events (`GET /v1/events`, `shoal events`): derived from the store's watch, kept in a bounded ring per
// manager, and streamed as NDJSON.
//
// Every manager's cache follows the same store, so every manager derives the same events and can serve them. The
// history a manager keeps starts when it started (and holds at most EVENT_HISTORY events): a `since` before that is
// answered with what there is, and the response's EVENTS_HISTORY_HEADER says from when the history is complete.

import type { Node, Service, StoredObject, Task } from '../core/index.js';
import { ShoalError, invalid } from '../core/index.js';
import type { Clock } from '../lib/clock.js';
import { isoNow } from '../lib/clock.js';
import { EVENTS_HISTORY_HEADER, type ClusterEvent, type ClusterEventType } from '../protocol/index.js';
import type { Cache } from '../store/cache.js';
import type { WatchEvent } from '../store/store.js';
import { queryFlag, type RequestContext } from './http.js';
import { parseTimeQuery } from './time-query.js';

/** Events each manager keeps for `since`. */
export const EVENT_HISTORY = 10_000;
/** A follower that leaves this much unread is cut off rather than buffered without bound. */
const MAX_UNREAD_BYTES = 4 * 1024 * 1024;
/** setTimeout's longest delay; a later `until` re-arms the timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Attributes = Record<string, string>;

/** Adds `key` (the new value) and `key.old` when the value changed; returns whether it did. */
const diff = (attrs: Attributes, key: string, old: string, now: string): boolean => {
  if (old === now) return false;
  attrs[key] = now;
  attrs[`${key}.old`] = old;
  return true;
};

const serviceAttributes = (s: Service): Attributes => ({
  image: s.spec.task.container.image,
  ...('replicated' in s.spec.mode ? { mode: 'replicated', replicas: String(s.spec.mode.replicated.replicas) } : { mode: 'global' }),
});

const replicasOf = (s: Service): string => ('replicated' in s.spec.mode ? String(s.spec.mode.replicated.replicas) : 'global');

const serviceEvents = (s: Service, prev: Service | undefined, type: WatchEvent['type']): Pick<ClusterEvent, 'action' | 'attributes'>[] => {
  if (type === 'delete') return [{ action: 'remove', attributes: {} }];
  if (!prev) return [{ action: 'create', attributes: serviceAttributes(s) }];
  const attrs: Attributes = {};
  diff(attrs, 'image', prev.spec.task.container.image, s.spec.task.container.image);
  diff(attrs, 'replicas', replicasOf(prev), replicasOf(s));
  const stateChanged = diff(attrs, 'updatestate', prev.updateStatus?.state ?? '', s.updateStatus?.state ?? '');
  if (stateChanged && s.updateStatus?.message) attrs.message = s.updateStatus.message;
  // Other writes (the version bump alone) are not news.
  return stateChanged || JSON.stringify(prev.spec) !== JSON.stringify(s.spec) ? [{ action: 'update', attributes: attrs }] : [];
};

const taskName = (t: Task): string => `${t.serviceName}.${t.slot === 0 ? t.nodeId : t.slot}`;

const taskAttributes = (t: Task): Attributes => ({
  service: t.serviceName,
  serviceId: t.serviceId,
  slot: String(t.slot),
  ...(t.nodeId ? { node: t.nodeId } : {}),
  state: t.status.state,
  desiredState: t.desiredState,
  ...(t.status.error ? { error: t.status.error } : {}),
  ...(t.status.exitCode === undefined ? {} : { exitCode: String(t.status.exitCode) }),
});

const taskEvents = (t: Task, prev: Task | undefined, type: WatchEvent['type']): Pick<ClusterEvent, 'action' | 'attributes'>[] => {
  if (type === 'delete') return [{ action: 'remove', attributes: taskAttributes(t) }];
  if (!prev) return [{ action: 'create', attributes: taskAttributes(t) }];
  const out: Pick<ClusterEvent, 'action' | 'attributes'>[] = [];
  if (prev.desiredState !== t.desiredState) out.push({ action: 'desired', attributes: { ...taskAttributes(t), 'desiredState.old': prev.desiredState } });
  if (prev.status.state !== t.status.state) out.push({ action: 'state', attributes: { ...taskAttributes(t), 'state.old': prev.status.state } });
  return out;
};

const nodeEvents = (n: Node, prev: Node | undefined, type: WatchEvent['type']): Pick<ClusterEvent, 'action' | 'attributes'>[] => {
  const base = { role: n.spec.role, address: n.description.address };
  if (type === 'delete') return [{ action: 'remove', attributes: base }];
  if (!prev) return [{ action: 'create', attributes: { ...base, availability: n.spec.availability, state: n.status.state } }];
  const out: Pick<ClusterEvent, 'action' | 'attributes'>[] = [];
  const spec: Attributes = { ...base };
  const changed = [
    diff(spec, 'role', prev.spec.role, n.spec.role),
    diff(spec, 'availability', prev.spec.availability, n.spec.availability),
    diff(spec, 'labels', JSON.stringify(prev.spec.labels), JSON.stringify(n.spec.labels)),
  ];
  if (changed.some(Boolean)) out.push({ action: 'update', attributes: spec });
  const status: Attributes = { ...base };
  if (diff(status, 'state', prev.status.state, n.status.state)) {
    if (n.status.message) status.message = n.status.message;
    out.push({ action: n.status.state === 'ready' ? 'up' : 'down', attributes: status });
  }
  return out;
};

/**
 * The cluster events one watch event makes (none for writes that change nothing worth telling, such as a node's
 * heartbeat time). `now` (ISO) dates removals; other events carry the write's own time.
 */
export const clusterEvents = (ev: WatchEvent, now: string): ClusterEvent[] => {
  const o: StoredObject = ev.object;
  const made =
    o.kind === 'service'
      ? { type: 'service' as const, name: o.spec.name, list: serviceEvents(o, ev.prev as Service | undefined, ev.type) }
      : o.kind === 'task'
        ? { type: 'task' as const, name: taskName(o), list: taskEvents(o, ev.prev as Task | undefined, ev.type) }
        : o.kind === 'node'
          ? { type: 'node' as const, name: o.description.hostname || o.id, list: nodeEvents(o, ev.prev as Node | undefined, ev.type) }
          : undefined;
  if (!made) return [];
  const time = ev.type === 'delete' ? now : o.meta.updatedAt;
  return made.list.map((e) => ({ revision: ev.revision, time, type: made.type, action: e.action, id: ev.id, name: made.name, attributes: e.attributes }));
};

/** A fixed-size ring of the latest items. */
class Ring<T> {
  private readonly items: T[] = [];
  private next = 0;
  /** Items pushed out to make room. */
  dropped = 0;

  constructor(private readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) {
      this.items.push(item);
      return;
    }
    this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
    this.dropped++;
  }

  /** Oldest first. */
  toArray(): T[] {
    return [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
  }
}

/** This manager's event history since it started, and the live feed of new events. */
export class EventLog {
  private readonly ring: Ring<ClusterEvent>;
  private readonly listeners = new Set<(e: ClusterEvent) => void>();
  private readonly started: string;

  constructor(
    cache: Cache,
    private readonly clock: Clock,
    capacity = EVENT_HISTORY,
  ) {
    this.ring = new Ring(capacity);
    this.started = isoNow(clock);
    cache.subscribe((batch) => this.record(batch));
  }

  /** ISO time from which the history is complete: when this log started, or the oldest event kept once some were dropped. */
  historyStart(): string {
    return this.ring.dropped > 0 ? (this.ring.toArray()[0]?.time ?? this.started) : this.started;
  }

  /** Events kept, oldest first. */
  history(): ClusterEvent[] {
    return this.ring.toArray();
  }

  /** Calls `listener` with every new event until the returned function is called. */
  subscribe(listener: (e: ClusterEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private record(batch: WatchEvent[]): void {
    const now = isoNow(this.clock);
    for (const ev of batch) {
      for (const e of clusterEvents(ev, now)) {
        this.ring.push(e);
        for (const l of this.listeners) l(e);
      }
    }
  }
}

/** The event types of `filter=type=…` parameters (repeatable; several values match any of them). */
export const parseEventFilters = (filters: string[]): Set<ClusterEventType> => {
  const types = new Set<ClusterEventType>();
  for (const f of filters) {
    const [key, value] = f.split('=', 2);
    if (key !== 'type') throw invalid('filter', `'${f}' is not a filter: events filter on type (type=service, type=task or type=node)`);
    if (value !== 'service' && value !== 'task' && value !== 'node') throw invalid('filter', `'${value ?? ''}' is not an event type: use service, task or node`);
    types.add(value);
  }
  return types;
};

/**
 * `GET /v1/events?since&until&filter&follow`: the history from `since` (all of it without `since`, unless following),
 * then with `follow` the new events as they come, until `until` passes or the client goes away.
 */
export const serveEvents = async (c: RequestContext, log: EventLog, clock: Clock): Promise<void> => {
  const now = clock.now();
  const since = parseTimeQuery(c.query.get('since'), now, 'since');
  const until = parseTimeQuery(c.query.get('until'), now, 'until');
  const types = parseEventFilters(c.query.getAll('filter'));
  const follow = queryFlag(c.query, 'follow') && (until === undefined || until > now);
  const wanted = (e: ClusterEvent): boolean => {
    const t = Date.parse(e.time);
    return (types.size === 0 || types.has(e.type)) && (since === undefined || t >= since) && (until === undefined || t <= until);
  };
  // Following without `since` starts from now, like `docker events`; a one-off answer without it gives everything.
  const history = since === undefined && follow ? [] : log.history().filter(wanted);
  c.res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', [EVENTS_HISTORY_HEADER]: log.historyStart() });
  // Taking the history and subscribing happen in one turn of the event loop: no event is missed or sent twice.
  if (follow) await followEvents(c, log, clock, { history, wanted, until });
  else for (const e of history) c.res.write(JSON.stringify(e) + '\n');
  c.res.end();
};

/** Sends `history`, then every new wanted event, until `until`, the client leaves, or it reads too slowly. */
const followEvents = async (
  c: RequestContext,
  log: EventLog,
  clock: Clock,
  o: { history: ClusterEvent[]; wanted: (e: ClusterEvent) => boolean; until: number | undefined },
): Promise<void> => {
  let tooSlow = false;
  await new Promise<void>((resolve) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      done = true;
      unsubscribe();
      clearTimeout(timer);
      c.signal.removeEventListener('abort', finish);
      resolve();
    };
    const send = (e: ClusterEvent): void => {
      if (done || !o.wanted(e)) return;
      if (c.res.writableLength > MAX_UNREAD_BYTES) {
        tooSlow = true;
        finish();
        return;
      }
      c.res.write(JSON.stringify(e) + '\n');
    };
    const unsubscribe = log.subscribe(send);
    c.signal.addEventListener('abort', finish, { once: true });
    const { until } = o;
    const arm = (): void => {
      if (until === undefined) return;
      const left = until - clock.now();
      if (left <= 0) finish();
      else timer = setTimeout(arm, Math.min(MAX_TIMER_MS, left));
    };
    arm();
    for (const e of o.history) send(e);
  });
  if (tooSlow) throw new ShoalError('unavailable', `event stream ended: the client left more than ${MAX_UNREAD_BYTES} bytes unread; reconnect with since= the last event's time`);
};
