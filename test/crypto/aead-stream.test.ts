// The chunked AEAD stream: round trips at every size that matters, every range of a small object, ranges of a
// multi-chunk object, and tampering (flip, truncate, swap, drop, append, wrong key, wrong context) → error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Transform } from 'node:stream';
import {
  CHUNK_SIZE,
  HEADER_SIZE,
  IntegrityError,
  RangeOpener,
  SEALED_CHUNK_SIZE,
  TAG_SIZE,
  chunkCount,
  chunkOffset,
  createDecryptStream,
  createEncryptStream,
  createRangeDecryptStream,
  decryptBuffer,
  encryptBuffer,
  encryptedSize,
  openSmall,
  plaintextRangeToCiphertextRange,
  plaintextSize,
  sealSmall,
} from '../../src/crypto/aead-stream.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** `data` cut into pieces of the given sizes (cycled), as views. */
function inPieces(data: Buffer, pieces: number[]): Buffer[] {
  const parts: Buffer[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = pieces[i % pieces.length]!;
    parts.push(data.subarray(off, off + n));
    off += n;
  }
  return parts;
}

/** Feeds `data` through `transform` in pieces of the given sizes (cycled) and collects the output. */
async function run(transform: Transform, data: Buffer, pieces: number[] = [CHUNK_SIZE]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(inPieces(data, pieces)), transform, async (source: AsyncIterable<Buffer>) => {
    for await (const b of source) out.push(b);
  });
  return Buffer.concat(out);
}

const encrypt = (key: Buffer, data: Buffer, pieces?: number[], context?: Buffer) =>
  run(createEncryptStream(key, { context }), data, pieces);

/** A random plaintext of `size` bytes sealed under a fresh key, with the stream's header. */
async function sealedObject(size: number) {
  const key = randomBytes(32);
  const plain = randomBytes(size);
  const sealed = await encrypt(key, plain);
  return { key, plain, sealed, header: sealed.subarray(0, HEADER_SIZE) };
}
const decrypt = (key: Buffer, data: Buffer, pieces?: number[], context?: Buffer) =>
  run(createDecryptStream(key, { context }), data, pieces);

function flip(buf: Buffer, at: number): Buffer {
  const copy = Buffer.from(buf);
  copy[at]! ^= 0x01;
  return copy;
}

test('round trip at chunk-boundary sizes, with odd write sizes', async () => {
  const key = randomBytes(32);
  const sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * MiB + 12345];
  for (const size of sizes) {
    const plain = randomBytes(size);
    for (const pieces of [[CHUNK_SIZE], [1000, 17, 70000], [size || 1]]) {
      const sealed = await encrypt(key, plain, pieces);
      assert.equal(sealed.length, encryptedSize(size), `encryptedSize(${size})`);
      assert.equal(plaintextSize(sealed.length), size);
      assert.equal(sealed[0], 1, 'version byte');
      const back = await decrypt(key, sealed, [7, SEALED_CHUNK_SIZE, 5000]);
      assert.ok(back.equals(plain), `round trip of ${size} bytes`);
    }
  }
});

test('the same plaintext under the same key encrypts differently each time (random salt)', async () => {
  const key = randomBytes(32);
  const plain = randomBytes(1000);
  const a = await encrypt(key, plain);
  const b = await encrypt(key, plain);
  assert.notDeepEqual(a.subarray(HEADER_SIZE), b.subarray(HEADER_SIZE));
  const stream = createEncryptStream(key);
  assert.equal(stream.header.length, HEADER_SIZE);
  stream.destroy();
});

test('encryptedSize and plaintextSize agree; impossible ciphertext sizes are refused', () => {
  assert.equal(chunkCount(0), 1);
  assert.equal(encryptedSize(0), HEADER_SIZE + TAG_SIZE);
  assert.equal(encryptedSize(CHUNK_SIZE), HEADER_SIZE + SEALED_CHUNK_SIZE);
  assert.equal(encryptedSize(CHUNK_SIZE + 1), HEADER_SIZE + SEALED_CHUNK_SIZE + 1 + TAG_SIZE);
  for (let p = 0; p < 3 * CHUNK_SIZE; p += 4093) assert.equal(plaintextSize(encryptedSize(p)), p);
  assert.throws(() => plaintextSize(HEADER_SIZE + TAG_SIZE - 1), IntegrityError);
  assert.throws(() => plaintextSize(HEADER_SIZE + SEALED_CHUNK_SIZE + TAG_SIZE), IntegrityError);
  assert.throws(() => plaintextSize(HEADER_SIZE + SEALED_CHUNK_SIZE + 3), IntegrityError);
});

async function rangeOf(
  key: Buffer,
  sealed: Buffer,
  header: Buffer,
  start: number,
  end: number,
  size: number,
) {
  const range = plaintextRangeToCiphertextRange(start, end, size);
  const slice = sealed.subarray(range.cipherStart, range.cipherEnd);
  return run(createRangeDecryptStream(key, { header, range }), slice, [9999]);
}

test('every range of a small object equals slicing the plaintext', async () => {
  const size = 40;
  const { key, plain, sealed, header } = await sealedObject(size);
  for (let start = 0; start <= size; start++) {
    for (let end = start; end <= size; end++) {
      const got = await rangeOf(key, sealed, header, start, end, size);
      assert.ok(got.equals(plain.subarray(start, end)), `range [${start}, ${end})`);
    }
  }
});

test('ranges of a multi-chunk object read only the chunks they touch', async () => {
  const size = 5 * CHUNK_SIZE + 777;
  const { key, plain, sealed, header } = await sealedObject(size);
  const C = CHUNK_SIZE;
  const cases: [number, number][] = [
    [0, 1],
    [0, C],
    [C - 1, C + 1],
    [C, 2 * C],
    [2 * C + 5, 4 * C - 5],
    [5 * C, size],
    [size - 1, size],
    [0, size],
    [123, size - 456],
  ];
  for (const [start, end] of cases) {
    const range = plaintextRangeToCiphertextRange(start, end, size);
    assert.equal(range.firstChunkIndex, Math.floor(start / C));
    assert.equal(range.lastChunkIndex, Math.floor((end - 1) / C));
    assert.equal(range.cipherStart, chunkOffset(range.firstChunkIndex));
    const touched = range.lastChunkIndex - range.firstChunkIndex + 1;
    assert.ok(range.cipherEnd - range.cipherStart <= touched * SEALED_CHUNK_SIZE);
    const got = await rangeOf(key, sealed, header, start, end, size);
    assert.ok(got.equals(plain.subarray(start, end)), `range [${start}, ${end})`);
  }
  assert.throws(() => plaintextRangeToCiphertextRange(5, 4, size), RangeError);
  assert.throws(() => plaintextRangeToCiphertextRange(0, size + 1, size), RangeError);
});

test('range decryption refuses a tampered, truncated or over-long slice', async () => {
  const key = randomBytes(32);
  const size = 3 * CHUNK_SIZE + 10;
  const sealed = await encrypt(key, randomBytes(size));
  const header = sealed.subarray(0, HEADER_SIZE);
  const range = plaintextRangeToCiphertextRange(CHUNK_SIZE + 3, size, size);
  const slice = sealed.subarray(range.cipherStart, range.cipherEnd);
  const attempt = (bytes: Buffer, r = range) =>
    run(createRangeDecryptStream(key, { header, range: r }), bytes);
  await assert.rejects(attempt(flip(slice, 100)), IntegrityError);
  await assert.rejects(attempt(slice.subarray(0, slice.length - 1)), IntegrityError);
  await assert.rejects(attempt(Buffer.concat([slice, Buffer.of(0)])), IntegrityError);
  // A non-final chunk presented where the stream's final chunk should be (the tail was cut off).
  const short = plaintextRangeToCiphertextRange(0, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE);
  await assert.rejects(attempt(sealed.subarray(short.cipherStart, short.cipherEnd), short), IntegrityError);
  // Chunk 2 read as if it were chunk 1.
  const one = plaintextRangeToCiphertextRange(CHUNK_SIZE, 2 * CHUNK_SIZE, size);
  await assert.rejects(attempt(sealed.subarray(chunkOffset(2), chunkOffset(3)), one), IntegrityError);
  await assert.rejects(
    run(createRangeDecryptStream(randomBytes(32), { header, range }), slice),
    IntegrityError,
    'wrong key',
  );
});

test('tampering with a stored stream is an error, never wrong bytes', async () => {
  const key = randomBytes(32);
  const size = 3 * CHUNK_SIZE + 500;
  const plain = randomBytes(size);
  const sealed = await encrypt(key, plain);
  const chunk = (i: number) => sealed.subarray(chunkOffset(i), Math.min(chunkOffset(i + 1), sealed.length));
  const header = sealed.subarray(0, HEADER_SIZE);
  const tampered: [string, Buffer][] = [
    ['flip a byte in the version', flip(sealed, 0)],
    ['flip a byte in the salt', flip(sealed, 5)],
    ['flip a byte in chunk 0', flip(sealed, HEADER_SIZE + 10)],
    ['flip a byte in a tag', flip(sealed, chunkOffset(1) - 1)],
    ['flip the last byte', flip(sealed, sealed.length - 1)],
    ['truncate at a chunk boundary', sealed.subarray(0, chunkOffset(3))],
    ['truncate mid-chunk', sealed.subarray(0, chunkOffset(2) + 1000)],
    ['truncate inside the header', sealed.subarray(0, 5)],
    ['truncate to the header', sealed.subarray(0, HEADER_SIZE)],
    ['empty input', Buffer.alloc(0)],
    ['swap chunks 0 and 1', Buffer.concat([header, chunk(1), chunk(0), chunk(2), chunk(3)])],
    ['duplicate chunk 1', Buffer.concat([header, chunk(0), chunk(1), chunk(1), chunk(2), chunk(3)])],
    ['drop the final chunk', Buffer.concat([header, chunk(0), chunk(1), chunk(2)])],
    ['drop a middle chunk', Buffer.concat([header, chunk(0), chunk(2), chunk(3)])],
    ['append a byte', Buffer.concat([sealed, Buffer.of(0)])],
    ['append a whole chunk', Buffer.concat([sealed, chunk(1)])],
  ];
  for (const [what, bytes] of tampered) {
    await assert.rejects(decrypt(key, bytes), IntegrityError, what);
  }
  await assert.rejects(decrypt(randomBytes(32), sealed), IntegrityError, 'wrong key');
  await assert.rejects(
    decrypt(key, sealed, undefined, Buffer.from('part 2')),
    IntegrityError,
    'wrong context',
  );
});

test('an empty stream is a single empty final chunk; an empty final chunk elsewhere is refused', async () => {
  const key = randomBytes(32);
  const sealed = await encrypt(key, Buffer.alloc(0));
  assert.equal(sealed.length, HEADER_SIZE + TAG_SIZE);
  assert.equal((await decrypt(key, sealed)).length, 0);
  // A one-chunk stream whose exact-size chunk is followed by another stream's empty final tag cannot verify.
  const full = await encrypt(key, randomBytes(CHUNK_SIZE));
  await assert.rejects(decrypt(key, Buffer.concat([full, sealed.subarray(HEADER_SIZE)])), IntegrityError);
});

test('context binds a stream to its position', async () => {
  const key = randomBytes(32);
  const plain = randomBytes(100);
  const sealed = await encrypt(key, plain, undefined, Buffer.from('part 1'));
  assert.ok((await decrypt(key, sealed, undefined, Buffer.from('part 1'))).equals(plain));
  await assert.rejects(decrypt(key, sealed), IntegrityError);
});

test('sealSmall/openSmall round trip and refuse wrong key, wrong aad, tampering', () => {
  const key = randomBytes(32);
  for (const size of [0, 1, 1000]) {
    const plain = randomBytes(size);
    const aad = Buffer.from('object metadata');
    const sealed = sealSmall(key, plain, aad);
    assert.equal(sealed[0], 1);
    assert.equal(sealed.length, size + 1 + 12 + 16);
    assert.ok(openSmall(key, sealed, aad).equals(plain));
    assert.throws(() => openSmall(randomBytes(32), sealed, aad), IntegrityError);
    assert.throws(() => openSmall(key, sealed, Buffer.from('other')), IntegrityError);
    assert.throws(() => openSmall(key, flip(sealed, sealed.length - 1)), IntegrityError);
    assert.throws(() => openSmall(key, flip(sealed, 0), aad), /version/);
    assert.throws(() => openSmall(key, sealed.subarray(0, 20), aad), IntegrityError);
  }
  assert.throws(() => sealSmall(randomBytes(16), Buffer.alloc(1)), RangeError);
});

test('encryptBuffer/decryptBuffer write and read the same format as the streams', async () => {
  const key = randomBytes(32);
  const context = Buffer.from('part 3');
  for (const size of [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE - 7]) {
    const plain = randomBytes(size);
    const sealed = encryptBuffer(key, plain, { context });
    assert.equal(sealed.length, encryptedSize(size));
    assert.ok((await decrypt(key, sealed, undefined, context)).equals(plain), `stream reads buffer, ${size}`);
    const streamed = await encrypt(key, plain, [1234], context);
    assert.ok(decryptBuffer(key, streamed, { context }).equals(plain), `buffer reads stream, ${size}`);
    assert.throws(() => decryptBuffer(key, flip(sealed, sealed.length - 1), { context }), IntegrityError);
    assert.throws(() => decryptBuffer(key, sealed), IntegrityError, 'context missing');
    if (size >= CHUNK_SIZE + 1) {
      assert.throws(
        () => decryptBuffer(key, sealed.subarray(0, chunkOffset(1)), { context }),
        IntegrityError,
      );
    }
  }
});

test('RangeOpener.writeInPlace: plaintext over its own input, any split; the same refusals as write', async () => {
  const size = 5 * CHUNK_SIZE + 777;
  const { key, plain, sealed, header } = await sealedObject(size);
  const C = CHUNK_SIZE;
  const S = SEALED_CHUNK_SIZE;
  /** Opens [start, end) fed in pieces of the given sizes, each a copy of its own as a worker's read would be. */
  const open = (start: number, end: number, pieces: number[], bytes = sealed) => {
    const range = plaintextRangeToCiphertextRange(start, end, size);
    const opener = new RangeOpener(key, { header, range });
    const out: Buffer[] = [];
    for (const piece of inPieces(bytes.subarray(range.cipherStart, range.cipherEnd), pieces)) {
      const input = Buffer.from(piece);
      const got = opener.writeInPlace(input);
      // Pieces of whole chunks (blocks sealed one by one) are decrypted over themselves.
      if (pieces.every((n) => n % S === 0) && got.length > 0) {
        assert.ok(got.buffer === input.buffer, 'output written over the input');
      }
      out.push(Buffer.from(got));
    }
    opener.end();
    return Buffer.concat(out);
  };
  for (const [start, end] of [
    [0, size],
    [C - 1, 3 * C + 1],
    [123, size - 456],
    [5 * C, size],
  ] as const) {
    // Whole chunks per piece (as blocks sealed one by one are), and pieces that cut chunks anywhere.
    for (const pieces of [[2 * S], [S], [1000, 70_000], [S + 1]]) {
      assert.ok(open(start, end, pieces).equals(plain.subarray(start, end)), `[${start}, ${end}) ${pieces}`);
    }
  }
  const flipped = flip(sealed, HEADER_SIZE + 2 * S + 100);
  assert.throws(() => open(0, size, [2 * S], flipped), IntegrityError);
  const two = plaintextRangeToCiphertextRange(0, 2 * C, size);
  const over = new RangeOpener(key, { header, range: two });
  const extra = Buffer.from(sealed.subarray(two.cipherStart, two.cipherEnd + S));
  assert.throws(() => over.writeInPlace(extra), IntegrityError, 'more than the range');
  const range = plaintextRangeToCiphertextRange(0, size, size);
  const cut = new RangeOpener(key, { header, range });
  cut.writeInPlace(Buffer.from(sealed.subarray(range.cipherStart, range.cipherEnd - 1)));
  assert.throws(() => cut.end(), IntegrityError, 'truncated');
});
