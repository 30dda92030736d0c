/** The image formats Picsum serves, by their URL extension. */
export const IMAGE_FORMATS = ['jpg', 'webp'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

export const MAX_IMAGE_SIDE = 5000;
export const MAX_BLUR = 10;

/** One variant of Picsum's images: what the upstream is asked for, and what a cache entry holds. */
export interface ImageVariant {
  readonly width: number;
  readonly height: number;
  readonly grayscale: boolean;
  /** 1 to 10, or 0 for no blur. */
  readonly blur: number;
  readonly format: ImageFormat;
}

/**
 * The cache key of a variant: one spelling per variant, whatever order or defaults the request
 * used. The default variant's key is plain `{width}x{height}`, as before variants existed, so
 * entries stored by earlier versions are still found.
 */
export function variantKey(variant: ImageVariant): string {
  const grayscale = variant.grayscale ? '-grayscale' : '';
  const blur = variant.blur > 0 ? `-blur${variant.blur}` : '';
  const format = variant.format === 'jpg' ? '' : `.${variant.format}`;
  return `${variant.width}x${variant.height}${grayscale}${blur}${format}`;
}
