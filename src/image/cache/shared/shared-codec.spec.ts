import { cachedImageOf } from '../../../../test/support/cached-image-of';
import {
  MAX_CLOCK_SKEW_MS,
  MAX_FAILURE_MESSAGE_CHARS,
  MAX_HEADER_BYTES,
  recordableMessage,
  SharedCodec,
} from './shared-codec';

const NOW = Date.parse('2026-01-01T00:00:00Z');

describe(SharedCodec.name, () => {
  const codec = new SharedCodec(
    { maxBodyBytes: 1024, maxRetryAfterMs: 10_000 },
    () => NOW,
  );
  const image = cachedImageOf('300x200', 'pixels', NOW);

  /** An entry whose header is `header` (JSON), followed by `body`. */
  function entryWith(header: unknown, body: Buffer = image.body): Buffer {
    const json = Buffer.from(JSON.stringify(header));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(json.length);
    return Buffer.concat([length, json, body]);
  }
  const goodHeader = {
    version: 1,
    key: image.key,
    bytes: image.body.length,
    sha256: image.sha256,
    fetchedAt: NOW,
    source: image.source,
  };

  it('reads back the image it encoded, byte for byte', () => {
    const decoded = codec.decodeEntry(image.key, codec.encodeEntry(image));

    expect(decoded).toMatchObject({
      key: image.key,
      sha256: image.sha256,
      fetchedAt: NOW,
      picsumId: '7',
    });
    expect('body' in decoded && decoded.body.equals(image.body)).toBe(true);
  });

  it('reads the header of a value that holds the header alone', () => {
    const encoded = codec.encodeEntry(image);
    const header = codec.decodeHeader(
      image.key,
      encoded.subarray(0, 4 + encoded.readUInt32BE(0)),
    );

    expect(header).toMatchObject({ key: image.key, bytes: image.body.length });
  });

  it.each([
    ['a value too short for a header', Buffer.from([0, 0]), 'too short'],
    [
      'a header longer than the limit',
      (() => {
        const value = Buffer.alloc(8);
        value.writeUInt32BE(MAX_HEADER_BYTES);
        return value;
      })(),
      `more than ${MAX_HEADER_BYTES}`,
    ],
    ['a header that is not JSON', entryWith('x').fill(0x7b, 4, 7), 'not JSON'],
    [
      'a header of another key',
      entryWith({ ...goodHeader, key: 'other' }),
      'stored for "other"',
    ],
    [
      'a body of another length',
      entryWith({ ...goodHeader, bytes: 3 }),
      'bytes where 3 were stored',
    ],
    [
      'a body larger than UPSTREAM_MAX_BYTES',
      entryWith({ ...goodHeader, bytes: 2000 }, Buffer.alloc(2000)),
      'more than UPSTREAM_MAX_BYTES (1024)',
    ],
    [
      'a fetch time in the future beyond the clock skew',
      entryWith({ ...goodHeader, fetchedAt: NOW + MAX_CLOCK_SKEW_MS + 1 }),
      "ahead of this replica's clock",
    ],
    [
      'a source that is not http(s)',
      entryWith({ ...goodHeader, source: 'javascript:alert(1)' }),
      'not an http(s) URL',
    ],
    [
      'a body that does not match its checksum',
      entryWith(goodHeader, Buffer.from(image.body).fill(0x41, 4, 5)),
      'does not match the stored',
    ],
  ])('refuses %s', (_name, value, reason) => {
    const decoded = codec.decodeEntry(image.key, value);

    expect(decoded).toEqual({
      invalid: expect.stringContaining(reason) as unknown,
    });
  });

  it('reads back every kind of notice it encodes', () => {
    const notices = [
      {
        type: 'stored',
        from: 'a',
        key: 'k',
        etag: `"${'a'.repeat(32)}"`,
        fetchedAt: NOW,
        replaces: true,
      },
      { type: 'purged', from: 'a', key: null },
      {
        type: 'failed',
        from: 'a',
        key: 'k',
        status: 502,
        message: 'Upstream answered 500 for http://x/1/1',
        retryAfterMs: 5000,
        forwardStatus: 500,
      },
    ] as const;

    for (const notice of notices) {
      expect(codec.decodeNotice(codec.encodeNotice(notice))).toEqual(notice);
    }
  });

  it('ignores a notice that is not ours, naming its key when it has one', () => {
    expect(codec.decodeNotice('{')).toEqual({ invalid: 'not JSON' });
    expect(
      codec.decodeNotice(
        JSON.stringify({
          type: 'stored',
          from: 'a',
          key: 'k',
          etag: 'x',
          fetchedAt: NOW,
        }),
      ),
    ).toEqual({
      invalid: expect.stringContaining('etag') as unknown,
      key: 'k',
    });
    expect(
      codec.decodeNotice(
        JSON.stringify({
          type: 'failed',
          from: 'a',
          key: 'k',
          status: 502,
          message: '<script>',
          retryAfterMs: 1,
        }),
      ),
    ).toEqual({
      invalid: expect.stringContaining(
        "not the upstream client's wording",
      ) as unknown,
      key: 'k',
    });
  });

  it('takes a failure record’s retry time from its expiry, and refuses one that never expires or outlasts the setting', () => {
    const record = codec.encodeNotice({
      type: 'failed',
      from: 'a',
      key: 'k',
      status: 504,
      message: 'Upstream http://x/1/1 did not answer',
      retryAfterMs: 10_000,
    });

    expect(codec.decodeFailure('k', record, 2500)).toMatchObject({
      retryAfterMs: 2500,
    });
    expect(codec.decodeFailure('k', record, -1)).toEqual({
      invalid: 'a failure record without an expiry',
    });
    expect(codec.decodeFailure('k', record, 60_000)).toEqual({
      invalid: expect.stringContaining(
        'longer than UPSTREAM_RETRY_AFTER_SECONDS',
      ) as unknown,
    });
    expect(codec.decodeFailure('other', record, 2500)).toEqual({
      invalid: 'a failed notice for k',
    });
  });

  it('cuts a message to what another replica accepts', () => {
    const long = `Upstream ${'x'.repeat(500)}\u202e`;

    const recordable = recordableMessage(long);

    expect(recordable).toHaveLength(MAX_FAILURE_MESSAGE_CHARS);
    expect(recordable.endsWith('…')).toBe(true);
    expect(recordableMessage('Upstream ok')).toBe('Upstream ok');
  });
});
