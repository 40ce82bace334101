// Turns the Docker Engine's multiplexed log stream (8-byte frame headers, optional timestamps) into LogLines.

import type { LogLine } from '../runtime.js';

type Stream = LogLine['stream'];

/** A frame header is [stream type, 0, 0, 0, payload length (uint32 BE)]; type 1 = stdout, 2 = stderr. */
const HEADER = 8;
/** What `timestamps=true` puts before each message: RFC 3339 with nanoseconds, then one space. */
const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) /;

interface Partial {
  /** Bytes of a line not yet ended by a newline (kept as bytes so a split UTF-8 sequence survives). */
  chunks: Buffer[];
  /** Time of the first message of the line. */
  time?: string;
}

/**
 * Incremental decoder. Invariants: frames may be split across chunks and lines across frames; a line is
 * emitted once its newline arrives (or at `end()`); each stream keeps its own pending line, so interleaved
 * stdout/stderr frames never mix.
 */
export class DockerLogDecoder {
  private pending: Buffer = Buffer.alloc(0);
  /** Set when the first bytes are not a frame header: a TTY container, whose output is raw stdout. */
  private raw = false;
  private sniffed = false;
  private readonly partial: Record<Stream, Partial> = { stdout: { chunks: [] }, stderr: { chunks: [] } };

  constructor(private readonly opts: { timestamps: boolean }) {}

  /** Feeds bytes; returns the lines they complete. */
  push(chunk: Buffer): LogLine[] {
    const out: LogLine[] = [];
    if (!this.sniffed && chunk.length > 0) {
      this.sniffed = true;
      const t = chunk[0];
      this.raw = t !== 0 && t !== 1 && t !== 2;
    }
    if (this.raw) {
      this.message('stdout', chunk, out);
      return out;
    }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      if (this.pending.length < HEADER) break;
      const size = this.pending.readUInt32BE(4);
      if (this.pending.length < HEADER + size) break;
      const type = this.pending[0];
      const payload = this.pending.subarray(HEADER, HEADER + size);
      this.pending = this.pending.subarray(HEADER + size);
      this.message(type === 2 ? 'stderr' : 'stdout', payload, out);
    }
    return out;
  }

  /** Flushes lines that never got their newline (the stream ended). */
  end(): LogLine[] {
    const out: LogLine[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const p = this.partial[stream];
      if (p.chunks.length > 0) out.push(this.line(stream, Buffer.concat(p.chunks), p.time));
      this.partial[stream] = { chunks: [] };
    }
    return out;
  }

  /** One Docker log message: an optional timestamp prefix, then text that may hold zero or more newlines. */
  private message(stream: Stream, payload: Buffer, out: LogLine[]): void {
    let body = payload;
    let time: string | undefined;
    if (this.opts.timestamps && !this.raw) {
      // The prefix is ASCII, so decoding only its first bytes cannot split a character that matters.
      const head = payload.subarray(0, 40).toString('latin1');
      const m = TIMESTAMP.exec(head);
      if (m?.[1]) {
        const ms = Date.parse(m[1]);
        time = Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
        body = payload.subarray(m[0].length);
      }
    }
    const p = this.partial[stream];
    let start = 0;
    for (;;) {
      const nl = body.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = body.subarray(start, nl);
      const lineTime = p.chunks.length > 0 ? p.time : time;
      const bytes = p.chunks.length > 0 ? Buffer.concat([...p.chunks, piece]) : piece;
      out.push(this.line(stream, bytes, lineTime));
      p.chunks = [];
      p.time = undefined;
      start = nl + 1;
    }
    if (start < body.length) {
      if (p.chunks.length === 0) p.time = time;
      // Copy: the payload may be a view into a buffer that is reused.
      p.chunks.push(Buffer.from(body.subarray(start)));
    }
  }

  private line(stream: Stream, bytes: Buffer, time: string | undefined): LogLine {
    const text = bytes.toString('utf8');
    return time === undefined ? { stream, line: text } : { stream, time, line: text };
  }
}
