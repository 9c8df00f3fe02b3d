// backend/object-format: a part table read back from the backend is checked field by field; tables written
// before the parts' ETags were kept in them still read, and a malformed ETag is refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { coffrePartEtag, decodePartTable, encodePartTable } from '../../src/backend/object-format.js';
import { S3Error } from '../../src/util/s3-error.js';

const header = () => randomBytes(17);
// A stored stream of 33 bytes holds 16 bytes of plaintext: 17 of header, one chunk's 16-byte tag.
const STORED = 33;

test('a part table keeps each part ETag, and one written without them still reads', () => {
  const etag = coffrePartEtag('"0123456789abcdef0123456789abcdef"');
  const parts = [
    { partNumber: 1, storedSize: STORED, header: header(), etag },
    { partNumber: 3, storedSize: STORED, header: header(), etag },
  ];
  assert.deepEqual(decodePartTable(encodePartTable(parts), 'k'), parts);
  const old = JSON.stringify({
    format: 'coffre-backend-parts',
    v: 1,
    parts: [[1, STORED, parts[0]!.header.toString('hex')]],
  });
  assert.deepEqual(decodePartTable(old, 'k'), [
    { partNumber: 1, storedSize: STORED, header: parts[0]!.header },
  ]);
});

test('a part table with a malformed ETag or field count is refused as not this gateway', () => {
  const hex = header().toString('hex');
  for (const entry of [
    [1, STORED, hex, 'not-hex'],
    [1, STORED, hex, 'A'.repeat(32)],
    [1, STORED, hex, 7],
    [1, STORED, hex, 'a'.repeat(32), 'extra'],
  ]) {
    const text = JSON.stringify({ format: 'coffre-backend-parts', v: 1, parts: [entry] });
    assert.throws(
      () => decodePartTable(text, 'k'),
      (err: unknown) => err instanceof S3Error && err.status === 500,
      JSON.stringify(entry),
    );
  }
});
