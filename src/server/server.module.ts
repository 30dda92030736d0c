import { Module } from '@nestjs/common';
import { ConnectionPolicy } from './connection-policy';

/** The HTTP server's own limits and headers, whatever route a request takes. */
@Module({
  providers: [ConnectionPolicy],
})
export class ServerModule {}
