import type { ImageVariant } from '../../src/image/image-variant';

/** What `GET /image` asks for when the request names no variant. */
export const DEFAULT_VARIANT: ImageVariant = {
  width: 1200,
  height: 1200,
  grayscale: false,
  blur: 0,
  format: 'jpg',
};
