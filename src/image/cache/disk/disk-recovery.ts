import type { Logger } from '@nestjs/common';
import { errorMessage } from '../../../common/error-message';
import { blocksOf, type DiskBudget, entryDiskBytes } from './disk-budget';
import {
  decodeMetadata,
  type DiskEntry,
  isLeftover,
  METADATA_SUFFIX,
  metadataNameOf,
  PROBE_PREFIX,
} from './disk-entry-format';
import type { DiskFiles } from './disk-files';

/**
 * Makes what the index knows agree with what the directory holds: at start, by reading every
 * metadata file and sweeping what a crash left behind; later, by checking the entries' files
 * and removing files no entry names.
 */
export class DiskRecovery {
  constructor(
    private readonly files: DiskFiles,
    private readonly budget: DiskBudget,
    private readonly logger: Logger,
  ) {}

  /**
   * The entries found in the directory, the least recently used (fetched longest ago) first.
   * Removes what an interrupted write left behind (temporary files, bodies no metadata names)
   * and what cannot be used (unreadable metadata, a missing or wrongly sized body, anything
   * that is not a regular file); if the entries exceed the budget (it was lowered), the oldest
   * are removed. Removing is best-effort: on a read-only directory what cannot go is logged,
   * and start-up goes on.
   */
  async recover(): Promise<DiskEntry[]> {
    const names = await this.files.list();
    const found: DiskEntry[] = [];
    for (const name of names.filter((entry) =>
      entry.endsWith(METADATA_SUFFIX),
    )) {
      try {
        found.push(await this.readEntry(name));
      } catch (error) {
        this.logger.warn(
          `Removing unusable metadata ${name}: ${errorMessage(error)}`,
        );
        await this.files.removeQuietly(name);
      }
    }
    found.sort((a, b) =>
      b.metadata.fetchedAt.localeCompare(a.metadata.fetchedAt),
    );
    const { kept, over } = this.budget.keepNewest(found);
    for (const entry of over) {
      await this.files
        .removeEntry(entry.metadata.key, entry)
        .catch((error: unknown) =>
          this.logger.warn(
            `Could not remove ${entry.metadata.key}, over the budget: ${errorMessage(error)}`,
          ),
        );
    }
    if (over.length > 0) {
      this.logger.log(
        `Removed the ${over.length} oldest image(s) to fit the disk budget (${this.budget.maxBytes} bytes)`,
      );
    }
    const referenced = new Set(kept.map((entry) => entry.metadata.bodyFile));
    let removed = 0;
    for (const name of names.filter((name) => isLeftover(name, referenced))) {
      removed += (await this.files.removeQuietly(name)) ? 1 : 0;
    }
    if (removed > 0) {
      this.logger.log(
        `Removed ${removed} leftover file(s) of interrupted writes from ${this.files.directory}`,
      );
    }
    return kept.reverse();
  }

  /**
   * Of `entries`, the keys of those whose files are gone or changed (their files are removed
   * if they can be); files no entry names are removed, and the budget counts the bytes of those
   * that could not be, until they can.
   */
  async reconcile(
    entries: ReadonlyArray<readonly [string, DiskEntry]>,
  ): Promise<string[]> {
    const expected = new Set<string>();
    const broken: string[] = [];
    for (const [key, entry] of entries) {
      if (await this.files.match(key, entry)) {
        expected.add(metadataNameOf(key)).add(entry.metadata.bodyFile);
      } else {
        broken.push(key);
        await this.files.removeEntry(key, entry).catch(() => undefined);
      }
    }
    let unaccounted = 0;
    for (const name of await this.files.list()) {
      // A readiness probe's file may be there for a moment: it removes it itself.
      if (expected.has(name) || name.startsWith(PROBE_PREFIX)) {
        continue;
      }
      const info = await this.files.stat(name).catch(() => undefined);
      try {
        await this.files.remove(name);
        this.logger.log(`Removed ${name}, which no cached image names`);
      } catch (error) {
        unaccounted += blocksOf(info?.size ?? 0);
        this.logger.warn(
          `Could not remove ${name}, which no cached image names; its ${info?.size ?? 0} bytes count against the budget: ${errorMessage(error)}`,
        );
      }
    }
    this.budget.countUnaccounted(unaccounted);
    return broken;
  }

  /** The entry of the metadata file `name`, checked against its body file. */
  private async readEntry(name: string): Promise<DiskEntry> {
    const metadataText = (await this.files.read(name)).toString('utf8');
    const metadata = decodeMetadata(name, metadataText);
    const body = await this.files.stat(metadata.bodyFile);
    if (!body.isFile()) {
      throw new Error('its body is not a regular file');
    }
    if (body.size !== metadata.bytes) {
      throw new Error(`its body has ${body.size} bytes, not ${metadata.bytes}`);
    }
    return {
      metadata,
      diskBytes: entryDiskBytes(body.size, Buffer.byteLength(metadataText)),
    };
  }
}
