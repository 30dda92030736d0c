/**
 * What an entry costs in memory beyond its body, measured, so that `CACHE_MEMORY_MAX_SIZE`
 * bounds what the cache really holds, not only its bodies. Measured on Node 24 by caching
 * tens of thousands of 640-byte images and reading the heap after a full collection:
 * - an entry of the memory tier (the image object, its key, checksum, ETag, dates, URL and
 *   ready headers, the LRU's node, the variant's place in `LocalVariants`, the body's Buffer
 *   object): about 650 bytes;
 * - a record of the disk tier's index, held in memory for every stored image (its metadata,
 *   the LRU's node, the variant's place): about 630 bytes.
 * Both are counted as 1 KiB, rounded up for longer keys and URLs.
 */
export const MEMORY_ENTRY_OVERHEAD_BYTES = 1024;
export const DISK_RECORD_BYTES = 1024;

/** Below this, a small (or disabled) memory budget still leaves the disk tier room to index. */
const MIN_DISK_RECORDS = 4096;

/**
 * How many images the disk tier may index: as many as half the memory budget holds records
 * for, and at least 4096. With the default 64 MiB, 32,768: more than the default 512 MiB of
 * disk holds of any image above 16 KB, so only tiny images ever meet this limit.
 */
export function diskRecordLimit(memoryMaxBytes: number): number {
  return Math.max(
    MIN_DISK_RECORDS,
    Math.floor(memoryMaxBytes / 2 / DISK_RECORD_BYTES),
  );
}
