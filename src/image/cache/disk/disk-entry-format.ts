import { z } from 'zod';
import { sha256Hex } from '../cached-image';
import type { CachedImage } from '../cache-model';
import { entryDiskBytes } from './disk-budget';

export const METADATA_SUFFIX = '.meta.json';
export const BODY_SUFFIX = '.img';
export const TEMP_SUFFIX = '.tmp';
export const PROBE_PREFIX = '.probe-';

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

/** The metadata file of a stored entry: what it is, and the body file that holds its bytes. */
export type StoredMetadata = z.infer<typeof metadataSchema>;

/** What the index keeps of a stored entry, so that finding one never reads the disk. */
export interface DiskEntry {
  readonly metadata: StoredMetadata;
  /** Disk space of the body and the metadata file, in whole blocks. */
  readonly diskBytes: number;
}

/** An entry as it is written: its index entry and the text of its metadata file. */
export interface EncodedEntry extends DiskEntry {
  readonly metadataText: string;
}

/** Keys may hold any character; file names are a digest of them. */
function baseNameOf(key: string): string {
  return sha256Hex(Buffer.from(key)).slice(0, 32);
}

/** The name of the metadata file of `key`. */
export function metadataNameOf(key: string): string {
  return `${baseNameOf(key)}${METADATA_SUFFIX}`;
}

/**
 * The metadata file and body name of `image`. The body is named after the key and the
 * checksum, so a new body of the same key never overwrites the one the metadata names.
 */
export function encodeEntry(image: CachedImage): EncodedEntry {
  const metadata: StoredMetadata = {
    version: 1,
    key: image.key,
    contentType: image.contentType,
    bytes: image.body.length,
    sha256: image.sha256,
    fetchedAt: new Date(image.fetchedAt).toISOString(),
    source: image.source,
    bodyFile: `${baseNameOf(image.key)}.${image.sha256.slice(0, 16)}${BODY_SUFFIX}`,
    ...(image.picsumId ? { picsumId: image.picsumId } : {}),
  };
  const metadataText = JSON.stringify(metadata);
  return {
    metadata,
    metadataText,
    diskBytes: entryDiskBytes(
      image.body.length,
      Buffer.byteLength(metadataText),
    ),
  };
}

/**
 * The metadata in the file `fileName` holding `metadataText`; fails, naming the problem, when
 * the text is not valid metadata or names another key than the file's name says.
 */
export function decodeMetadata(
  fileName: string,
  metadataText: string,
): StoredMetadata {
  const metadata = metadataSchema.parse(JSON.parse(metadataText));
  if (fileName !== metadataNameOf(metadata.key)) {
    throw new Error(`it names key ${JSON.stringify(metadata.key)}`);
  }
  return metadata;
}

/** Whether `name` is what an interrupted write leaves: a temporary file, or a body no kept entry names. */
export function isLeftover(
  name: string,
  referencedBodies: ReadonlySet<string>,
): boolean {
  return (
    name.endsWith(TEMP_SUFFIX) ||
    (name.endsWith(BODY_SUFFIX) && !referencedBodies.has(name))
  );
}
