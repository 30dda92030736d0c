import { completeJpeg } from '../../../test/support/cached-image-of';
import {
  imageFromReply,
  isRedirect,
  redirectTarget,
  type UpstreamReply,
} from './upstream-reply';

const SOURCE = 'http://upstream.test/id/7/300/200.jpg';
const ALLOWED = new Set(['upstream.test', 'images.test']);

function reply(
  status: number,
  headers: Record<string, unknown>,
  body: Buffer = Buffer.alloc(0),
): UpstreamReply {
  return { status, headers, body };
}

describe('upstream reply', () => {
  it('takes the five redirect statuses for redirects, and no other', () => {
    expect([301, 302, 303, 307, 308].every(isRedirect)).toBe(true);
    expect([200, 300, 304, 305, 400].some(isRedirect)).toBe(false);
  });

  it('resolves a relative Location against the URL that redirected', () => {
    expect(
      redirectTarget(
        'http://upstream.test/300/200',
        reply(302, { location: '/id/7/300/200.jpg' }),
        ALLOWED,
      ),
    ).toBe(SOURCE);
  });

  it.each([
    [{}, 'answered 302 without a Location'],
    [{ location: 'http://[::1' }, 'redirected to an invalid URL "http://[::1"'],
    [{ location: 'file:///etc/passwd' }, 'redirected to a file: URL'],
    [
      { location: 'http://169.254.169.254/latest' },
      'redirected to host 169.254.169.254, which is not the upstream',
    ],
  ])('refuses a redirect with %j, saying why', (headers, message) => {
    expect(() =>
      redirectTarget('http://upstream.test/1/1', reply(302, headers), ALLOWED),
    ).toThrow(message);
  });

  it('takes a complete JPEG labelled as one, with its plain Picsum id', () => {
    const body = completeJpeg('pixels');

    const { image, refusedPicsumId } = imageFromReply(
      SOURCE,
      reply(
        200,
        {
          'content-type': 'image/jpeg',
          'content-length': String(body.length),
          'picsum-id': '7',
        },
        body,
      ),
      1024,
    );

    expect(image).toEqual({
      body,
      contentType: 'image/jpeg',
      source: SOURCE,
      picsumId: '7',
    });
    expect(refusedPicsumId).toBeUndefined();
  });

  it('names a Picsum-ID that is not a plain id instead of passing it on', () => {
    const checked = imageFromReply(
      SOURCE,
      reply(
        200,
        { 'content-type': 'image/jpeg', 'picsum-id': '<script>' },
        completeJpeg('x'),
      ),
      1024,
    );

    expect(checked.image.picsumId).toBeUndefined();
    expect(checked.refusedPicsumId).toBe('<script>');
  });

  it.each([
    [
      reply(
        400,
        { 'content-type': 'text/plain' },
        Buffer.from('Invalid size\u001b'),
      ),
      'Upstream answered 400 for http://upstream.test/id/7/300/200.jpg: "Invalid size"',
    ],
    [
      reply(500, { 'content-type': 'text/html' }, Buffer.from('<b>no</b>')),
      /answered 500 for \S+$/,
    ],
    [
      reply(200, { 'content-type': 'image/svg+xml' }, Buffer.from('<svg/>')),
      'Content-Type "image/svg+xml"',
    ],
    [
      reply(
        200,
        { 'content-type': 'image/jpeg', 'content-length': '99' },
        completeJpeg('x'),
      ),
      'is truncated: Content-Length 99, received 7 bytes',
    ],
    [
      reply(200, { 'content-type': 'image/jpeg' }, Buffer.alloc(2000, 0xff)),
      'larger than UPSTREAM_MAX_BYTES (1024 bytes)',
    ],
    [
      reply(
        200,
        { 'content-type': 'image/jpeg' },
        completeJpeg('x').subarray(0, 5),
      ),
      'is not a complete JPEG',
    ],
    [
      reply(200, { 'content-type': 'image/png' }, completeJpeg('x')),
      'is image/jpeg although labelled image/png',
    ],
  ])('refuses reply %#, naming the problem', (refused, message) => {
    expect(() => imageFromReply(SOURCE, refused, 1024)).toThrow(message);
  });

  it('keeps the status of an upstream error, for Cache-Status', () => {
    expect(() => imageFromReply(SOURCE, reply(503, {}), 1024)).toThrow(
      expect.objectContaining({ forwardStatus: 503 }) as Error,
    );
  });
});
