import { cachedImageOf } from '../../../../test/support/cached-image-of';
import {
  decodeMetadata,
  encodeEntry,
  isLeftover,
  metadataNameOf,
} from './disk-entry-format';

describe('disk entry format', () => {
  const image = cachedImageOf('width=300&height=200', 'pixels');

  it('names files after a digest of the key, whatever characters it holds', () => {
    const name = metadataNameOf('../../etc/passwd\u0000?');

    expect(name).toMatch(/^[0-9a-f]{32}\.meta\.json$/);
    expect(metadataNameOf('a')).not.toBe(metadataNameOf('b'));
  });

  it('names a body after its key and checksum, so a new body never overwrites the one the metadata names', () => {
    const other = cachedImageOf('width=300&height=200', 'other pixels');

    const first = encodeEntry(image).metadata.bodyFile;
    const second = encodeEntry(other).metadata.bodyFile;

    expect(first).toMatch(/^[0-9a-f]{32}\.[0-9a-f]{16}\.img$/);
    expect(first.slice(0, 32)).toBe(second.slice(0, 32));
    expect(first).not.toBe(second);
  });

  it('reads back what it wrote, with its size in whole blocks', () => {
    const { metadata, metadataText, diskBytes } = encodeEntry(image);

    expect(decodeMetadata(metadataNameOf(image.key), metadataText)).toEqual(
      metadata,
    );
    expect(metadata).toMatchObject({
      version: 1,
      key: image.key,
      bytes: image.body.length,
      sha256: image.sha256,
      picsumId: '7',
    });
    expect(diskBytes).toBe(2 * 4096);
  });

  it('refuses metadata that names another key than its file name says', () => {
    const { metadataText } = encodeEntry(image);

    expect(() => decodeMetadata(metadataNameOf('other'), metadataText)).toThrow(
      'it names key "width=300&height=200"',
    );
  });

  it('refuses metadata whose body name could leave the directory, or that is not JSON', () => {
    const { metadata } = encodeEntry(image);
    const escaping = JSON.stringify({ ...metadata, bodyFile: '../x.img' });

    expect(() => decodeMetadata(metadataNameOf(image.key), escaping)).toThrow(
      /bodyFile/,
    );
    expect(() => decodeMetadata(metadataNameOf(image.key), '{')).toThrow(
      SyntaxError,
    );
  });

  it('takes temporary files and bodies no kept entry names for leftovers of interrupted writes', () => {
    const kept = new Set(['aa.bb.img']);

    expect(isLeftover('.1234.tmp', kept)).toBe(true);
    expect(isLeftover('cc.dd.img', kept)).toBe(true);
    expect(isLeftover('aa.bb.img', kept)).toBe(false);
    expect(isLeftover('aa.meta.json', kept)).toBe(false);
  });
});
