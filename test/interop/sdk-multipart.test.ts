// Interop: the AWS SDK for JavaScript v3 against a coffre server — multipart uploads: Create, UploadPart,
// UploadPartCopy with a range, Complete (ETag md5-of-md5s-N, part order and size rules), Abort, ListParts,
// ListMultipartUploads, GetObject by part number, and @aws-sdk/lib-storage's Upload.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { startServer, type TestServer } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';

let server: TestServer;
let s3: S3Client;
const B = 'multi';
const MiB = 1024 * 1024;

before(async () => {
  server = await startServer();
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: B }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

const md5 = (b: Buffer) => createHash('md5').update(b).digest();

/** The multipart ETag S3 gives: md5 of the concatenated binary part md5s, dash, part count. */
function multipartEtag(parts: Buffer[]): string {
  return `"${createHash('md5')
    .update(Buffer.concat(parts.map(md5)))
    .digest('hex')}-${parts.length}"`;
}

async function getBytes(key: string, extra: Partial<ConstructorParameters<typeof GetObjectCommand>[0]> = {}) {
  const out = await s3.send(new GetObjectCommand({ Bucket: B, Key: key, ...extra }));
  return { out, body: Buffer.from(await out.Body!.transformToByteArray()) };
}

async function create(
  key: string,
  extra: Partial<ConstructorParameters<typeof CreateMultipartUploadCommand>[0]> = {},
) {
  const c = await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: key, ...extra }));
  assert.equal(c.Bucket, B);
  assert.equal(c.Key, key);
  assert.ok(c.UploadId);
  return c.UploadId!;
}

async function part(key: string, uploadId: string, n: number, body: Buffer) {
  const r = await s3.send(
    new UploadPartCommand({ Bucket: B, Key: key, UploadId: uploadId, PartNumber: n, Body: body }),
  );
  assert.equal(r.ETag, `"${md5(body).toString('hex')}"`);
  return { PartNumber: n, ETag: r.ETag! };
}

test('multipart upload with metadata: parts, ListParts, Complete gives md5-of-md5s-N, parts readable by number', async () => {
  const key = 'big/object.bin';
  const uploadId = await create(key, { ContentType: 'application/x-test', Metadata: { owner: 'mp' } });
  const bodies = [randomBytes(5 * MiB), randomBytes(5 * MiB + 123), randomBytes(777)];
  // Upload out of order; overwrite part 2 once.
  const p3 = await part(key, uploadId, 3, bodies[2]!);
  await part(key, uploadId, 2, randomBytes(5 * MiB));
  const p2 = await part(key, uploadId, 2, bodies[1]!);
  const p1 = await part(key, uploadId, 1, bodies[0]!);

  const listed = await s3.send(new ListPartsCommand({ Bucket: B, Key: key, UploadId: uploadId }));
  assert.deepEqual(
    listed.Parts!.map((p) => [p.PartNumber, p.ETag, p.Size]),
    [
      [1, p1.ETag, bodies[0]!.length],
      [2, p2.ETag, bodies[1]!.length],
      [3, p3.ETag, bodies[2]!.length],
    ],
  );
  assert.equal(listed.IsTruncated, false);
  assert.equal(listed.UploadId, uploadId);
  // ListParts paging.
  const page1 = await s3.send(new ListPartsCommand({ Bucket: B, Key: key, UploadId: uploadId, MaxParts: 2 }));
  assert.equal(page1.IsTruncated, true);
  assert.deepEqual(
    page1.Parts!.map((p) => p.PartNumber),
    [1, 2],
  );
  const page2 = await s3.send(
    new ListPartsCommand({
      Bucket: B,
      Key: key,
      UploadId: uploadId,
      MaxParts: 2,
      PartNumberMarker: page1.NextPartNumberMarker,
    }),
  );
  assert.deepEqual(
    page2.Parts!.map((p) => p.PartNumber),
    [3],
  );
  assert.equal(page2.IsTruncated, false);

  // Not visible before completion.
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: key })), 'NotFound', 404);

  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: key,
      UploadId: uploadId,
      MultipartUpload: { Parts: [p1, p2, p3] },
    }),
  );
  const whole = Buffer.concat(bodies);
  assert.equal(done.ETag, multipartEtag(bodies));
  assert.equal(done.Key, key);
  assert.equal(done.Bucket, B);

  const { out, body } = await getBytes(key);
  assert.ok(body.equals(whole));
  assert.equal(out.ETag, done.ETag);
  assert.equal(out.ContentType, 'application/x-test');
  assert.equal(out.Metadata?.owner, 'mp');

  // Parts by number, with their count.
  for (const [i, b] of bodies.entries()) {
    const got = await getBytes(key, { PartNumber: i + 1 });
    assert.equal(got.out.$metadata.httpStatusCode, 206);
    assert.equal(got.out.PartsCount, 3);
    assert.ok(got.body.equals(b), `part ${i + 1}`);
  }
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: key, PartNumber: 2 }));
  assert.equal(head.ContentLength, bodies[1]!.length);
  assert.equal(head.PartsCount, 3);
  await rejects(() => getBytes(key, { PartNumber: 4 }), 'InvalidPartNumber', 416);

  // Completed: the upload is gone.
  await rejects(
    () => s3.send(new ListPartsCommand({ Bucket: B, Key: key, UploadId: uploadId })),
    'NoSuchUpload',
    404,
  );
  // A range across the part boundary.
  const boundary = bodies[0]!.length;
  const r = await getBytes(key, { Range: `bytes=${boundary - 10}-${boundary + 9}` });
  assert.ok(r.body.equals(whole.subarray(boundary - 10, boundary + 10)));
});

test('Complete refusals: InvalidPart, InvalidPartOrder, EntityTooSmall, no parts; the upload survives them', async () => {
  const key = 'rules/obj';
  const uploadId = await create(key);
  const small = randomBytes(1000);
  const p1 = await part(key, uploadId, 1, small);
  const p2 = await part(key, uploadId, 2, randomBytes(1000));
  const complete = (Parts: { PartNumber: number; ETag: string }[]) =>
    s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: B,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts },
      }),
    );

  await rejects(
    () => complete([p1, { PartNumber: 2, ETag: '"00000000000000000000000000000000"' }]),
    'InvalidPart',
    400,
  );
  await rejects(() => complete([p1, { PartNumber: 5, ETag: p2.ETag }]), 'InvalidPart', 400);
  await rejects(() => complete([p2, p1]), 'InvalidPartOrder', 400);
  await rejects(() => complete([p1, p1]), 'InvalidPartOrder', 400);
  // Every part but the last must be at least 5 MiB.
  await rejects(() => complete([p1, p2]), 'EntityTooSmall', 400);
  // An empty part list: AWS answers InvalidRequest "You must specify at least one part".
  await rejects(() => complete([]), 'InvalidRequest', 400);
  // After all those refusals, the upload is intact and a single small part completes it.
  const ok = await complete([p1]);
  assert.equal(ok.ETag, multipartEtag([small]));
  assert.ok((await getBytes(key)).body.equals(small));
  // Unknown upload ids.
  await rejects(
    () => s3.send(new UploadPartCommand({ Bucket: B, Key: key, UploadId: 'nope', PartNumber: 1, Body: 'x' })),
    'NoSuchUpload',
    404,
  );
  await rejects(
    () =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: B,
          Key: key,
          UploadId: 'nope',
          MultipartUpload: { Parts: [p1] },
        }),
      ),
    'NoSuchUpload',
    404,
  );
  // Completed: a repeat is answered as the first was (a client retrying after a lost response), another part
  // list is InvalidPart (see sdk-aws-behaviours.test.ts).
  assert.equal((await complete([p1])).ETag, ok.ETag);
  await rejects(() => complete([p1, p2]), 'InvalidPart', 400);
  // Part numbers outside 1..10000.
  const u2 = await create(key);
  for (const n of [0, 10001]) {
    await rejects(
      () => s3.send(new UploadPartCommand({ Bucket: B, Key: key, UploadId: u2, PartNumber: n, Body: 'x' })),
      'InvalidArgument',
      400,
    );
  }
  await s3.send(new AbortMultipartUploadCommand({ Bucket: B, Key: key, UploadId: u2 }));
});

test('AbortMultipartUpload: parts are dropped, later calls get NoSuchUpload, the object is untouched', async () => {
  const key = 'abort/obj';
  await s3.send(new PutObjectCommand({ Bucket: B, Key: key, Body: 'previous' }));
  const uploadId = await create(key);
  await part(key, uploadId, 1, randomBytes(5 * MiB));
  const aborted = await s3.send(new AbortMultipartUploadCommand({ Bucket: B, Key: key, UploadId: uploadId }));
  assert.equal(aborted.$metadata.httpStatusCode, 204);
  await rejects(
    () => s3.send(new ListPartsCommand({ Bucket: B, Key: key, UploadId: uploadId })),
    'NoSuchUpload',
    404,
  );
  await rejects(
    () =>
      s3.send(new UploadPartCommand({ Bucket: B, Key: key, UploadId: uploadId, PartNumber: 2, Body: 'x' })),
    'NoSuchUpload',
    404,
  );
  await rejects(
    () => s3.send(new AbortMultipartUploadCommand({ Bucket: B, Key: key, UploadId: uploadId })),
    'NoSuchUpload',
    404,
  );
  assert.equal((await getBytes(key)).body.toString(), 'previous');
});

test('ListMultipartUploads: prefix, delimiter, key and upload-id markers, max-uploads', async () => {
  const keys = ['lmu/a', 'lmu/b', 'lmu/b', 'lmu/dir/c', 'lmu/dir/d', 'other/e'];
  const ids: string[] = [];
  for (const k of keys) ids.push(await create(k));
  const all = await s3.send(new ListMultipartUploadsCommand({ Bucket: B, Prefix: 'lmu/' }));
  assert.deepEqual(
    all.Uploads!.map((u) => u.Key),
    ['lmu/a', 'lmu/b', 'lmu/b', 'lmu/dir/c', 'lmu/dir/d'],
  );
  for (const u of all.Uploads!) {
    assert.ok(ids.includes(u.UploadId!));
    assert.ok(u.Initiated instanceof Date);
  }
  const grouped = await s3.send(
    new ListMultipartUploadsCommand({ Bucket: B, Prefix: 'lmu/', Delimiter: '/' }),
  );
  assert.deepEqual(
    grouped.Uploads!.map((u) => u.Key),
    ['lmu/a', 'lmu/b', 'lmu/b'],
  );
  assert.deepEqual(
    grouped.CommonPrefixes!.map((p) => p.Prefix),
    ['lmu/dir/'],
  );
  // Walk with max-uploads 2 through key-marker / upload-id-marker.
  const seen: string[] = [];
  let keyMarker: string | undefined;
  let idMarker: string | undefined;
  for (let i = 0; i < 10; i++) {
    const page = await s3.send(
      new ListMultipartUploadsCommand({
        Bucket: B,
        Prefix: 'lmu/',
        MaxUploads: 2,
        KeyMarker: keyMarker,
        UploadIdMarker: idMarker,
      }),
    );
    seen.push(...page.Uploads!.map((u) => u.UploadId!));
    if (!page.IsTruncated) break;
    keyMarker = page.NextKeyMarker;
    idMarker = page.NextUploadIdMarker;
  }
  assert.deepEqual(seen.slice().sort(), ids.slice(0, 5).sort());
  assert.equal(new Set(seen).size, 5);
  for (const [i, k] of keys.entries())
    await s3.send(new AbortMultipartUploadCommand({ Bucket: B, Key: k, UploadId: ids[i] }));
  const none = await s3.send(new ListMultipartUploadsCommand({ Bucket: B }));
  assert.equal(none.Uploads, undefined);
});

test('UploadPartCopy with a range and whole, mixed with ordinary parts', async () => {
  const source = randomBytes(7 * MiB + 11);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'upc/source', Body: source }));
  const key = 'upc/target';
  const uploadId = await create(key);
  const ranged = await s3.send(
    new UploadPartCopyCommand({
      Bucket: B,
      Key: key,
      UploadId: uploadId,
      PartNumber: 1,
      CopySource: `${B}/upc/source`,
      CopySourceRange: `bytes=${MiB}-${6 * MiB - 1}`,
    }),
  );
  const slice = source.subarray(MiB, 6 * MiB);
  assert.equal(ranged.CopyPartResult?.ETag, `"${md5(slice).toString('hex')}"`);
  assert.ok(ranged.CopyPartResult?.LastModified instanceof Date);
  const tail = randomBytes(4096);
  const p2 = await part(key, uploadId, 2, tail);
  const whole = await s3.send(
    new UploadPartCopyCommand({
      Bucket: B,
      Key: key,
      UploadId: uploadId,
      PartNumber: 3,
      CopySource: `${B}/upc/source`,
    }),
  );
  // Ranges beyond the source and copy-source conditions are refused.
  await rejects(
    () =>
      s3.send(
        new UploadPartCopyCommand({
          Bucket: B,
          Key: key,
          UploadId: uploadId,
          PartNumber: 4,
          CopySource: `${B}/upc/source`,
          CopySourceRange: `bytes=0-${source.length}`,
        }),
      ),
    'InvalidRange',
    416,
  );
  await rejects(
    () =>
      s3.send(
        new UploadPartCopyCommand({
          Bucket: B,
          Key: key,
          UploadId: uploadId,
          PartNumber: 4,
          CopySource: `${B}/upc/source`,
          CopySourceIfMatch: '"deadbeef"',
        }),
      ),
    'PreconditionFailed',
    412,
  );
  // Part 2 is small, so it can't sit in the middle: put the copied parts around it properly.
  await rejects(
    () =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: B,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: {
            Parts: [
              { PartNumber: 1, ETag: ranged.CopyPartResult!.ETag },
              p2,
              { PartNumber: 3, ETag: whole.CopyPartResult!.ETag },
            ],
          },
        }),
      ),
    'EntityTooSmall',
    400,
  );
  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: key,
      UploadId: uploadId,
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: ranged.CopyPartResult!.ETag },
          { PartNumber: 3, ETag: whole.CopyPartResult!.ETag },
        ],
      },
    }),
  );
  assert.equal(done.ETag, multipartEtag([slice, source]));
  assert.ok((await getBytes(key)).body.equals(Buffer.concat([slice, source])));
});

test('multipart with CRC32 checksums: parts and the completed object carry them', async () => {
  const key = 'cks/obj';
  const uploadId = await create(key, { ChecksumAlgorithm: 'CRC32' });
  const bodies = [randomBytes(5 * MiB), randomBytes(1234)];
  const parts = [];
  for (const [i, b] of bodies.entries()) {
    const r = await s3.send(
      new UploadPartCommand({
        Bucket: B,
        Key: key,
        UploadId: uploadId,
        PartNumber: i + 1,
        Body: b,
        ChecksumAlgorithm: 'CRC32',
      }),
    );
    assert.ok(r.ChecksumCRC32, 'part checksum returned');
    parts.push({ PartNumber: i + 1, ETag: r.ETag!, ChecksumCRC32: r.ChecksumCRC32 });
  }
  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: key,
      UploadId: uploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
  assert.match(done.ChecksumCRC32 ?? '', /^[A-Za-z0-9+/=]+-2$/, 'composite checksum of 2 parts');
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: key, ChecksumMode: 'ENABLED' }));
  assert.equal(head.ChecksumCRC32, done.ChecksumCRC32);
  assert.ok((await getBytes(key, { ChecksumMode: 'ENABLED' })).body.equals(Buffer.concat(bodies)));
  // A part whose declared checksum is wrong is refused.
  const u2 = await create('cks/bad', { ChecksumAlgorithm: 'CRC32' });
  await rejects(
    () =>
      s3.send(
        new UploadPartCommand({
          Bucket: B,
          Key: 'cks/bad',
          UploadId: u2,
          PartNumber: 1,
          Body: 'abc',
          ChecksumCRC32: 'AAAAAA==',
        }),
      ),
    'BadDigest',
    400,
  );
  await s3.send(new AbortMultipartUploadCommand({ Bucket: B, Key: 'cks/bad', UploadId: u2 }));
});

test('lib-storage Upload streams an unknown-length body as multipart, with parallel parts', async () => {
  const chunks = Array.from({ length: 13 }, () => randomBytes(MiB));
  const whole = Buffer.concat(chunks);
  const upload = new Upload({
    client: s3,
    params: {
      Bucket: B,
      Key: 'lib/streamed',
      Body: Readable.from(chunks),
      ContentType: 'application/x-stream',
    },
    partSize: 5 * MiB,
    queueSize: 3,
  });
  const result = await upload.done();
  assert.equal(
    result.ETag,
    multipartEtag([whole.subarray(0, 5 * MiB), whole.subarray(5 * MiB, 10 * MiB), whole.subarray(10 * MiB)]),
  );
  const { out, body } = await getBytes('lib/streamed');
  assert.equal(
    createHash('sha256').update(body).digest('hex'),
    createHash('sha256').update(whole).digest('hex'),
  );
  assert.equal(out.ContentType, 'application/x-stream');
  // Small bodies go as one PutObject.
  await new Upload({ client: s3, params: { Bucket: B, Key: 'lib/small', Body: 'tiny' } }).done();
  assert.equal((await getBytes('lib/small')).body.toString(), 'tiny');
  // Nothing left behind.
  const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: B, Prefix: 'lib/' }));
  assert.equal(uploads.Uploads, undefined);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'lib/' }));
  assert.deepEqual(
    listed.Contents!.map((c) => [c.Key, c.Size]),
    [
      ['lib/small', 4],
      ['lib/streamed', whole.length],
    ],
  );
});
