import { Inject, Injectable } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { sharedCacheConfig } from '../../../config/shared-cache.config';

/**
 * The names of what the shared tier keeps in Redis, all below `REDIS_KEY_PREFIX`. `{key}` is a
 * hash tag: a variant's image, next image, lock and failure record map to one cluster slot.
 */
@Injectable()
export class SharedKeys {
  /** The pub/sub channel of the replicas' notices. */
  readonly channel: string;
  /** SCAN's pattern for every variant's image. */
  readonly everyEntry: string;
  /** SCAN's pattern for everything of every variant. */
  readonly everything: string;
  private readonly prefix: string;

  constructor(
    @Inject(sharedCacheConfig.KEY)
    config: Pick<ConfigType<typeof sharedCacheConfig>, 'keyPrefix'>,
  ) {
    this.prefix = config.keyPrefix;
    this.channel = `${config.keyPrefix}notices`;
    this.everyEntry = `${escapeGlob(config.keyPrefix)}{*}:image`;
    this.everything = `${escapeGlob(config.keyPrefix)}{*}:*`;
  }

  entry(key: string): string {
    return `${this.prefix}{${key}}:image`;
  }

  next(key: string): string {
    return `${this.prefix}{${key}}:next`;
  }

  lock(key: string): string {
    return `${this.prefix}{${key}}:lock`;
  }

  failure(key: string): string {
    return `${this.prefix}{${key}}:failed`;
  }

  /** The variant whose image `redisKey` holds, or `undefined` for any other key. */
  variantOfEntry(redisKey: string): string | undefined {
    const inner = redisKey.slice(this.prefix.length);
    return redisKey.startsWith(this.prefix) &&
      inner.startsWith('{') &&
      inner.endsWith('}:image')
      ? inner.slice(1, -'}:image'.length)
      : undefined;
  }
}

/** `text` with the characters SCAN's MATCH treats as a pattern escaped. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
