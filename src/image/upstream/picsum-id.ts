/** Picsum ids are short numbers; anything else is not passed on to clients. */
const PICSUM_ID = /^[A-Za-z0-9_-]{1,32}$/;

/** Whether `id` may be passed on as `X-Picsum-Id`: 1 to 32 of A-Z, a-z, 0-9, `_` and `-`. */
export function isValidPicsumId(id: string): boolean {
  return PICSUM_ID.test(id);
}
