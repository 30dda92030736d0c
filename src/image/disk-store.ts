import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../common/error-message';
import { cacheConfig } from '../config/cache.config';
import { type CachedImage, createCachedImage } from './cached-image';

const METADATA_SUFFIX = '.meta.json';
const BODY_SUFFIX = '.img';
const TEMP_SUFFIX = '.tmp';

const metadataSchema = z.object({
  version: z.literal(1),
  key: z.string().min(1),
  contentType: z.string().startsWith('image/'),
  bytes: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  fetchedAt: z.iso.datetime(),
  picsumId: z.string().optional(),
  source: z.string(),
  bodyFile: z.string().regex(/^[0-9a-f]+\.[0-9a-f]+\.img$/),
});

type StoredMetadata = z.infer<typeof metadataSchema>;

/**
 * Keeps cached images on local disk (`CACHE_DIR`) so they outlive the process.
 *
 * Each entry is a body file named after its checksum plus a metadata file naming that body.
 * Both are written to a temporary file, fsynced and renamed into place, body first, and the
 * old body is removed only after the new metadata is durable. A crash at any moment therefore
 * leaves either the old entry or the new one, and whatever a crash left behind (temporary
 * files, bodies no metadata names) is swept at start. Every load verifies size and checksum.
 */
@Injectable()
export class DiskStore implements OnModuleInit {
  private readonly logger = new Logger(DiskStore.name);
  readonly directory: string;

  constructor(@Inject(cacheConfig.KEY) config: ConfigType<typeof cacheConfig>) {
    this.directory = config.directory;
  }

  async onModuleInit(): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
      await this.sweep();
    } catch (error) {
      throw new Error(
        `CACHE_DIR=${JSON.stringify(this.directory)} is not usable: ${errorMessage(error)}`,
      );
    }
  }

  /** The entry stored for `key`, or `undefined` when there is none or it fails verification (it is then removed). */
  async load(key: string): Promise<CachedImage | undefined> {
    const metadataPath = this.metadataPath(key);
    let metadata: StoredMetadata;
    try {
      metadata = await readMetadata(metadataPath);
    } catch (error) {
      if (isNotFound(error)) {
        return undefined;
      }
      return this.discard(key, `unreadable metadata (${errorMessage(error)})`);
    }
    if (metadata.key !== key) {
      return this.discard(
        key,
        `metadata names key ${JSON.stringify(metadata.key)}`,
      );
    }
    let body: Buffer;
    try {
      body = await readFile(join(this.directory, metadata.bodyFile));
    } catch (error) {
      return this.discard(
        key,
        `unreadable body (${errorMessage(error)})`,
        metadata.bodyFile,
      );
    }
    const sha256 = sha256Hex(body);
    if (body.length !== metadata.bytes || sha256 !== metadata.sha256) {
      return this.discard(
        key,
        `body of ${body.length} bytes with SHA-256 ${sha256} does not match its metadata (${metadata.bytes} bytes, ${metadata.sha256})`,
        metadata.bodyFile,
      );
    }
    return createCachedImage({
      key,
      body,
      contentType: metadata.contentType,
      sha256,
      fetchedAt: Date.parse(metadata.fetchedAt),
      source: metadata.source,
      ...(metadata.picsumId ? { picsumId: metadata.picsumId } : {}),
    });
  }

  /** Stores `image` as the entry for its key, replacing the previous one atomically. */
  async save(image: CachedImage): Promise<void> {
    const previousBody = await this.readBodyFileName(image.key);
    const bodyFile = `${this.baseName(image.key)}.${image.sha256.slice(0, 16)}${BODY_SUFFIX}`;
    const metadata: StoredMetadata = {
      version: 1,
      key: image.key,
      contentType: image.contentType,
      bytes: image.body.length,
      sha256: image.sha256,
      fetchedAt: new Date(image.fetchedAt).toISOString(),
      source: image.source,
      bodyFile,
      ...(image.picsumId ? { picsumId: image.picsumId } : {}),
    };
    await this.writeDurably(join(this.directory, bodyFile), image.body);
    await this.writeDurably(
      this.metadataPath(image.key),
      JSON.stringify(metadata),
    );
    await this.syncDirectory();
    if (previousBody && previousBody !== bodyFile) {
      await rm(join(this.directory, previousBody), { force: true });
    }
  }

  /** Proves the directory can take a write now: creates, syncs and removes a small file. */
  async probe(): Promise<void> {
    const path = join(this.directory, `.probe-${randomUUID()}${TEMP_SUFFIX}`);
    try {
      const file = await open(path, 'wx');
      try {
        await file.writeFile('ok');
        await file.sync();
      } finally {
        await file.close();
      }
    } finally {
      await rm(path, { force: true });
    }
  }

  private async writeDurably(
    path: string,
    data: string | Buffer,
  ): Promise<void> {
    const temporary = join(this.directory, `.${randomUUID()}${TEMP_SUFFIX}`);
    try {
      const file = await open(temporary, 'wx', 0o644);
      try {
        await file.writeFile(data);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temporary, path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
  }

  /** Makes the renames themselves durable, not only the file contents. */
  private async syncDirectory(): Promise<void> {
    const directory = await open(this.directory, 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }

  /** Removes what an interrupted write left behind: temporary files and bodies that no metadata names. */
  private async sweep(): Promise<void> {
    const names = await readdir(this.directory);
    const referenced = new Set<string>();
    for (const name of names.filter((entry) =>
      entry.endsWith(METADATA_SUFFIX),
    )) {
      try {
        const metadata = await readMetadata(join(this.directory, name));
        referenced.add(metadata.bodyFile);
      } catch (error) {
        this.logger.warn(
          `Removing unreadable metadata ${name}: ${errorMessage(error)}`,
        );
        await rm(join(this.directory, name), { force: true });
      }
    }
    const leftovers = names.filter(
      (name) =>
        name.endsWith(TEMP_SUFFIX) ||
        (name.endsWith(BODY_SUFFIX) && !referenced.has(name)),
    );
    await Promise.all(
      leftovers.map((name) => rm(join(this.directory, name), { force: true })),
    );
    if (leftovers.length > 0) {
      this.logger.log(
        `Removed ${leftovers.length} leftover file(s) of interrupted writes from ${this.directory}`,
      );
    }
    this.logger.log(
      `Cache directory ${this.directory} holds ${referenced.size} stored image(s)`,
    );
  }

  private async readBodyFileName(key: string): Promise<string | undefined> {
    try {
      return (await readMetadata(this.metadataPath(key))).bodyFile;
    } catch {
      return undefined;
    }
  }

  private async discard(
    key: string,
    reason: string,
    bodyFile?: string,
  ): Promise<undefined> {
    this.logger.warn(
      `Discarding stored image ${JSON.stringify(key)}: ${reason}`,
    );
    await rm(this.metadataPath(key), { force: true });
    if (bodyFile) {
      await rm(join(this.directory, bodyFile), { force: true });
    }
    return undefined;
  }

  private metadataPath(key: string): string {
    return join(this.directory, `${this.baseName(key)}${METADATA_SUFFIX}`);
  }

  /** Keys may hold any character; file names are a digest of them. */
  private baseName(key: string): string {
    return sha256Hex(Buffer.from(key)).slice(0, 32);
  }
}

/** A metadata file, trusted only once it matches the schema. */
async function readMetadata(path: string): Promise<StoredMetadata> {
  return metadataSchema.parse(JSON.parse(await readFile(path, 'utf8')));
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
