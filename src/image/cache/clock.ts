import { Injectable } from '@nestjs/common';

/** The time source of the cache, a provider of its own so tests can move time forward. */
@Injectable()
export class Clock {
  now(): number {
    return Date.now();
  }
}
