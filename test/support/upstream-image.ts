import type { UpstreamImage } from '../../src/image/upstream/upstream-reply';
import { completeJpeg } from './cached-image-of';

/** What the upstream client returns for Picsum's image `id`: a complete (tiny) JPEG. */
export function upstreamImage(id: number): UpstreamImage {
  return {
    body: completeJpeg(`image ${id}`),
    contentType: 'image/jpeg',
    picsumId: String(id),
    source: `http://upstream/id/${id}/1200/1200.jpg`,
  };
}
