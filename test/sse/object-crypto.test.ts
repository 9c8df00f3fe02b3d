// Per-object encryption: keys bound to identity, metadata sealing as the wrong-key check, the stored record
// (no key material), the InvalidRequest cases, and parts bound to their numbers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Transform } from 'node:stream';
import { S3Error } from '../../src/util/s3-error.js';
import {
  CHUNK_SIZE,
  HEADER_SIZE,
  IntegrityError,
  plaintextRangeToCiphertextRange,
} from '../../src/crypto/aead-stream.js';
import type { EncryptionParams } from '../../src/sse/params.js';
import {
  ObjectCrypto,
  checkParamsFitObject,
  decodeStoredEncryption,
  encodeStoredEncryption,
  multipartEtag,
  partContext,
  partEtagHash,
  partEtagMatches,
  partsTag,
  segmentsDigest,
  storedEncryptionFor,
  type StoredEncryption,
} from '../../src/sse/object-crypto.js';
import type { Segment } from '../../src/model/types.js';
import { sealInBlocks } from '../helpers/seal.js';

const identity = { bucketId: 'bkt-1', versionId: 'ver-1', objectKey: 'dir/file.bin' };

function sseC(key = randomBytes(32)): EncryptionParams {
  return { kind: 'sse-c', key: Buffer.from(key), keyMd5: createHash('md5').update(key).digest('base64') };
}

async function run(t: Transform, data: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([data]), t, async (src: AsyncIterable<Buffer>) => {
    for await (const b of src) out.push(b);
  });
  return Buffer.concat(out);
}

function isS3(code: string, status: number) {
  return (err: unknown) => err instanceof S3Error && err.code === code && err.status === status;
}

test('plaintext params need no object crypto', () => {
  assert.equal(ObjectCrypto.open({ kind: 'plaintext' }, identity), undefined);
});

test('data round trip, whole and ranged; the same key on another identity cannot read it', async () => {
  const key = randomBytes(32);
  const oc = ObjectCrypto.open(sseC(key), identity)!;
  const plain = randomBytes(200_000);
  const sealer = oc.sealer();
  const header = Buffer.from(sealer.header);
  const sealed = await sealInBlocks(sealer, plain, 2 * CHUNK_SIZE);
  assert.ok((await run(oc.decryptStream(), sealed)).equals(plain));
  const range = plaintextRangeToCiphertextRange(70_000, 150_000, plain.length);
  const slice = (async function* () {
    yield sealed.subarray(range.cipherStart, range.cipherEnd);
  })();
  const pieces: Buffer[] = [];
  for await (const p of oc.decryptRange(slice, header, range, undefined, false)) pieces.push(p);
  const part = Buffer.concat(pieces);
  assert.ok(part.equals(plain.subarray(70_000, 150_000)));
  oc.dispose();

  for (const other of [
    { ...identity, versionId: 'ver-2' },
    { ...identity, objectKey: 'dir/file.bin2' },
    { ...identity, bucketId: 'bkt-2' },
  ]) {
    const wrong = ObjectCrypto.open(sseC(key), other)!;
    await assert.rejects(run(wrong.decryptStream(), sealed), IntegrityError);
  }
  // Disposing zeroes the derived keys: a stream opened after dispose cannot decrypt.
  await assert.rejects(run(oc.decryptStream(), sealed), IntegrityError);
  assert.equal(sealed.subarray(0, HEADER_SIZE).equals(header), true);
});

test('sealers and streams keep working when the object crypto is disposed mid-request', async () => {
  const oc = ObjectCrypto.open(sseC(), identity)!;
  const plain = randomBytes(5000);
  const sealer = oc.sealer();
  const dec = oc.decryptStream();
  oc.dispose();
  assert.ok((await run(dec, await sealInBlocks(sealer, plain, CHUNK_SIZE))).equals(plain));
});

test('blocks sealed one by one make the same stream as one run, in any block size', async () => {
  const oc = ObjectCrypto.open(sseC(), identity)!;
  for (const size of [0, 1, CHUNK_SIZE, 3 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17]) {
    const plain = randomBytes(size);
    const sealer = oc.sealer({ partNumber: 4 });
    const whole = sealer.sealInline(plain);
    for (const blockPlain of [CHUNK_SIZE, 2 * CHUNK_SIZE, 8 * CHUNK_SIZE]) {
      const blocks = await sealInBlocks(sealer, plain, blockPlain);
      assert.ok(blocks.equals(whole), `${size} bytes in blocks of ${blockPlain}`);
    }
    assert.ok(oc.decryptBuffer(whole, { partNumber: 4 }).equals(plain));
  }
  // A block inside the stream holds whole chunks; only the whole stream may be empty.
  const sealer = oc.sealer();
  const room = () => Buffer.alloc(4 * CHUNK_SIZE);
  await assert.rejects(sealer.seal(Buffer.alloc(100), room(), 0, false), RangeError);
  await assert.rejects(sealer.seal(Buffer.alloc(0), room(), CHUNK_SIZE, true), RangeError);
  oc.dispose();
});

test('parts are bound to their part numbers', async () => {
  const key = randomBytes(32);
  const oc = ObjectCrypto.open(sseC(key), identity)!;
  const plain = randomBytes(1000);
  const sealed = await sealInBlocks(oc.sealer({ partNumber: 2 }), plain, CHUNK_SIZE);
  assert.ok((await run(oc.decryptStream({ partNumber: 2 }), sealed)).equals(plain));
  await assert.rejects(run(oc.decryptStream({ partNumber: 3 }), sealed), IntegrityError);
  assert.ok(oc.decryptBuffer(sealed, { partNumber: 2 }).equals(plain));
  const inline = oc.encryptBuffer(plain, { partNumber: 2 });
  assert.ok((await run(oc.decryptStream({ partNumber: 2 }), inline)).equals(plain));
  assert.throws(() => oc.decryptBuffer(inline), IntegrityError);
  await assert.rejects(run(oc.decryptStream(), sealed), IntegrityError);
  assert.deepEqual([...partContext(2)], [0x70, 0x61, 0x72, 0x74, 0, 0, 0, 2]);
  assert.throws(() => partContext(0), RangeError);
});

test('metadata sealing: round trip; a wrong key is 403 AccessDenied', () => {
  const key = randomBytes(32);
  const oc = ObjectCrypto.open(sseC(key), identity)!;
  const meta = { 'content-type': 'text/plain', 'x-amz-meta-colour': 'bleu' };
  const sealed = oc.encryptMetadata(meta);
  assert.ok(!sealed.includes(Buffer.from('bleu')));
  assert.deepEqual(oc.decryptMetadata(sealed), meta);
  assert.deepEqual(ObjectCrypto.open(sseC(key), identity)!.checkKeyMatches(sealed), meta);
  const empty = oc.encryptMetadata({});
  assert.deepEqual(oc.checkKeyMatches(empty), {});

  const wrong = ObjectCrypto.open(sseC(), identity)!;
  assert.throws(() => wrong.checkKeyMatches(sealed), isS3('AccessDenied', 403));
  assert.throws(() => wrong.checkKeyMatches(empty), isS3('AccessDenied', 403));
  const elsewhere = ObjectCrypto.open(sseC(key), { ...identity, objectKey: 'other' })!;
  assert.throws(() => elsewhere.decryptMetadata(sealed), isS3('AccessDenied', 403));
});

test('stored record: no key material, versioned, validated', () => {
  const params = sseC();
  const record = storedEncryptionFor(params);
  assert.deepEqual(record, { v: 2, kind: 'sse-c', alg: 'AES256' });
  const text = encodeStoredEncryption(record);
  assert.ok(params.kind === 'sse-c' && !text.includes(params.keyMd5));
  assert.deepEqual(decodeStoredEncryption(text), record);
  assert.deepEqual(decodeStoredEncryption(encodeStoredEncryption({ v: 1, kind: 'plaintext' })), {
    v: 1,
    kind: 'plaintext',
  });
  const sealed = { ...record, manifest: 'AAAA' };
  assert.deepEqual(decodeStoredEncryption(encodeStoredEncryption(sealed)), sealed);
  const s3 = storedEncryptionFor({ kind: 'sse-s3', keyId: 'master-1', rootKey: randomBytes(32) });
  assert.deepEqual(decodeStoredEncryption(encodeStoredEncryption(s3)), s3);
  for (const bad of [
    '{',
    '{"v":3,"kind":"plaintext"}',
    '{"v":1,"kind":"sse-c","alg":"AES256","manifest":"AAAA"}',
    '{"v":2,"kind":"sse-c","alg":"AES256","manifest":"not base64!"}',
    '{"v":2,"kind":"sse-c","alg":"AES256","partsTag":"abc"}',
    '{"v":1,"kind":"sse-kms"}',
    'null',
    '{"v":1,"kind":"sse-c"}',
  ]) {
    assert.throws(() => decodeStoredEncryption(bad), isS3('InternalError', 500), bad);
  }
});

test('reading with parameters that do not fit the object is 400 InvalidRequest', () => {
  const c = storedEncryptionFor(sseC());
  const plain = storedEncryptionFor({ kind: 'plaintext' });
  assert.throws(
    () => checkParamsFitObject(c, { kind: 'plaintext' }),
    (err: unknown) => {
      assert.ok(isS3('InvalidRequest', 400)(err));
      assert.match((err as Error).message, /stored using a form of Server Side Encryption/);
      return true;
    },
  );
  assert.throws(() => checkParamsFitObject(plain, sseC()), isS3('InvalidRequest', 400));
  checkParamsFitObject(c, sseC());
  checkParamsFitObject(plain, { kind: 'plaintext' });
});

test('object record: the manifest and the parts tag bind size, ETag and every segment', () => {
  const params = sseC();
  const crypto = ObjectCrypto.open(params, identity)!;
  const other = ObjectCrypto.open(params, { ...identity, versionId: 'ver-2' })!;
  const seg = (partNumber: number | undefined, plainSize: number, fill: string): Segment => ({
    ...(partNumber === undefined ? {} : { partNumber }),
    plainSize,
    storedSize: plainSize + 33,
    cryptoHeader: randomBytes(HEADER_SIZE),
    blocks: [{ hash: fill.repeat(64), size: plainSize + 33 }],
  });
  const refused = (stored: StoredEncryption, r: { size: number; etag: string; segments: Segment[] }) =>
    assert.throws(() => crypto.checkObjectRecord(stored, r), isS3('InternalError', 500));

  // One PUT: a sealed manifest.
  const single = { size: 5 * CHUNK_SIZE, etag: '"e"', segments: [seg(undefined, 5 * CHUNK_SIZE, 'a')] };
  const checksums = { SHA256: 'c2hhMjU2' };
  const manifest = crypto.sealManifest({
    size: single.size,
    etag: single.etag,
    checksums,
    segments: segmentsDigest(single.segments),
  });
  const stored: StoredEncryption = { ...storedEncryptionFor(params), manifest };
  assert.deepEqual(crypto.checkObjectRecord(stored, single), checksums);
  const cut = { ...single.segments[0]!, plainSize: 4 * CHUNK_SIZE };
  refused(stored, { ...single, size: 4 * CHUNK_SIZE });
  refused(stored, { ...single, size: 4 * CHUNK_SIZE, segments: [cut] });
  refused(stored, { ...single, etag: '"f"' });
  refused(stored, { ...single, segments: [{ ...single.segments[0]!, blocks: [] }] });
  refused({ ...stored, v: 1 }, single);
  refused({ ...storedEncryptionFor(params) }, single);
  assert.throws(() => other.checkObjectRecord(stored, single), isS3('InternalError', 500));

  // SSE-C multipart completed without the key: the parts tag, from the parts' ETags.
  const parts = [seg(1, 80 * CHUNK_SIZE, 'b'), seg(2, 80 * CHUNK_SIZE, 'c'), seg(3, 7, 'd')];
  const etags = parts.map((p) => crypto.partEtag(p));
  assert.ok(etags.every((e) => /^"[0-9a-f]{32}"$/.test(e)));
  assert.ok(partEtagMatches(etags[0]!, partEtagHash(etags[0]!)));
  assert.ok(!partEtagMatches(etags[1]!, partEtagHash(etags[0]!)));
  assert.notEqual(crypto.partEtag(parts[0]!), other.partEtag(parts[0]!));
  const size = parts.reduce((n, p) => n + p.plainSize, 0);
  const etag = multipartEtag(etags);
  const tagged: StoredEncryption = { ...storedEncryptionFor(params), partsTag: partsTag(etags, size, etag) };
  const multi = { size, etag, segments: parts };
  assert.deepEqual(crypto.checkObjectRecord(tagged, multi), {});
  const dropped = parts.slice(0, 2);
  const droppedSize = dropped.reduce((n, p) => n + p.plainSize, 0);
  refused(tagged, { size: droppedSize, etag, segments: dropped });
  refused(tagged, { size: droppedSize, etag: multipartEtag(etags.slice(0, 2)), segments: dropped });
  refused(tagged, { ...multi, segments: [parts[1]!, parts[0]!, parts[2]!] });
  refused(tagged, { ...multi, segments: [parts[0]!, parts[0]!, parts[2]!] });
  refused(tagged, { ...multi, segments: [parts[0]!, parts[1]!, { ...parts[2]!, plainSize: 6 }] });
  refused(tagged, { ...multi, segments: [parts[0]!, { ...parts[1]!, partNumber: 5 }, parts[2]!] });
  // The tag is only for SSE-C objects; an SSE-S3 one needs its manifest.
  const s3 = storedEncryptionFor({ kind: 'sse-s3', keyId: 'k', rootKey: randomBytes(32) });
  const s3crypto = ObjectCrypto.open({ kind: 'sse-s3', keyId: 'k', rootKey: randomBytes(32) }, identity)!;
  assert.throws(
    () => s3crypto.checkObjectRecord({ ...s3, partsTag: tagged.partsTag }, multi),
    isS3('InternalError', 500),
  );
  crypto.dispose();
  other.dispose();
  s3crypto.dispose();
});
