/** Multipliers of the Kubernetes quantity suffixes that make sense for byte sizes. */
const MULTIPLIERS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

const QUANTITY = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;

/**
 * Reads a byte size written as plain bytes (`1048576`) or as a Kubernetes quantity with a
 * decimal or binary suffix (`500M`, `64Mi`, `1.5Gi`), so the same text can go in a Helm value and
 * in an emptyDir's `sizeLimit`. Returns `undefined` for anything else, and for fractions of a byte.
 */
export function parseByteSize(text: string): number | undefined {
  const match = QUANTITY.exec(text.trim());
  if (!match) {
    return undefined;
  }
  const bytes = Number(match[1]) * MULTIPLIERS[match[2] ?? ''];
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
