/**
 * Control characters (C0, DEL, C1), format characters (the bidi overrides and isolates, zero
 * widths, the byte-order mark) and the Unicode line and paragraph separators: what can make a
 * text read differently from what it holds, in a terminal, a log viewer or a page.
 */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\u2028\u2029]+/gu;
const ANY_UNPRINTABLE = /[\p{Cc}\p{Cf}\u2028\u2029]/u;

/**
 * `text` as it may be shown or logged when it came from outside (an upstream's error body, a
 * header): every run of unprintable characters becomes one space, and the ends are trimmed.
 */
export function printableText(text: string): string {
  return text.replace(UNPRINTABLE, ' ').trim();
}

/** Whether `text` holds no character that `printableText` would replace. */
export function isPrintableText(text: string): boolean {
  return !ANY_UNPRINTABLE.test(text);
}
