// The etcd client of one EtcdStore: how it connects (TLS, timeouts, reconnects), how a call is bounded and retried,
// and how etcd's failures become ShoalErrors.
//
// Retry rule: a read is retried on another member after any transient failure; a write only when the failure
// proves etcd never carried it out (no connection, no leader, proposal dropped). A write that may have been applied
// (timeout or connection lost after sending) is reported as `unavailable`, never retried: a retried compare-and-set
// would fail its own compare and report a false conflict.

import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, isBrokenCircuitError, noop } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';
import type { IOptions } from 'etcd3';
import { ShoalError } from '../../core/index.js';
import type { ErrorCode } from '../../core/index.js';
import { backoffDelay } from '../../lib/backoff.js';
import { Slots } from '../../lib/slots.js';
import { CommittedObjects } from './committed.js';

/** TLS material of the etcd client, as PEM text. */
export interface EtcdTls {
  /** The CA that signed the etcd members' certificates. */
  ca: string;
  /** Client certificate and key, for members started with --client-cert-auth. */
  cert?: string;
  key?: string;
}

/** Whether a failed call can be retried: reads are idempotent, writes must not run twice. */
export type CallKind = 'read' | 'write';

/** Failures that prove the request was never carried out by etcd. */
const NOT_CARRIED_OUT = /No connection established|ECONNREFUSED|Failed to connect|etcdserver: no leader|raft proposal dropped|etcdserver: not capable/;
/** etcd's own bounds on a request, with the server flag that sets each. */
const LIMIT_HINTS: [RegExp, string][] = [
  [/too many operations in txn request/, " (etcd's --max-txn-ops bounds the operations of a transaction, 128 by default)"],
  [/request is too large/, " (etcd's --max-request-bytes bounds a request, 1.5 MiB by default)"],
];
/** Further failures after which a read is worth trying again (possibly on another member). */
const TRANSIENT = /etcdserver: (leader changed|request timed out|too many requests)/;

/**
 * Commits sent to etcd and not yet answered, at most. etcd renews a lease only once it has applied every write it
 * had committed, so a deep pipeline of large transactions delays renewals by however long applying it takes:
 * bench/scale, sending every commit at once (100 and more), lost the leader lease again and again (etcd let it
 * expire) while 1,000 nodes reported. 16 commits of at most 128 ops are about 0.1 s of applying for a one-member
 * etcd on two cores; with 4, a busy manager (one answer read per slot per event-loop turn) sent only about 30
 * commits a second. Queued commits go out interactive first, background (controllers, reports) after.
 */
const MAX_COMMITS_IN_FLIGHT = 16;

export class EtcdConnection {
  readonly client: Etcd3;
  /** Shared by the store and its term stores: they write through one client. */
  readonly commits = new Slots(MAX_COMMITS_IN_FLIGHT);
  /** What the store and its term stores committed lately, for the watches of this client to deliver. */
  readonly committed = new CommittedObjects();
  /** Aborts when the store is closed: watches and terms end on it. */
  private readonly closing = new AbortController();

  constructor(
    readonly endpoints: readonly string[],
    private readonly tls: EtcdTls | undefined,
    /** Bound on any one call, retries included. */
    readonly timeoutMs: number,
  ) {
    this.client = new Etcd3(clientOptions(endpoints, tls, timeoutMs));
  }

  get closed(): AbortSignal {
    return this.closing.signal;
  }

  /** Where the store is, for messages: the endpoints, never any TLS material. */
  get where(): string {
    return `etcd at ${this.endpoints.join(', ')}`;
  }

  /** A separate client of one member only (status asks every member itself); the caller closes it. */
  memberClient(endpoint: string): Etcd3 {
    return new Etcd3(clientOptions([endpoint], this.tls, this.timeoutMs));
  }

  /**
   * Runs `fn` (one etcd call, given its deadline) until it succeeds or `timeoutMs` has passed, retrying as the
   * rule at the top of this file says; failures become ShoalErrors saying `what` failed.
   */
  async call<T>(what: string, kind: CallKind, fn: (opts: { deadline: number }) => Promise<T>): Promise<T> {
    this.assertOpen();
    const deadline = Date.now() + this.timeoutMs;
    /** The last failure that says more than "the circuit breaker is open" (which only repeats an earlier one). */
    let cause: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn({ deadline });
      } catch (e) {
        if (cause === undefined || !isBrokenCircuitError(e)) cause = e;
        const retry = kind === 'read' ? isTransient(e) : notCarriedOut(e);
        const delay = backoffDelay(attempt, { baseMs: 50, maxMs: 500 });
        if (!retry || this.closed.aborted || Date.now() + delay >= deadline) throw this.error(cause, what, kind);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** `e` from an etcd call as a ShoalError naming the endpoints and what failed. */
  error(e: unknown, what: string, kind: CallKind): ShoalError {
    if (e instanceof ShoalError) return e;
    if (this.closed.aborted) return this.closedError();
    const message = e instanceof Error ? e.message : String(e);
    const code = errorCode(e, message);
    const maybeApplied = kind === 'write' && code === 'unavailable' && !notCarriedOut(e);
    const hint = maybeApplied ? ' (the write may or may not have been applied)' : (LIMIT_HINTS.find(([re]) => re.test(message))?.[1] ?? '');
    return new ShoalError(code, `${this.where}: cannot ${what}: ${message}${hint}`, { cause: e });
  }

  assertOpen(): void {
    if (this.closed.aborted) throw this.closedError();
  }

  /** Ends every watch and term (they listen to `closed`) and closes the client. Idempotent. */
  close(): void {
    if (this.closed.aborted) return;
    this.closing.abort();
    this.client.close();
  }

  private closedError(): ShoalError {
    return new ShoalError('unavailable', `the store on ${this.where} is closed`);
  }
}

const notCarriedOut = (e: unknown): boolean => isBrokenCircuitError(e) || (e instanceof Error && NOT_CARRIED_OUT.test(e.message));

const isTransient = (e: unknown): boolean =>
  notCarriedOut(e) || (e instanceof Error && (isRecoverableError(e) || TRANSIENT.test(e.message)));

/** The ShoalError code of an etcd failure. */
const errorCode = (e: unknown, message: string): ErrorCode => {
  if (message.includes('required revision has been compacted')) return 'failed_precondition';
  if (/too many operations in txn request|request is too large|duplicate key given in txn request/.test(message)) {
    return 'invalid_argument';
  }
  if (/permission denied/.test(message)) return 'permission_denied';
  if (/UNAUTHENTICATED|invalid auth token|authentication failed/.test(message)) return 'unauthenticated';
  if (isTransient(e) || /DEADLINE_EXCEEDED|UNAVAILABLE|client was already closed/.test(message)) return 'unavailable';
  return 'internal';
};

/**
 * Client settings: a deadline on every unary call; no retries inside the client (EtcdConnection.call decides);
 * a member that keeps failing is skipped for a second; lost connections are re-dialled fast; pings notice a
 * member that stopped answering on an open connection (etcd allows one every 5 s).
 */
const clientOptions = (endpoints: readonly string[], tls: EtcdTls | undefined, timeoutMs: number): IOptions => ({
  hosts: [...endpoints],
  ...(tls
    ? {
        credentials: {
          rootCertificate: Buffer.from(tls.ca),
          ...(tls.key !== undefined ? { privateKey: Buffer.from(tls.key) } : {}),
          ...(tls.cert !== undefined ? { certChain: Buffer.from(tls.cert) } : {}),
        },
      }
    : {}),
  defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
  faultHandling: {
    global: noop,
    host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }),
    // etcd3 takes the first step of a backoff and restarts from it after each successful reconnect.
    watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1_000 }).next(),
  },
  grpcOptions: {
    // Each client its own connections, so a reset really re-dials instead of reusing a backed-off one.
    'grpc.use_local_subchannel_pool': 1,
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1_000,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    // A list of many objects can exceed gRPC's 4 MiB default.
    'grpc.max_receive_message_length': 256 * 1024 * 1024,
    // HTTP/2 lets etcd send only as much as this window before the client acknowledges what it read, and the client
    // acknowledges on the event loop. With the 64 KiB default, a busy manager (turns of 50-100 ms while 1,000 nodes
    // report) read its watch at a few hundred KiB a second: bench/scale saw the cache 1-4 s behind etcd, and every
    // read-your-writes wait with it.
    'grpc-node.flow_control_window': 16 * 1024 * 1024,
  },
});
