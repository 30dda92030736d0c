import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';

/**
 * The connections to the upstream, kept alive and reused: a fetch is two requests (the API
 * host's redirect, then the image host), and a new TCP (and TLS) connection for each cost a
 * cold miss more CPU than the rest of its work. One agent per scheme holds a pool per host;
 * an idle connection is closed by the upstream's `Keep-Alive: timeout` or after
 * `IDLE_SOCKET_MS`, whichever comes first. Closed at shutdown.
 */
@Injectable()
export class UpstreamAgents implements OnApplicationShutdown {
  /** How long an idle connection is kept: less than common servers' keep-alive timeouts (5 s in Node, 60 s in nginx). */
  static readonly IDLE_SOCKET_MS = 4000;

  readonly http = new HttpAgent({
    keepAlive: true,
    timeout: UpstreamAgents.IDLE_SOCKET_MS,
  });
  readonly https = new HttpsAgent({
    keepAlive: true,
    timeout: UpstreamAgents.IDLE_SOCKET_MS,
  });

  onApplicationShutdown(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
