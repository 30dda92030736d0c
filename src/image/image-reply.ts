import type { FastifyReply } from 'fastify';
import { cacheStatusOf } from './cache/cache-outcome';
import { ifNoneMatchMatches } from './conditional-request';
import type { CacheLookup, CachedImage, Freshness } from './cache/cache-model';

/**
 * Whatever an image body holds, a browser that opens it as a document runs nothing and loads
 * nothing on our origin (`X-Content-Type-Options: nosniff` is on every reply, see ConnectionPolicy).
 */
const IMAGE_CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox";

type Headers = Readonly<Record<string, string>>;

/** The headers of the last fresh memory hit of each image, and the age they were made for. */
const madeMemoryHitHeaders = new WeakMap<
  CachedImage,
  { readonly ageSeconds: number; readonly headers: Headers }
>();

/**
 * The headers of a reply that carries the image `lookup` found (the body's own included).
 * Those of the image alone were computed when it was stored; `Age`, `Cache-Control`'s max-age
 * and `Cache-Status` are made here.
 */
export function imageHeaders(
  { image, status, outcome }: CacheLookup,
  freshness: Freshness,
): Headers {
  // A cache downstream counts freshness as max-age minus Age, so max-age carries the whole
  // lifetime and Age the time already spent; a stale image must not be reused, beyond the
  // stale-while-revalidate and stale-if-error windows (RFC 5861) this cache keeps too.
  const maxAge = freshness.stale ? 0 : freshness.ttlSeconds;
  return {
    ...image.validatorHeaders,
    'cache-control': `public, max-age=${maxAge}${freshness.staleDirectives}`,
    age: String(freshness.ageSeconds),
    'x-cache': status,
    'cache-status': cacheStatusOf(
      outcome,
      freshness.ttlSeconds - freshness.ageSeconds,
    ),
    'content-security-policy': IMAGE_CONTENT_SECURITY_POLICY,
    ...image.bodyHeaders,
  };
}

/**
 * `imageHeaders` of a fresh hit in memory, made once per image and second of age (they change
 * with the age only): building the object costs more than the rest of such a reply.
 */
export function memoryHitHeaders(
  hit: CacheLookup,
  freshness: Freshness,
): Headers {
  const made = madeMemoryHitHeaders.get(hit.image);
  if (made?.ageSeconds === freshness.ageSeconds) {
    return made.headers;
  }
  const headers = imageHeaders(hit, freshness);
  madeMemoryHitHeaders.set(hit.image, {
    ageSeconds: freshness.ageSeconds,
    headers,
  });
  return headers;
}

/**
 * Answers an `/image` request with the image `lookup` found: a 304 when `ifNoneMatch` matches
 * its ETag (with the headers of a 200 but the body's own), else the body.
 */
export function sendImage(
  reply: FastifyReply,
  lookup: CacheLookup,
  freshness: Freshness,
  ifNoneMatch: string | undefined,
): FastifyReply {
  const headers = imageHeaders(lookup, freshness);
  if (ifNoneMatchMatches(ifNoneMatch, lookup.image.etag)) {
    const notModified = Object.entries(headers).filter(
      ([name]) => !(name in lookup.image.bodyHeaders),
    );
    return reply.code(304).headers(Object.fromEntries(notModified)).send();
  }
  return reply.headers(headers).send(lookup.image.body);
}
