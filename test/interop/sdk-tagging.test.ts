// Object and bucket tags with the AWS SDK: set on PUT (x-amz-tagging), on multipart uploads and on copies
// (COPY or REPLACE), read with GetObjectTagging and counted on GET/HEAD, replaced and deleted; bucket tags; S3's
// limits refused with InvalidTag and nothing changed; an outsider key refused.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketTaggingCommand,
  DeleteObjectTaggingCommand,
  GetBucketTaggingCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutBucketTaggingCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';

const B = 'tags';
let server: TestServer;
let s3: S3Client;

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

const tagsOf = async (key: string) =>
  Object.fromEntries(
    ((await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: key }))).TagSet ?? []).map((t) => [
      t.Key,
      t.Value,
    ]),
  );

test('tags set on PUT are read back, counted on GET and HEAD, replaced and deleted', async () => {
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'report.pdf',
      Body: 'pdf',
      Tagging: 'project=coffre&class=confidential&note=a%20b%26c',
    }),
  );
  assert.deepEqual(await tagsOf('report.pdf'), { project: 'coffre', class: 'confidential', note: 'a b&c' });
  assert.equal((await s3.send(new GetObjectCommand({ Bucket: B, Key: 'report.pdf' }))).TagCount, 3);
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'report.pdf' }));
  assert.equal(head.$metadata.httpStatusCode, 200);

  await s3.send(
    new PutObjectTaggingCommand({
      Bucket: B,
      Key: 'report.pdf',
      Tagging: { TagSet: [{ Key: 'status', Value: 'final' }] },
    }),
  );
  assert.deepEqual(await tagsOf('report.pdf'), { status: 'final' });
  await s3.send(new DeleteObjectTaggingCommand({ Bucket: B, Key: 'report.pdf' }));
  assert.deepEqual(await tagsOf('report.pdf'), {});
  assert.equal((await s3.send(new GetObjectCommand({ Bucket: B, Key: 'report.pdf' }))).TagCount, undefined);
  // The object itself is untouched by its tags.
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'report.pdf' }));
  assert.equal(await got.Body!.transformToString(), 'pdf');
  // Overwriting the object without tags drops them, as in S3.
  await s3.send(
    new PutObjectTaggingCommand({
      Bucket: B,
      Key: 'report.pdf',
      Tagging: { TagSet: [{ Key: 'a', Value: '1' }] },
    }),
  );
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'report.pdf', Body: 'pdf v2' }));
  assert.deepEqual(await tagsOf('report.pdf'), {});
});

test('multipart uploads and copies carry tags (copied, or replaced by the copy)', async () => {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: B, Key: 'big', Tagging: 'kind=backup' }),
  );
  const part = await s3.send(
    new UploadPartCommand({ Bucket: B, Key: 'big', UploadId, PartNumber: 1, Body: Buffer.alloc(1000, 7) }),
  );
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'big',
      UploadId,
      MultipartUpload: { Parts: [{ ETag: part.ETag, PartNumber: 1 }] },
    }),
  );
  assert.deepEqual(await tagsOf('big'), { kind: 'backup' });
  await s3.send(new CopyObjectCommand({ Bucket: B, Key: 'big-copy', CopySource: `${B}/big` }));
  assert.deepEqual(await tagsOf('big-copy'), { kind: 'backup' });
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'big-retagged',
      CopySource: `${B}/big`,
      TaggingDirective: 'REPLACE',
      Tagging: 'kind=archive&year=2026',
    }),
  );
  assert.deepEqual(await tagsOf('big-retagged'), { kind: 'archive', year: '2026' });
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'big-untagged',
      CopySource: `${B}/big`,
      TaggingDirective: 'REPLACE',
    }),
  );
  assert.deepEqual(await tagsOf('big-untagged'), {});
});

test("S3's limits on tags are refused with InvalidTag, changing nothing", async () => {
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'limits', Body: 'x', Tagging: 'keep=me' }));
  const eleven = Array.from({ length: 11 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
  for (const TagSet of [
    eleven,
    [
      { Key: 'same', Value: '1' },
      { Key: 'same', Value: '2' },
    ],
    [{ Key: 'aws:reserved', Value: 'x' }],
    [{ Key: 'k'.repeat(129), Value: 'x' }],
    [{ Key: 'k', Value: 'v'.repeat(257) }],
  ]) {
    await rejects(
      () => s3.send(new PutObjectTaggingCommand({ Bucket: B, Key: 'limits', Tagging: { TagSet } })),
      'InvalidTag',
      400,
    );
  }
  assert.deepEqual(await tagsOf('limits'), { keep: 'me' });
  // The same on PUT: the object is not written.
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: B, Key: 'never', Body: 'x', Tagging: 'a=1&a=2' })),
    'InvalidTag',
    400,
  );
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'never' })), 'NotFound', 404);
  await rejects(
    () =>
      s3.send(
        new PutObjectTaggingCommand({
          Bucket: B,
          Key: 'missing',
          Tagging: { TagSet: [{ Key: 'a', Value: 'b' }] },
        }),
      ),
    'NoSuchKey',
    404,
  );
});

test('bucket tags: put, get, delete; an outsider key may not read or set them', async () => {
  await rejects(() => s3.send(new GetBucketTaggingCommand({ Bucket: B })), 'NoSuchTagSet', 404);
  await s3.send(
    new PutBucketTaggingCommand({
      Bucket: B,
      Tagging: {
        TagSet: [
          { Key: 'team', Value: 'storage' },
          { Key: 'cost-center', Value: '42' },
        ],
      },
    }),
  );
  const got = await s3.send(new GetBucketTaggingCommand({ Bucket: B }));
  assert.deepEqual(Object.fromEntries((got.TagSet ?? []).map((t) => [t.Key, t.Value])), {
    team: 'storage',
    'cost-center': '42',
  });
  const made = await runCoffre(['-c', server.configPath, 'key', 'create', 'outsider', '--json']);
  const outsider = JSON.parse(made.stdout) as { accessKeyId: string; secretAccessKey: string };
  const other = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: outsider,
  });
  try {
    await rejects(() => other.send(new GetBucketTaggingCommand({ Bucket: B })), 'AccessDenied', 403);
    await rejects(
      () => other.send(new GetObjectTaggingCommand({ Bucket: B, Key: 'big' })),
      'AccessDenied',
      403,
    );
    await rejects(
      () => other.send(new DeleteObjectTaggingCommand({ Bucket: B, Key: 'big' })),
      'AccessDenied',
      403,
    );
  } finally {
    other.destroy();
  }
  await s3.send(new DeleteBucketTaggingCommand({ Bucket: B }));
  await rejects(() => s3.send(new GetBucketTaggingCommand({ Bucket: B })), 'NoSuchTagSet', 404);
});
