import type { FactoryProvider } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { upstreamConfig } from '../../../config/upstream.config';
import { Clock } from '../clock';
import { SharedCodec } from './shared-codec';

/** The shared tier's codec, bounded by the upstream client's own limits. */
export const sharedCodecProvider: FactoryProvider<SharedCodec> = {
  provide: SharedCodec,
  inject: [upstreamConfig.KEY, Clock],
  useFactory: (
    upstream: Pick<
      ConfigType<typeof upstreamConfig>,
      'maxBytes' | 'retryAfterSeconds'
    >,
    clock: Clock,
  ) =>
    new SharedCodec(
      {
        maxBodyBytes: upstream.maxBytes,
        maxRetryAfterMs: upstream.retryAfterSeconds * 1000,
      },
      () => clock.now(),
    ),
};
