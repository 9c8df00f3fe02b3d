// docs/formats-sse.md is the contract: its test vectors must decrypt, and an independent reader written from it
// (test/crypto/second_reader.py, Python's `cryptography`) must read what coffre writes and refuse what it refuses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Transform } from 'node:stream';
import {
  CHUNK_SIZE,
  HEADER_SIZE,
  createDecryptStream,
  plaintextRangeToCiphertextRange,
} from '../../src/crypto/aead-stream.js';
import { deriveObjectKey } from '../../src/crypto/keys.js';
import { ObjectCrypto, multipartEtag, partsTag, segmentsDigest } from '../../src/sse/object-crypto.js';
import type { Segment } from '../../src/model/types.js';
import { sealInBlocks } from '../helpers/seal.js';

const root = Buffer.from([...Array(32).keys()]);
const identity = { bucketId: 'bucket-id-1', versionId: 'version-id-1', objectKey: 'photos/2026/cat.jpg' };

async function run(t: Transform, data: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([data]), t, async (src: AsyncIterable<Buffer>) => {
    for await (const b of src) out.push(b);
  });
  return Buffer.concat(out);
}

test('the documented test vectors', async () => {
  const dataKey = deriveObjectKey(root, 'data', identity);
  assert.equal(dataKey.toString('hex'), '123aa39579ef1f2c80d246c1e07d24cd61fb4fb8f847e2be089a5bb09cfec8e3');
  assert.equal(
    deriveObjectKey(root, 'metadata', identity).toString('hex'),
    'cb4d6f5e4050e2f71f201f025913c77ff73a5e5837b20e6dcdce350594cecd7f',
  );
  const stream = Buffer.from(
    '019ff85e9f0ca0c87a4f370518cfd752eddcef6deb5106f777db227c5b82d02edf30a2f5650bab',
    'hex',
  );
  assert.equal((await run(createDecryptStream(dataKey), stream)).toString(), 'coffre');
  const sealed = Buffer.from(
    '014d7b9de8eb2cb08a2d46060e601172c0c7ececb88ce2c77f4fa70008094222599cffaa46adb3344dcbe9c447ca5d5c7d2af6bad753773760dc',
    'hex',
  );
  const oc = ObjectCrypto.open({ kind: 'sse-c', key: Buffer.from(root), keyMd5: '' }, identity)!;
  assert.deepEqual(oc.decryptMetadata(sealed), { 'content-type': 'image/jpeg' });
});

const reader = fileURLToPath(new URL('../../../test/crypto/second_reader.py', import.meta.url));
const python = spawnSync('python3', ['-c', 'import cryptography.hazmat.primitives.ciphers.aead'], {
  stdio: 'ignore',
});
const noPython = python.status !== 0 ? "python3 with the 'cryptography' package is not installed" : false;

function secondReader(input: Buffer, args: string[], env: Record<string, string> = {}) {
  const id = [identity.bucketId, identity.versionId, identity.objectKey];
  const r = spawnSync('python3', [reader, args[0]!, root.toString('hex'), ...id, ...args.slice(1)], {
    input,
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { ok: r.status === 0, out: r.stdout, err: r.stderr.toString() };
}

test('an independent reader written from the spec reads what coffre writes', { skip: noPython }, async () => {
  const size = 3 * CHUNK_SIZE + 4321;
  const plain = randomBytes(size);
  for (const partNumber of [undefined, 7]) {
    const oc = ObjectCrypto.open({ kind: 'sse-c', key: Buffer.from(root), keyMd5: '' }, identity)!;
    const sealer = oc.sealer({ partNumber });
    const header = Buffer.from(sealer.header);
    const sealed = await sealInBlocks(sealer, plain, 2 * CHUNK_SIZE);
    const part = partNumber === undefined ? '-' : String(partNumber);
    const whole = secondReader(sealed, ['stream', part]);
    assert.ok(whole.ok, whole.err);
    assert.ok(whole.out.equals(plain));

    for (const [a, b] of [
      [0, 1],
      [CHUNK_SIZE - 3, 2 * CHUNK_SIZE + 9],
      [3 * CHUNK_SIZE, size],
    ] as const) {
      const range = plaintextRangeToCiphertextRange(a, b, size);
      const env = { STREAM_HEADER: header.toString('hex'), PLAIN_SIZE: String(size) };
      const got = secondReader(
        sealed.subarray(range.cipherStart, range.cipherEnd),
        ['stream', part, `${a}`, `${b}`],
        env,
      );
      assert.ok(got.ok, got.err);
      assert.ok(got.out.equals(plain.subarray(a, b)), `range [${a}, ${b})`);
    }

    // It refuses what coffre refuses.
    const cut = secondReader(sealed.subarray(0, HEADER_SIZE + 2 * (CHUNK_SIZE + 16)), ['stream', part]);
    assert.equal(cut.ok, false, 'truncated at a chunk boundary');
    const other = secondReader(sealed, ['stream', partNumber === undefined ? '1' : '-']);
    assert.equal(other.ok, false, 'wrong context');

    const meta = secondReader(oc.encryptMetadata({ 'x-amz-meta-a': 'b' }), ['metadata']);
    assert.ok(meta.ok, meta.err);
    assert.deepEqual(JSON.parse(meta.out.toString()), { 'x-amz-meta-a': 'b' });
  }
});

test(
  'the independent reader computes the same record authentication (section 4.1)',
  { skip: noPython },
  () => {
    const oc = ObjectCrypto.open({ kind: 'sse-c', key: Buffer.from(root), keyMd5: '' }, identity)!;
    const segments: Segment[] = [
      {
        partNumber: 1,
        plainSize: 5 * 1024 * 1024,
        storedSize: 5 * 1024 * 1024 + 17 + 80 * 16,
        cryptoHeader: randomBytes(HEADER_SIZE),
        blocks: [
          { hash: 'ab'.repeat(32), size: 1048576 + 17 },
          { hash: 'cd'.repeat(32), size: 4 * 1048576 + 80 * 16 },
        ],
      },
      {
        partNumber: 3,
        plainSize: 10,
        storedSize: 43,
        cryptoHeader: randomBytes(HEADER_SIZE),
        blocks: [],
        inline: randomBytes(43),
      },
    ];
    const etags = segments.map((s) => oc.partEtag(s));
    const size = 5 * 1024 * 1024 + 10;
    const etag = multipartEtag(etags);
    const manifest = { size, etag, checksums: { CRC32: 'AAAAAA==' }, segments: segmentsDigest(segments) };
    const input = {
      size,
      etag,
      manifest: oc.sealManifest(manifest),
      segments: segments.map((s) => ({
        partNumber: s.partNumber,
        plainSize: s.plainSize,
        storedSize: s.storedSize,
        header: s.cryptoHeader!.toString('hex'),
        ...(s.inline ? { inline: s.inline.toString('hex') } : { blocks: s.blocks }),
      })),
    };
    const r = secondReader(Buffer.from(JSON.stringify(input)), ['record']);
    assert.ok(r.ok, r.err);
    assert.deepEqual(JSON.parse(r.out.toString()), {
      segments: segmentsDigest(segments),
      partEtags: etags,
      etag,
      partsTag: partsTag(etags, size, etag),
      manifest,
    });
    oc.dispose();
  },
);
