// The real AWS SDK client uploading to a minimal server built only from the authentication and body modules:
// whatever framing, checksum trailers and path encoding the SDK chooses must authenticate and verify.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { isStreamingPayload } from '../../../src/api/s3/aws-chunked.js';
import { ACCESS_KEY, REGION, SECRET_KEY } from './sigv4-client.js';
import { startAuthBodyServer, type AuthBodyServer } from './auth-body-server.js';

let srv: AuthBodyServer;
let seen: AuthBodyServer['seen'];
let endpoint: string;

before(async () => {
  srv = await startAuthBodyServer();
  seen = srv.seen;
  endpoint = srv.endpoint;
});

after(() => srv.close());

function client(secret = SECRET_KEY): S3Client {
  return new S3Client({
    endpoint,
    region: REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: secret },
    maxAttempts: 1,
  });
}

test('PutObject from the AWS SDK: buffers, streams and every checksum algorithm verify', async () => {
  const s3 = client();
  const data = randomBytes(200_000);
  const cases: {
    key: string;
    body: () => Buffer | Readable;
    algorithm?: 'CRC32' | 'CRC32C' | 'SHA1' | 'SHA256' | 'CRC64NVME';
  }[] = [
    { key: 'plain.bin', body: () => data },
    { key: "dir/odd key+!'()*~é&=.bin", body: () => data },
    { key: 'stream.bin', body: () => Readable.from([data.subarray(0, 70_000), data.subarray(70_000)]) },
    { key: 'crc32c.bin', body: () => data, algorithm: 'CRC32C' },
    { key: 'sha1-stream.bin', body: () => Readable.from([data]), algorithm: 'SHA1' },
    { key: 'sha256-stream.bin', body: () => Readable.from([data]), algorithm: 'SHA256' },
    { key: 'crc64.bin', body: () => data, algorithm: 'CRC64NVME' },
  ];
  try {
    for (const c of cases) {
      const before = seen.length;
      const out = await s3.send(
        new PutObjectCommand({
          Bucket: 'bucket',
          Key: c.key,
          Body: c.body(),
          ContentLength: data.length,
          ChecksumAlgorithm: c.algorithm,
        }),
      );
      assert.equal(seen.length, before + 1, c.key);
      const s = seen[seen.length - 1];
      assert.ok(s.body.equals(data), c.key);
      assert.equal(out.ETag, `"${createHash('md5').update(data).digest('hex')}"`);
      if (c.algorithm) assert.equal(s.verified.checksum?.algorithm, c.algorithm, c.key);
    }
    // Streams of unknown length go as aws-chunked with a checksum trailer.
    assert.ok(
      seen.some((s) => isStreamingPayload({ payloadMode: s.mode })),
      JSON.stringify(seen.map((s) => s.mode)),
    );
  } finally {
    s3.destroy();
  }
});

test('the AWS SDK with a wrong secret gets SignatureDoesNotMatch', async () => {
  const s3 = client('wrong-secret');
  try {
    await assert.rejects(
      s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'k', Body: Buffer.from('x') })),
      (err: unknown) => err instanceof S3ServiceException && err.name === 'SignatureDoesNotMatch',
    );
  } finally {
    s3.destroy();
  }
});
