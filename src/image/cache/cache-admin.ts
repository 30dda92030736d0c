import {
  Injectable,
  NotFoundException,
  ServiceUnavailableException,
} from '@nestjs/common';
import { errorMessage } from '../../common/error-message';
import { type ImageVariant, variantKey } from '../image-variant';
import type { CachedImage } from './cache-model';
import { DiskStore } from './disk/disk-store';
import { FailureMemory } from './failure-memory';
import { FetchCoordinator } from './fetch-coordinator';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import { Prefetcher } from './prefetcher';
import { PurgeGenerations } from './purge-generations';
import { SharedScan } from './shared/shared-scan';

/** Variants a purge of every variant removes between two looks at what is left. */
const PURGE_PAGE_SIZE = 500;

/**
 * What an operator does to the cache by hand (the admin API's refresh and purge), here and,
 * through the shared tier, on every replica. Both win over the fetches and prefetches running
 * when they come: those finish for the requests waiting, but store nothing.
 */
@Injectable()
export class CacheAdmin {
  constructor(
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly shared: SharedScan,
    private readonly variants: LocalVariants,
    private readonly failures: FailureMemory,
    private readonly prefetcher: Prefetcher,
    private readonly fetches: FetchCoordinator,
    private readonly generations: PurgeGenerations,
  ) {}

  /**
   * Fetches a new image of `variant` now and makes it current in every tier and, through the
   * shared tier, on every replica, whatever the cache held. It wins over the fetches and
   * prefetches of the variant already running, here and on the other replicas: they finish for
   * the requests waiting for them, but store nothing; a prefetched image held for later is
   * dropped.
   */
  async refresh(
    variant: ImageVariant,
    requestId?: string,
  ): Promise<CachedImage> {
    const key = variantKey(variant);
    this.generations.purged(key);
    await this.prefetcher.dropEverywhere(key);
    return this.fetches.fetchReplacing(key, variant, requestId);
  }

  /**
   * Removes `key`'s variant, or every variant when `key` is `null`, from every tier and, through
   * the shared tier, from every replica. The purge wins over the fetches and prefetches running:
   * they store nothing. Returns how many variants were removed.
   */
  async purge(key: string | null): Promise<number> {
    const removed = new Set(await this.purgeHere(key));
    if (this.shared.enabled) {
      try {
        for (const variant of await this.shared.purge(key)) {
          removed.add(variant);
        }
      } catch (error) {
        throw new ServiceUnavailableException(
          `Purged this replica, but not the shared tier, whose Redis failed: ${errorMessage(error)}; other replicas still serve their copies`,
        );
      }
    }
    if (key !== null && removed.size === 0) {
      throw new NotFoundException(`No image is cached for ${key}`);
    }
    return removed.size;
  }

  /**
   * Removes `key`'s variant, or every variant, from this replica's memory and disk and the
   * images held aside, walking the variants a page at a time; returns the variants removed.
   * Another replica's purge notice does the same here.
   */
  async purgeHere(key: string | null): Promise<string[]> {
    this.generations.purged(key);
    const removed: string[] = [];
    if (key !== null) {
      return (await this.purgeVariant(key)) ? [key] : [];
    }
    this.failures.forgetAll();
    this.prefetcher.forgetRetries();
    for (
      let page = this.variants.page(undefined, PURGE_PAGE_SIZE);
      page.length > 0;
      page = this.variants.page(page[page.length - 1], PURGE_PAGE_SIZE)
    ) {
      for (const variant of page) {
        if (await this.purgeVariant(variant)) {
          removed.push(variant);
        }
      }
    }
    return removed;
  }

  /** Removes one variant from this replica; whether anything was held. */
  private async purgeVariant(key: string): Promise<boolean> {
    const held = this.memory.peek(key) !== undefined || this.disk.has(key);
    const heldNext = this.prefetcher.forget(key);
    this.memory.delete(key);
    this.failures.forget(key);
    await this.disk.delete(key);
    return held || heldNext;
  }
}
