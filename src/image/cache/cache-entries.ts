import {
  BadRequestException,
  Injectable,
  ServiceUnavailableException,
} from '@nestjs/common';
import { z } from 'zod';
import { errorMessage } from '../../common/error-message';
import { Clock } from './clock';
import { DiskStore } from './disk/disk-store';
import { FreshnessPolicy } from './freshness-policy';
import { LocalVariants } from './local-variants';
import { MemoryTier } from './memory-tier';
import { Prefetcher } from './prefetcher';
import { FIRST_SCAN_POSITION } from './shared/redis-connection';
import { type SharedEntry, SharedScan } from './shared/shared-scan';
import type { TierName } from './cache-model';

export const DEFAULT_ENTRIES_LIMIT = 100;
export const MAX_ENTRIES_LIMIT = 1000;

/** A prefetched image held aside until the current one expires, and where. */
export interface NextEntry {
  readonly bytes: number;
  /** When it becomes current. */
  readonly fetchedAt: string;
  readonly tiers: TierName[];
}

/**
 * One cached variant, as `GET /admin/entries` lists it: its current image (absent when only a
 * prefetched image is held) and, marked `next`, the image held to replace it at expiry.
 */
export interface CacheEntry {
  readonly key: string;
  readonly bytes?: number;
  readonly fetchedAt?: string;
  readonly expiresAt?: string;
  readonly stale?: boolean;
  readonly tiers: TierName[];
  readonly next?: NextEntry;
}

export interface EntriesPage {
  readonly entries: CacheEntry[];
  /** Pass it as `cursor` for the next page; `null` once every entry was listed. */
  readonly nextCursor: string | null;
}

/** Where a walk stands: among this replica's variants (after a key), or in Redis (a SCAN position). */
const cursorSchema = z.union([
  z.object({ local: z.string() }),
  z.object({
    shared: z.object({
      node: z.number().int().nonnegative(),
      cursor: z.string().regex(/^\d+$/),
    }),
  }),
]);
type Cursor = z.infer<typeof cursorSchema>;

interface Found {
  bytes: number;
  fetchedAt: number;
  tiers: TierName[];
}

/**
 * Lists what the cache holds for `GET /admin/entries`, a page at a time: first the variants this
 * replica holds, in key order, each with what memory, disk and Redis hold of it; then those only
 * Redis holds, walked with SCAN. No page builds a list of every entry, so a cache of any size is
 * listed without stalling the requests served meanwhile. The cursor is opaque to clients.
 */
@Injectable()
export class CacheEntries {
  constructor(
    private readonly prefetcher: Prefetcher,
    private readonly memory: MemoryTier,
    private readonly disk: DiskStore,
    private readonly shared: SharedScan,
    private readonly variants: LocalVariants,
    private readonly policy: FreshnessPolicy,
    private readonly clock: Clock,
  ) {}

  async page(
    cursorText: string | undefined,
    limit: number,
  ): Promise<EntriesPage> {
    const cursor = parseCursor(cursorText);
    return 'local' in cursor
      ? this.localPage(cursor.local, limit)
      : this.sharedPage(cursor.shared, limit);
  }

  private async localPage(
    afterKey: string,
    limit: number,
  ): Promise<EntriesPage> {
    const keys = this.variants.page(
      afterKey === '' ? undefined : afterKey,
      limit,
    );
    const shared = this.shared.enabled
      ? await Promise.all(keys.map((key) => this.shared.entryOf(key)))
      : keys.map(() => undefined);
    const entries = keys.map((key, index) => this.entryOf(key, shared[index]));
    const next: Cursor | null =
      keys.length === limit
        ? { local: keys[keys.length - 1] }
        : this.shared.enabled
          ? { shared: FIRST_SCAN_POSITION }
          : null;
    return { entries, nextCursor: formatCursor(next) };
  }

  private async sharedPage(
    position: { node: number; cursor: string },
    limit: number,
  ): Promise<EntriesPage> {
    let page: Awaited<ReturnType<SharedScan['entriesPage']>>;
    try {
      page = await this.shared.entriesPage(position, limit);
    } catch (error) {
      throw new ServiceUnavailableException(
        `Listing the shared tier failed, its Redis did not answer: ${errorMessage(error)}`,
      );
    }
    const entries = page.entries
      // Those this replica holds were listed with its own, with their shared copies.
      .filter((entry) => !this.variants.has(entry.key))
      .map((entry) => this.entryOf(entry.key, entry));
    return {
      entries,
      nextCursor: formatCursor(page.next ? { shared: page.next } : null),
    };
  }

  /** What every tier holds of `key`: the newest current image, and the newest held next image. */
  private entryOf(key: string, shared: SharedEntry | undefined): CacheEntry {
    let current: Found | undefined;
    let next: Found | undefined;
    const add = (
      found: Found | undefined,
      bytes: number,
      fetchedAt: number,
      tier: TierName,
    ): Found => {
      if (!found || fetchedAt > found.fetchedAt) {
        return { bytes, fetchedAt, tiers: [...(found?.tiers ?? []), tier] };
      }
      found.tiers.push(tier);
      return found;
    };
    const inMemory = this.memory.peek(key);
    if (inMemory) {
      current = add(
        current,
        inMemory.body.length,
        inMemory.fetchedAt,
        'memory',
      );
    }
    const onDisk = this.disk.metadataOf(key);
    if (onDisk) {
      current = add(
        current,
        onDisk.bytes,
        Date.parse(onDisk.fetchedAt),
        'disk',
      );
    }
    if (shared?.bytes !== undefined && shared.fetchedAt !== undefined) {
      current = add(current, shared.bytes, shared.fetchedAt, 'shared');
    }
    const heldHere = this.prefetcher.held(key);
    if (heldHere) {
      next = add(next, heldHere.body.length, heldHere.fetchedAt, 'memory');
    }
    if (shared?.next) {
      next = add(next, shared.next.bytes, shared.next.fetchedAt, 'shared');
    }
    return {
      key,
      ...(current
        ? {
            bytes: current.bytes,
            fetchedAt: new Date(current.fetchedAt).toISOString(),
            expiresAt: new Date(
              this.policy.expiresAt(current.fetchedAt),
            ).toISOString(),
            stale: this.policy.isStale(current.fetchedAt, this.clock.now()),
          }
        : {}),
      tiers: current?.tiers ?? [],
      ...(next
        ? {
            next: {
              bytes: next.bytes,
              fetchedAt: new Date(next.fetchedAt).toISOString(),
              tiers: next.tiers,
            },
          }
        : {}),
    };
  }
}

function parseCursor(text: string | undefined): Cursor {
  if (text === undefined || text === '') {
    return { local: '' };
  }
  try {
    return cursorSchema.parse(
      JSON.parse(Buffer.from(text, 'base64url').toString()),
    );
  } catch {
    throw new BadRequestException(
      `cursor ${JSON.stringify(text.slice(0, 64))} is not one GET /admin/entries returned as nextCursor`,
    );
  }
}

function formatCursor(cursor: Cursor | null): string | null {
  return cursor === null
    ? null
    : Buffer.from(JSON.stringify(cursor)).toString('base64url');
}
