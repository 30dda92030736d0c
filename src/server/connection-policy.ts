import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { serverConfig } from '../config/server.config';
import { requestIdOf } from '../logging/request-id';

const DROP_LOG_INTERVAL_MS = 10_000;
/**
 * How long an idle keep-alive connection stays open: longer than the 60 s idle timeouts of
 * ingress-nginx and the common cloud load balancers (Fastify's default), so a proxy never
 * sends a request on a connection we are closing.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 72_000;
/** During the shutdown drain, how long a connection may stay idle before it is closed. */
export const DRAIN_IDLE_TIMEOUT_MS = 1000;

/**
 * What every connection to the HTTP server is held to, set on Node's server itself so it
 * applies before any routing and to every reply, errors included:
 * - a client that takes longer than `CLIENT_IDLE_TIMEOUT_MS` to send its request, or leaves
 *   its reply that long without reading any of it, is disconnected, so clients that never read
 *   cannot pin image buffers in memory (waiting for the upstream does not count: that is us);
 * - at most `MAX_CONNECTIONS` connections at once;
 * - `X-Content-Type-Options: nosniff` on every reply, so no browser reads a body as anything
 *   but its declared type;
 * - from the start of shutdown, every reply carries `Connection: close`, and a connection
 *   that stays idle for `DRAIN_IDLE_TIMEOUT_MS` is closed, so no client sends a request on a
 *   connection the server closes under it when the drain ends. (Closing idle connections at
 *   once would lose requests a client has sent but the server has not read yet: Node counts
 *   those connections as idle.)
 */
@Injectable()
export class ConnectionPolicy
  implements OnApplicationBootstrap, OnModuleDestroy
{
  private readonly logger = new Logger(ConnectionPolicy.name);
  private readonly sockets = new Set<Socket>();
  private draining = false;
  private dropped = 0;
  private lastDropLogAt = -Infinity;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    @Inject(serverConfig.KEY)
    private readonly config: ConfigType<typeof serverConfig>,
  ) {}

  onApplicationBootstrap(): void {
    const server = this.adapterHost.httpAdapter?.getHttpServer() as
      Server | undefined;
    if (!server) {
      return; // an application context without an HTTP server, as in some tests
    }
    const { clientIdleTimeoutMs, maxConnections } = this.config;
    server.maxConnections = maxConnections;
    server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    server.requestTimeout = clientIdleTimeoutMs;
    server.headersTimeout = clientIdleTimeoutMs;
    // Applies to sockets accepted from now on: Node destroys a socket idle this long, unless
    // the reply's own 'timeout' listener (below) decides otherwise.
    server.timeout = clientIdleTimeoutMs;
    server.prependListener('request', this.onRequest);
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('drop', () => this.onDrop());
  }

  onModuleDestroy(): void {
    this.draining = true;
    for (const socket of this.sockets) {
      // An idle connection goes after this; one with a request is answered first (a reply
      // waiting for the upstream is not cut, see disconnectStalledReader).
      socket.setTimeout(DRAIN_IDLE_TIMEOUT_MS);
    }
  }

  /** Logs refused connections at most once per interval, with how many, not once each. */
  private onDrop(): void {
    this.dropped += 1;
    const now = Date.now();
    if (now - this.lastDropLogAt >= DROP_LOG_INTERVAL_MS) {
      this.logger.warn(
        `Refused ${this.dropped} connection(s): MAX_CONNECTIONS (${this.config.maxConnections}) were open`,
      );
      this.dropped = 0;
      this.lastDropLogAt = now;
    }
  }

  private readonly onRequest = (
    request: IncomingMessage,
    reply: ServerResponse,
  ): void => {
    // The request's id: kept from a safe `x-request-id`, else made. Fastify takes it from the
    // header (see createFastifyAdapter) for the log lines of the request; the reply returns it.
    const requestId = requestIdOf(request.headers['x-request-id']);
    request.headers['x-request-id'] = requestId;
    reply.setHeader('x-request-id', requestId);
    reply.setHeader('x-content-type-options', 'nosniff');
    if (this.draining) {
      reply.setHeader('connection', 'close');
    }
    reply.on('timeout', disconnectStalledReader);
    // A reply to a request that came before the drain began goes out without `Connection:
    // close`, and Node then gives its socket the keep-alive timeout (72 s): a client that
    // keeps the connection would hold the shutdown until the kubelet's SIGKILL. This listener
    // runs after Node's own, so the drain's idle timeout wins.
    const socket = request.socket;
    reply.once('finish', () => {
      if (this.draining) {
        socket.setTimeout(DRAIN_IDLE_TIMEOUT_MS);
      }
    });
  };
}

/**
 * The socket of a reply has been idle for `CLIENT_IDLE_TIMEOUT_MS`. Before the reply started,
 * the wait is ours (an upstream fetch), so the client keeps waiting; after, the client has
 * stopped reading, and goes.
 */
function disconnectStalledReader(this: ServerResponse, socket: Socket): void {
  if (this.headersSent) {
    socket.destroy();
  }
}
