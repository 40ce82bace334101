// Reading the exec runtime's append-only log files: lines from an offset, and where the last N lines begin.

import { open } from 'node:fs/promises';

const CHUNK = 64 * 1024;

/** Size of a file, 0 when it does not exist. */
export const fileSize = async (path: string): Promise<number> => {
  try {
    const fh = await open(path, 'r');
    try {
      return (await fh.stat()).size;
    } finally {
      await fh.close();
    }
  } catch {
    return 0;
  }
};

/**
 * Byte offset where the last `n` lines of a file begin. A final newline ends the last line rather than
 * starting an empty one; a final unterminated line counts as a line.
 */
export const tailOffset = async (path: string, n: number): Promise<number> => {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return 0;
  }
  try {
    const size = (await fh.stat()).size;
    if (n <= 0) return size;
    let found = 0;
    let end = size;
    const buf = Buffer.alloc(CHUNK);
    while (end > 0) {
      const start = Math.max(0, end - CHUNK);
      const { bytesRead } = await fh.read(buf, 0, end - start, start);
      for (let i = bytesRead - 1; i >= 0; i--) {
        const pos = start + i;
        if (buf[i] !== 0x0a || pos === size - 1) continue;
        found++;
        if (found === n) return pos + 1;
      }
      end = start;
    }
    return 0;
  } finally {
    await fh.close();
  }
};

/** A cursor over one append-only file: hands out whole lines, keeping an unterminated tail until it ends. */
export class LineReader {
  private partial: Buffer = Buffer.alloc(0);

  constructor(
    private readonly path: string,
    private offset: number,
  ) {}

  /**
   * Reads what was appended since the last call; returns the complete lines (without their newlines) and the file's
   * modification time taken after reading, which no line read can be newer than.
   */
  async readNew(): Promise<{ lines: string[]; grew: boolean; mtimeMs: number }> {
    let fh;
    try {
      fh = await open(this.path, 'r');
    } catch {
      return { lines: [], grew: false, mtimeMs: 0 };
    }
    const lines: string[] = [];
    let grew = false;
    let mtimeMs = 0;
    try {
      const buf = Buffer.alloc(CHUNK);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK, this.offset);
        if (bytesRead === 0) break;
        grew = true;
        this.offset += bytesRead;
        let data = Buffer.concat([this.partial, buf.subarray(0, bytesRead)]);
        let nl: number;
        while ((nl = data.indexOf(0x0a)) >= 0) {
          lines.push(data.subarray(0, nl).toString('utf8'));
          data = data.subarray(nl + 1);
        }
        this.partial = Buffer.from(data);
      }
      mtimeMs = (await fh.stat()).mtimeMs;
    } finally {
      await fh.close();
    }
    return { lines, grew, mtimeMs };
  }

  /** The unterminated last line, if any, once no more output will come. */
  flush(): string | undefined {
    if (this.partial.length === 0) return undefined;
    const s = this.partial.toString('utf8');
    this.partial = Buffer.alloc(0);
    return s;
  }
}
