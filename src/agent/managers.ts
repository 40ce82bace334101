// The order and pace in which an agent tries the managers it knows when it has no session.
//
// Only the leading manager serves agent sessions; the others answer 503 and name the leader when they know it. So
// the agent goes straight to a named leader, moves on at once past a manager it cannot reach, and waits only after a
// whole round of the managers failed: briefly while some manager answers (a leader is being elected and will be
// there soon), with the long backoff when none does. A manager found unreachable is skipped in the following rounds
// while others answer (a dead machine could cost a whole connect timeout every round); it is tried again when it is
// named the leader or when no manager answers at all.

import { ShoalError } from '../core/index.js';
import { backoffDelay, type BackoffOptions } from '../lib/backoff.js';
import { parseManagerList, preferFirst, sameList } from '../protocol/index.js';

/** How one attempt at a session ended. */
export type SessionOutcome =
  /** A session was established (and has since closed). */
  | { kind: 'welcomed' }
  /** The manager answered 503: it does not lead; `leader` is the one it knows, if any. */
  | { kind: 'not-leader'; leader?: string }
  /** The manager answered but will not serve this node (401/403 for a removed node, or any other status). */
  | { kind: 'refused' }
  /** No answer: refused or reset connection, timeout, TLS failure. */
  | { kind: 'unreachable' };

/** Waits when no manager answered a round: the agent's reconnect backoff as before HA. */
export const NO_ANSWER_BACKOFF: BackoffOptions = { baseMs: 100, maxMs: 2000 };
/** Waits while managers answer but none leads yet: short (≤ 192 ms), so a new leader is found soon after it wins. */
export const NO_LEADER_BACKOFF: BackoffOptions = { baseMs: 50, maxMs: 160 };

/** Which manager an agent tries next and how long it waits first; a pure state machine (randomness injected). */
export class ManagerRounds {
  private list: string[];
  /** Tried in the current round. */
  private readonly tried = new Set<string>();
  /** Answered 503 in the current round. */
  private readonly answered = new Set<string>();
  /** Unreachable in a round where others answered: left out of rounds until named leader or nobody answers. */
  private readonly skipped = new Set<string>();
  /** A leader named by a 503, to try next. */
  private redirect: string | undefined;
  private failedRounds = 0;

  constructor(
    managers: readonly string[],
    private readonly random: () => number = Math.random,
  ) {
    this.list = parseManagerList(managers);
    if (this.list.length === 0) throw new ShoalError('invalid_argument', 'the agent was given no manager address (HOST:PORT) to connect to');
  }

  /** Every known manager, the preferred (the one in use, or last used) first. */
  get managers(): readonly string[] {
    return this.list;
  }

  /** The address to try now. */
  next(): string {
    if (this.redirect !== undefined) return this.redirect;
    const untried = this.candidates().find((a) => !this.tried.has(a));
    // A round always has an untried candidate: record() starts a new round when the last one is used up.
    return untried ?? this.list[0] ?? '';
  }

  /** Records how the attempt at `address` ended; returns the milliseconds to wait before the next attempt. */
  record(address: string, outcome: SessionOutcome): number {
    this.redirect = undefined;
    if (outcome.kind === 'welcomed') {
      // Back to the same manager first (a lost session may be a blip), after the pause reconnects always had.
      this.list = preferFirst(this.list, address);
      this.skipped.clear();
      this.newRound();
      this.failedRounds = 0;
      return backoffDelay(0, { ...NO_ANSWER_BACKOFF, random: this.random });
    }
    this.tried.add(address);
    if (outcome.kind === 'unreachable') this.skipped.add(address);
    else this.skipped.delete(address);
    if (outcome.kind === 'not-leader') {
      this.answered.add(address);
      if (outcome.leader !== undefined && !this.tried.has(outcome.leader)) {
        this.redirect = outcome.leader;
        return 0;
      }
    }
    return this.candidates().some((a) => !this.tried.has(a)) ? 0 : this.endRound();
  }

  /**
   * Takes the managers a welcome listed, keeping `current` first when it is among them. An empty list (an older
   * manager sends none) changes nothing. Returns whether the list changed.
   */
  adopt(managers: unknown, current: string): boolean {
    const next = preferFirst(parseManagerList(managers), current);
    if (next.length === 0 || sameList(next, this.list)) return false;
    this.list = next;
    return true;
  }

  private candidates(): string[] {
    const live = this.list.filter((a) => !this.skipped.has(a));
    return live.length > 0 ? live : this.list;
  }

  /** A whole round failed: the next starts with those that answered; waits short if any did, else backs off. */
  private endRound(): number {
    const anyAnswered = this.answered.size > 0;
    this.list = [...this.list.filter((a) => this.answered.has(a)), ...this.list.filter((a) => !this.answered.has(a))];
    if (!anyAnswered) this.skipped.clear();
    this.newRound();
    const delay = backoffDelay(this.failedRounds, { ...(anyAnswered ? NO_LEADER_BACKOFF : NO_ANSWER_BACKOFF), random: this.random });
    this.failedRounds++;
    return delay;
  }

  private newRound(): void {
    this.tried.clear();
    this.answered.clear();
  }
}
