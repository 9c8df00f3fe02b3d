// The real AWS SDK client uploading to a minimal server built only from the authentication and body modules:
// whatever framing, checksum trailers and path encoding the SDK chooses must authenticate and verify.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, test } from 'node:test';
import { PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { S3Error } from '../../../src/util/s3-error.js';
import { authenticateRequest, type PayloadMode } from '../../../src/api/s3/signature.js';
import { awsChunkedDecoderFor, isStreamingPayload } from '../../../src/api/s3/aws-chunked.js';
import {
  BodyVerifier,
  bodyExpectationsFromHeaders,
  type VerifiedBody,
} from '../../../src/api/s3/checksum.js';
import { ACCESS_KEY, REGION, SECRET_KEY } from './sigv4-client.js';

interface Seen {
  path: string;
  mode: PayloadMode;
  body: Buffer;
  verified: VerifiedBody;
}

const seen: Seen[] = [];
let server: http.Server;
let endpoint: string;

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q + 1);
  try {
    const auth = await authenticateRequest(
      { method: req.method ?? 'GET', path, query, headers: req.headers },
      { region: REGION, lookupSecret: async (id) => (id === ACCESS_KEY ? SECRET_KEY : undefined) },
    );
    const stages: Transform[] = [];
    let trailers: (() => Readonly<Record<string, string>>) | undefined;
    if (isStreamingPayload(auth)) {
      const decoder = awsChunkedDecoderFor(auth, req.headers);
      trailers = () => decoder.trailers;
      stages.push(decoder);
    }
    const verifier = new BodyVerifier(
      bodyExpectationsFromHeaders(req.headers, { expectedSha256: auth.expectedSha256, trailers }),
    );
    const out: Buffer[] = [];
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    });
    await pipeline([req, ...stages, verifier, sink]);
    const verified = verifier.result;
    seen.push({ path, mode: auth.payloadMode, body: Buffer.concat(out), verified });
    res.setHeader('ETag', `"${verified.md5Hex}"`);
    if (verified.checksum) {
      res.setHeader(`x-amz-checksum-${verified.checksum.algorithm.toLowerCase()}`, verified.checksum.value);
    }
    res.end();
  } catch (err) {
    const e = err instanceof S3Error ? err : new S3Error('InternalError', 500, String(err));
    res.statusCode = e.status;
    res.setHeader('content-type', 'application/xml');
    res.end(
      `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${e.code}</Code><Message>${e.message}</Message></Error>`,
    );
    if (!req.complete) res.once('finish', () => req.destroy());
  }
}

before(async () => {
  server = http.createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
});

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
