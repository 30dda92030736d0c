import {
  BadGatewayException,
  HttpException,
  Inject,
  Injectable,
  Logger,
} from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import { errorMessage } from '../common/error-message';
import { cacheConfig } from '../config/cache.config';
import { upstreamConfig } from '../config/upstream.config';
import {
  type CacheLookup,
  type CachedImage,
  createCachedImage,
} from './cached-image';
import { Clock } from './clock';
import { DiskStore, sha256Hex } from './disk-store';
import {
  type ImageSize,
  PicsumClient,
  type UpstreamImage,
} from './picsum.client';
import { SingleFlight } from './single-flight';

/** Freshness of an entry at one moment, in the units HTTP caching headers use. */
export interface Freshness {
  readonly stale: boolean;
  readonly expiresAt: number;
  readonly ageSeconds: number;
  readonly ttlSeconds: number;
}

interface UpstreamFailure {
  readonly error: HttpException;
  readonly retryAt: number;
}

/**
 * Decides for each request whether the cached image is served, replaced by a new fetch, or
 * served stale because the upstream failed. Memory holds every image this process has seen;
 * the disk store is read once per key, after a restart, and written after every fetch.
 */
@Injectable()
export class CacheService {
  private readonly logger = new Logger(CacheService.name);
  /** `null` records that the disk had nothing for the key, so it is not asked again. */
  private readonly images = new Map<string, CachedImage | null>();
  private readonly diskLoads = new SingleFlight<CachedImage | undefined>();
  private readonly fetches = new SingleFlight<CachedImage>();
  private readonly failures = new Map<string, UpstreamFailure>();

  constructor(
    private readonly client: PicsumClient,
    private readonly disk: DiskStore,
    private readonly clock: Clock,
    @Inject(cacheConfig.KEY)
    private readonly cache: ConfigType<typeof cacheConfig>,
    @Inject(upstreamConfig.KEY)
    private readonly upstream: ConfigType<typeof upstreamConfig>,
  ) {}

  /** The size `GET /image` asks the upstream for. */
  get defaultSize(): ImageSize {
    return {
      width: this.upstream.imageWidth,
      height: this.upstream.imageHeight,
    };
  }

  /** The image to serve for `size`, fetching it when nothing fresh is cached. */
  async getImage(size: ImageSize): Promise<CacheLookup> {
    const key = keyOf(size);
    const cached = await this.peek(size);
    if (cached && !this.freshness(cached).stale) {
      return { image: cached, status: 'HIT' };
    }
    const failure = this.failures.get(key);
    if (failure && this.clock.now() < failure.retryAt) {
      return this.serveStaleOr(cached, failure.error);
    }
    try {
      const image = await this.fetches.run(key, () =>
        this.fetchAndStore(key, size),
      );
      return { image, status: 'MISS' };
    } catch (error) {
      return this.serveStaleOr(cached, toHttpException(error));
    }
  }

  /** The cached image for `size`, fresh or stale, without ever calling the upstream. */
  async peek(size: ImageSize): Promise<CachedImage | undefined> {
    const key = keyOf(size);
    const known = this.images.get(key);
    if (known !== undefined) {
      return known ?? undefined;
    }
    return this.diskLoads.run(key, async () => {
      const loaded = await this.disk.load(key);
      // A fetch that finished while the disk was read is newer than what the disk had.
      if (!this.images.has(key)) {
        this.images.set(key, loaded ?? null);
      }
      return this.images.get(key) ?? undefined;
    });
  }

  freshness(image: CachedImage): Freshness {
    const now = this.clock.now();
    const expiresAt = image.fetchedAt + this.cache.ttlSeconds * 1000;
    return {
      stale: now >= expiresAt,
      expiresAt,
      ageSeconds: Math.max(0, Math.floor((now - image.fetchedAt) / 1000)),
      ttlSeconds: this.cache.ttlSeconds,
    };
  }

  private async fetchAndStore(
    key: string,
    size: ImageSize,
  ): Promise<CachedImage> {
    let fetched: UpstreamImage;
    try {
      fetched = await this.client.fetchImage(size);
    } catch (error) {
      // Recorded here, inside the single flight, so one failed fetch is logged once however
      // many requests were waiting for it.
      const httpError = toHttpException(error);
      this.recordFailure(key, httpError);
      throw httpError;
    }
    const image = createCachedImage({
      key,
      body: fetched.body,
      contentType: fetched.contentType,
      sha256: sha256Hex(fetched.body),
      fetchedAt: this.clock.now(),
      source: fetched.source,
      ...(fetched.picsumId ? { picsumId: fetched.picsumId } : {}),
    });
    try {
      await this.disk.save(image);
    } catch (error) {
      // The image is good; losing only its copy on disk is better than failing the request.
      this.logger.error(
        `Could not store image ${key} in ${this.disk.directory}; serving it from memory only: ${String(error)}`,
      );
    }
    this.images.set(key, image);
    this.failures.delete(key);
    return image;
  }

  private recordFailure(key: string, error: HttpException): void {
    const retryAt = this.clock.now() + this.upstream.retryAfterSeconds * 1000;
    this.failures.set(key, { error, retryAt });
    this.logger.warn(
      `Upstream fetch for ${key} failed (${error.message}); not retrying before ${new Date(retryAt).toISOString()}`,
    );
  }

  private serveStaleOr(
    cached: CachedImage | undefined,
    error: HttpException,
  ): CacheLookup {
    if (cached && this.isWithinStaleWindow(cached)) {
      return { image: cached, status: 'STALE' };
    }
    throw error;
  }

  private isWithinStaleWindow(image: CachedImage): boolean {
    if (this.cache.staleIfErrorSeconds === undefined) {
      return true;
    }
    const { expiresAt } = this.freshness(image);
    return this.clock.now() < expiresAt + this.cache.staleIfErrorSeconds * 1000;
  }
}

export function keyOf({ width, height }: ImageSize): string {
  return `${width}x${height}`;
}

function toHttpException(error: unknown): HttpException {
  if (error instanceof HttpException) {
    return error;
  }
  return new BadGatewayException(
    `Fetching from the upstream failed: ${errorMessage(error)}`,
  );
}
