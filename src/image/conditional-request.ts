/**
 * Whether an `If-None-Match` header matches `etag`. RFC 9110 asks for the weak comparison
 * here, so `W/"x"` matches `"x"`; `*` matches any current representation.
 */
export function ifNoneMatchMatches(
  header: string | undefined,
  etag: string,
): boolean {
  if (!header) {
    return false;
  }
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}
