// bench/scale's floor: what this machine answers at while the control plane converges, away from the manager. A plain
// HTTP server in a process of its own serves the manager's `service ls` answer as it was before convergence, and the
// bench samples it beside the manager (one request in flight, the same gap). The manager's p99 then reads against what
// a process not busy with the control plane gets from the same cores in the same seconds.
//
// Started by bench/scale.ts with fork(): the body comes over IPC, the port goes back; it exits when the bench goes.

import { createServer } from 'node:http';

export interface FloorReady {
  port: number;
}

let body = '';
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});

process.once('message', (m: { body: string }) => {
  body = m.body;
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send?.({ port: typeof address === 'object' && address !== null ? address.port : 0 } satisfies FloorReady);
  });
});
process.on('disconnect', () => process.exit(0));
