/**
 * The benchmark's Node.js anchor: plain `node:http` answering every request with one Buffer
 * and a fixed set of headers, the ones the service sent for the same image (ANCHOR_REPLY names
 * a JSON file `{ headers, bodyFile }`). No routing, no parsing, no cache: the most any Node.js
 * server can do with this reply on one core (Node has no sendfile; the body is copied into the
 * socket). Listens on 127.0.0.1:ANCHOR_PORT.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

interface AnchorReply {
  readonly headers: Record<string, string>;
  readonly bodyFile: string;
}

const reply = JSON.parse(
  readFileSync(process.env.ANCHOR_REPLY ?? '', 'utf8'),
) as AnchorReply;
const body = readFileSync(reply.bodyFile);
const headers = { ...reply.headers, 'content-length': String(body.length) };

createServer((request, response) => {
  response.writeHead(200, headers);
  response.end(request.method === 'HEAD' ? undefined : body);
}).listen(Number(process.env.ANCHOR_PORT), '127.0.0.1');

// Exits on a signal like the other servers, so that `node --cpu-prof` writes its profile.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => process.exit(0));
}
