// The text of a WebSocket message, however the `ws` library chose to deliver it (Buffer, ArrayBuffer or fragments).

import type { RawData } from 'ws';

export const rawText = (data: RawData): string =>
  (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
