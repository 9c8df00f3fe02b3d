// Interop: the AWS SDK for JavaScript v3 against a coffre server — behaviours clients rely on where S3's answer
// is not the obvious one. DeleteBucket of a bucket whose only content is multipart uploads in progress deletes
// it and aborts them (terraform's force_destroy, test clean-ups); a bucket holding an object stays refused. A
// repeated CompleteMultipartUpload (a client retrying after a lost response) gets the first answer again while
// the object it made is the key's current one; another part list is InvalidPart; once the object is
// overwritten, deleted or copied over, NoSuchUpload. An empty Expect header is served; an operation that does
// not exist is answered once the request is authenticated.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompleteMultipartUploadCommandOutput,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { serveForFile, type TestServer } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';
import { customerKey, sseCParams } from '../security/ssec-helpers.js';
import { signer, toQueryString } from '../api/s3/sigv4-client.js';
import { mustCli, operatorKey } from '../security/sse-s3-helpers.js';

let server: TestServer;
let s3: S3Client;
const MiB = 1024 * 1024;

serveForFile((started) => ({ server, s3 } = started));

async function upload(
  bucket: string,
  key: string,
  bodies: Buffer[],
  extra: Record<string, string> = {},
): Promise<{ uploadId: string; parts: CompletedPart[] }> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...extra }),
  );
  const parts: CompletedPart[] = [];
  for (const [i, Body] of bodies.entries()) {
    const { ETag, ChecksumCRC32 } = await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: i + 1, Body, ...extra }),
    );
    parts.push({ PartNumber: i + 1, ETag, ...(ChecksumCRC32 ? { ChecksumCRC32 } : {}) });
  }
  return { uploadId: UploadId!, parts };
}

const complete = (bucket: string, key: string, uploadId: string, parts: CompletedPart[]) =>
  s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId: uploadId,
      MultipartUpload: { Parts: parts },
    }),
  );

const result = (r: CompleteMultipartUploadCommandOutput) => ({
  Location: r.Location,
  Bucket: r.Bucket,
  Key: r.Key,
  ETag: r.ETag,
  ChecksumCRC32: r.ChecksumCRC32,
});

async function bytesOf(bucket: string, key: string, extra: Record<string, string> = {}): Promise<Buffer> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...extra }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

test('DeleteBucket of a bucket holding only uploads in progress deletes it and aborts them', async () => {
  const bucket = 'only-uploads';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const one = await upload(bucket, 'a/one', [randomBytes(5 * MiB), randomBytes(1000)]);
  const two = await upload(bucket, 'two', [randomBytes(200_000)]);
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  await rejects(() => s3.send(new HeadBucketCommand({ Bucket: bucket })), 'NotFound', 404);
  await rejects(
    () => s3.send(new ListPartsCommand({ Bucket: bucket, Key: 'two', UploadId: two.uploadId })),
    'NoSuchBucket',
    404,
  );
  // A bucket of the same name made again starts empty: the uploads went with the old one, for good.
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  assert.equal(listed.Uploads?.length ?? 0, 0);
  await rejects(
    () =>
      s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'two',
          UploadId: two.uploadId,
          PartNumber: 2,
          Body: Buffer.from('late part'),
        }),
      ),
    'NoSuchUpload',
    404,
  );
  await rejects(() => complete(bucket, 'a/one', one.uploadId, one.parts), 'NoSuchUpload', 404);
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/one' })), 'NoSuchKey', 404);
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
});

test('DeleteBucket of a bucket holding an object and uploads is refused with BucketNotEmpty, and keeps both', async () => {
  const bucket = 'object-and-uploads';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'kept', Body: 'an object' }));
  const body = randomBytes(300_000);
  const pending = await upload(bucket, 'pending', [body]);
  await rejects(() => s3.send(new DeleteBucketCommand({ Bucket: bucket })), 'BucketNotEmpty', 409);
  const parts = await s3.send(
    new ListPartsCommand({ Bucket: bucket, Key: 'pending', UploadId: pending.uploadId }),
  );
  assert.equal(parts.Parts?.length, 1);
  await complete(bucket, 'pending', pending.uploadId, pending.parts);
  assert.deepEqual(await bytesOf(bucket, 'pending'), body);
  assert.equal((await bytesOf(bucket, 'kept')).toString(), 'an object');
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'kept' }));
  await rejects(() => s3.send(new DeleteBucketCommand({ Bucket: bucket })), 'BucketNotEmpty', 409);
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'pending' }));
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
});

test('a repeated CompleteMultipartUpload answers as the first did; another part list is InvalidPart', async () => {
  const bucket = 'complete-again';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const bodies = [randomBytes(5 * MiB), randomBytes(12_345)];
  const key = 'dir/retried object.bin';
  const { uploadId, parts } = await upload(bucket, key, bodies, { ChecksumAlgorithm: 'CRC32' });
  const first = await complete(bucket, key, uploadId, parts);
  assert.ok(first.ChecksumCRC32);
  const again = await complete(bucket, key, uploadId, parts);
  assert.equal(again.$metadata.httpStatusCode, 200);
  assert.deepEqual(result(again), result(first));
  assert.deepEqual(await bytesOf(bucket, key), Buffer.concat(bodies));
  // Not the list that completed: fewer parts, a wrong ETag, another part number.
  await rejects(() => complete(bucket, key, uploadId, parts.slice(0, 1)), 'InvalidPart', 400);
  await rejects(
    () => complete(bucket, key, uploadId, [parts[0]!, { ...parts[1]!, ETag: `"${'0'.repeat(32)}"` }]),
    'InvalidPart',
    400,
  );
  await rejects(
    () => complete(bucket, key, uploadId, [parts[0]!, { ...parts[1]!, PartNumber: 3 }]),
    'InvalidPart',
    400,
  );
  assert.deepEqual(result(await complete(bucket, key, uploadId, parts)), result(first));
  // A copy of the object elsewhere is not the upload's object; neither is the key after a copy in place.
  await s3.send(
    new CopyObjectCommand({ Bucket: bucket, Key: 'copy', CopySource: `${bucket}/dir/retried%20object.bin` }),
  );
  await rejects(() => complete(bucket, 'copy', uploadId, parts), 'NoSuchUpload', 404);
  // Overwritten: the upload's object is gone, and so is the retry.
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'overwritten' }));
  await rejects(() => complete(bucket, key, uploadId, parts), 'NoSuchUpload', 404);
  assert.equal((await bytesOf(bucket, key)).toString(), 'overwritten');
});

test('a repeated Complete after the object was deleted or copied over in place, or of an aborted upload, is NoSuchUpload', async () => {
  const bucket = 'complete-gone';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const deleted = await upload(bucket, 'deleted', [randomBytes(1000)]);
  await complete(bucket, 'deleted', deleted.uploadId, deleted.parts);
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'deleted' }));
  await rejects(() => complete(bucket, 'deleted', deleted.uploadId, deleted.parts), 'NoSuchUpload', 404);

  const inPlace = await upload(bucket, 'in-place', [randomBytes(1000)]);
  await complete(bucket, 'in-place', inPlace.uploadId, inPlace.parts);
  await s3.send(
    new CopyObjectCommand({
      Bucket: bucket,
      Key: 'in-place',
      CopySource: `${bucket}/in-place`,
      MetadataDirective: 'REPLACE',
      Metadata: { changed: 'yes' },
    }),
  );
  await rejects(() => complete(bucket, 'in-place', inPlace.uploadId, inPlace.parts), 'NoSuchUpload', 404);

  const aborted = await upload(bucket, 'aborted', [randomBytes(1000)]);
  await s3.send(
    new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'aborted', UploadId: aborted.uploadId }),
  );
  await rejects(() => complete(bucket, 'aborted', aborted.uploadId, aborted.parts), 'NoSuchUpload', 404);
});

test('a repeated Complete of an SSE-C upload, sent without the key as the first was, answers as the first did', async () => {
  const bucket = 'complete-again-ssec';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const k = customerKey();
  const ssec = sseCParams(k);
  const bodies = [randomBytes(5 * MiB), randomBytes(777)];
  const { uploadId, parts } = await upload(bucket, 'sealed', bodies, ssec);
  const first = await complete(bucket, 'sealed', uploadId, parts);
  const again = await complete(bucket, 'sealed', uploadId, parts);
  assert.deepEqual(result(again), result(first));
  await rejects(() => complete(bucket, 'sealed', uploadId, parts.slice(1)), 'InvalidPart', 400);
  assert.deepEqual(await bytesOf(bucket, 'sealed', ssec), Buffer.concat(bodies));
});

test('a repeated Complete of an SSE-S3 upload answers as the first did, checksum included', async () => {
  const operator = await operatorKey('behaviours');
  try {
    await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
    const bucket = 'complete-again-sse-s3';
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const bodies = [randomBytes(5 * MiB), randomBytes(4321)];
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: 'sealed',
        ServerSideEncryption: 'AES256',
        ChecksumAlgorithm: 'CRC32',
      }),
    );
    const parts: CompletedPart[] = [];
    for (const [i, Body] of bodies.entries()) {
      const { ETag, ChecksumCRC32 } = await s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'sealed',
          UploadId,
          PartNumber: i + 1,
          Body,
          ChecksumAlgorithm: 'CRC32',
        }),
      );
      parts.push({ PartNumber: i + 1, ETag, ChecksumCRC32 });
    }
    const first = await complete(bucket, 'sealed', UploadId!, parts);
    assert.ok(first.ChecksumCRC32);
    assert.deepEqual(result(await complete(bucket, 'sealed', UploadId!, parts)), result(first));
    await rejects(() => complete(bucket, 'sealed', UploadId!, parts.slice(0, 1)), 'InvalidPart', 400);
    assert.deepEqual(await bytesOf(bucket, 'sealed'), Buffer.concat(bodies));
  } finally {
    rmSync(operator.dir, { recursive: true, force: true });
  }
});

/** A request signed with the server's key, sent as it is (headers included, an empty Expect among them). */
async function signedRaw(
  method: string,
  path: string,
  query: Record<string, string> = {},
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<{ status: number; body: string }> {
  const host = `127.0.0.1:${server.s3Port}`;
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign({
    method,
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: server.s3Port,
    path,
    query,
    headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers },
  });
  const qs = toQueryString(query);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: server.s3Port,
        method,
        path: qs ? `${path}?${qs}` : path,
        headers: signed.headers,
        agent: false,
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('an empty Expect header asks for nothing: the request is served (not 417)', async () => {
  await s3.send(new CreateBucketCommand({ Bucket: 'expect-empty' }));
  const put = await signedRaw(
    'PUT',
    '/expect-empty/k',
    {},
    { expect: '', 'content-length': '5' },
    Buffer.from('hello'),
  );
  assert.equal(put.status, 200, put.body);
  const got = await s3.send(new GetObjectCommand({ Bucket: 'expect-empty', Key: 'k' }));
  assert.equal(await got.Body!.transformToString(), 'hello');
});

test('an operation that does not exist is answered after authentication: 403 unsigned, 501 or 405 signed', async () => {
  await s3.send(new CreateBucketCommand({ Bucket: 'unknown-ops' }));
  const unsigned = await fetch(`${server.endpoint}/unknown-ops?torrent`);
  assert.equal(unsigned.status, 403);
  assert.match(await unsigned.text(), /<Code>AccessDenied<\/Code>/);
  const badSignature = await fetch(`${server.endpoint}/unknown-ops?torrent`, {
    headers: {
      authorization: `AWS4-HMAC-SHA256 Credential=${server.accessKeyId}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`,
      'x-amz-date': '20260101T000000Z',
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    },
  });
  assert.equal(badSignature.status, 403);
  const signed = await signedRaw('GET', '/unknown-ops', { torrent: '' });
  assert.equal(signed.status, 501, signed.body);
  assert.match(signed.body, /<Code>NotImplemented<\/Code>/);
  const method = await signedRaw('PATCH', '/unknown-ops');
  assert.equal(method.status, 405, method.body);
  assert.match(method.body, /<Code>MethodNotAllowed<\/Code>/);
});
