// Checksums through a gateway: an x-amz-checksum-* a PUT names in a header is checked against the body as it
// streams to the backend, sealed with the object's metadata, and given back by GET and HEAD with
// ChecksumMode=ENABLED (the AWS SDK then checks the bytes it downloads against it); the backend's operator
// sees no checksum. A body that does not match is refused and nothing is stored.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  CopyObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type ChecksumAlgorithm,
  type S3Client,
} from '@aws-sdk/client-s3';
import { computeChecksum, CHECKSUM_ALGORITHMS } from '../../src/api/s3/checksum.js';
import { rejects } from '../helpers/s3.js';
import { customerKey, sseCParams } from '../security/ssec-helpers.js';
import { bodyOf, gatewayForFile, type Backend } from './gateway-helpers.js';

const B = 'sums';

let backend: Backend;
let s3: S3Client;

gatewayForFile((started) => ({ backend, s3 } = started), { buckets: [B] });

type Field = `Checksum${(typeof CHECKSUM_ALGORITHMS)[number]}`;
const field = (alg: string) => `Checksum${alg}` as Field;

test('every algorithm: the checksum a PUT sent comes back on GET and HEAD, and the SDK checks it', async () => {
  const data = randomBytes(150 * 1024 + 7);
  for (const alg of CHECKSUM_ALGORITHMS) {
    const key = `one/${alg}`;
    const value = computeChecksum(alg, data);
    const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: key, Body: data, [field(alg)]: value }));
    assert.equal(put[field(alg)], value);
    const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: key, ChecksumMode: 'ENABLED' }));
    assert.equal(head[field(alg)], value, `${alg} on HEAD`);
    const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: key, ChecksumMode: 'ENABLED' }));
    assert.equal(got[field(alg)], value, `${alg} on GET`);
    assert.ok((await bodyOf(got)).equals(data));
    // Without ChecksumMode, or for a range, none is given (a range's bytes have another checksum).
    const plain = await s3.send(new HeadObjectCommand({ Bucket: B, Key: key }));
    assert.equal(plain[field(alg)], undefined);
    const range = await s3.send(
      new GetObjectCommand({ Bucket: B, Key: key, Range: 'bytes=0-9', ChecksumMode: 'ENABLED' }),
    );
    assert.equal(range[field(alg)], undefined);
    await bodyOf(range);
  }
});

test('the SDK’s own checksums (ChecksumAlgorithm) are kept, for SSE-C objects too, and copies keep them', async () => {
  const data = randomBytes(70_000);
  for (const alg of ['CRC32', 'SHA256'] as ChecksumAlgorithm[]) {
    const put = await s3.send(
      new PutObjectCommand({ Bucket: B, Key: `sdk/${alg}`, Body: data, ChecksumAlgorithm: alg }),
    );
    assert.ok(put[field(alg)]);
    const got = await s3.send(
      new GetObjectCommand({ Bucket: B, Key: `sdk/${alg}`, ChecksumMode: 'ENABLED' }),
    );
    assert.equal(got[field(alg)], put[field(alg)]);
    assert.ok((await bodyOf(got)).equals(data));
  }
  const key = customerKey();
  const put = await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'sdk/ssec',
      Body: data,
      ChecksumAlgorithm: 'CRC32C',
      ...sseCParams(key),
    }),
  );
  const got = await s3.send(
    new GetObjectCommand({ Bucket: B, Key: 'sdk/ssec', ChecksumMode: 'ENABLED', ...sseCParams(key) }),
  );
  assert.equal(got.ChecksumCRC32C, put.ChecksumCRC32C);
  assert.ok((await bodyOf(got)).equals(data));
  await s3.send(new CopyObjectCommand({ Bucket: B, Key: 'sdk/copy', CopySource: `${B}/sdk/SHA256` }));
  const copy = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'sdk/copy', ChecksumMode: 'ENABLED' }));
  assert.equal(copy.ChecksumSHA256, computeChecksum('SHA256', data));
});

test('a body that does not match its checksum is refused and stores nothing; the backend sees no checksum', async () => {
  const data = randomBytes(10_000);
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({
          Bucket: B,
          Key: 'bad',
          Body: data,
          ChecksumCRC32: computeChecksum('CRC32', Buffer.from('something else')),
        }),
      ),
    'BadDigest',
    400,
  );
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'bad' })), '', 404);
  const value = computeChecksum('SHA256', data);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'seen', Body: data, ChecksumSHA256: value }));
  const listed = await backend.client.send(new ListObjectsV2Command({ Bucket: backend.target.bucket }));
  for (const item of listed.Contents ?? []) {
    const head = await backend.client.send(
      new HeadObjectCommand({ Bucket: backend.target.bucket, Key: item.Key }),
    );
    const meta = JSON.stringify(head.Metadata ?? {});
    assert.ok(!meta.includes(value), `${item.Key} shows no checksum`);
    assert.equal(head.ChecksumSHA256, undefined);
  }
});
