// Interop: the AWS SDK reading the settings coffre keeps no store for, as tools probing a bucket do. ACLs are
// disabled (Object Ownership BucketOwnerEnforced): reads show the owner's FULL_CONTROL, setting one or writing
// with a grant to others is refused with AccessControlListNotSupported, and nothing is stored by a refused write.
// Unset policies, tags, lifecycle rules and the like answer with S3's own "not found" codes, to the bucket's
// readers only. Listing versions of an unversioned bucket lists its objects with version id "null", and a bucket
// can be emptied by its versions, as cleanup scripts do.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketPolicyCommand,
  DeleteObjectsCommand,
  GetBucketAclCommand,
  GetBucketEncryptionCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketLoggingCommand,
  GetBucketOwnershipControlsCommand,
  GetBucketPolicyCommand,
  GetBucketTaggingCommand,
  GetObjectAclCommand,
  GetObjectTaggingCommand,
  GetPublicAccessBlockCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutBucketAclCommand,
  PutObjectAclCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';

const B = 'settings';
let server: TestServer;
let s3: S3Client;

before(async () => {
  server = await startServer();
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'k', Body: 'v' }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

test('ACLs read as the owner with FULL_CONTROL; setting one that shares anything is refused', async () => {
  for (const acl of [
    await s3.send(new GetBucketAclCommand({ Bucket: B })),
    await s3.send(new GetObjectAclCommand({ Bucket: B, Key: 'k' })),
  ]) {
    assert.equal(acl.Owner?.ID, server.accessKeyId);
    assert.equal(acl.Grants?.length, 1);
    assert.equal(acl.Grants![0]!.Permission, 'FULL_CONTROL');
    assert.equal(acl.Grants![0]!.Grantee?.ID, server.accessKeyId);
    assert.equal(acl.Grants![0]!.Grantee?.Type, 'CanonicalUser');
  }
  await rejects(() => s3.send(new GetObjectAclCommand({ Bucket: B, Key: 'missing' })), 'NoSuchKey', 404);
  // An ACL that grants nothing beyond the owner's rights changes nothing and passes; any other is refused.
  await s3.send(new PutBucketAclCommand({ Bucket: B, ACL: 'private' }));
  const own = await s3.send(new GetObjectAclCommand({ Bucket: B, Key: 'k' }));
  await s3.send(
    new PutObjectAclCommand({
      Bucket: B,
      Key: 'k',
      AccessControlPolicy: { Owner: own.Owner, Grants: own.Grants },
    }),
  );
  await s3.send(
    new PutObjectAclCommand({ Bucket: B, Key: 'k', GrantFullControl: `id="${server.accessKeyId}"` }),
  );
  await rejects(
    () => s3.send(new PutBucketAclCommand({ Bucket: B, GrantRead: 'id="someone-else"' })),
    'AccessControlListNotSupported',
    400,
  );
  await rejects(
    () =>
      s3.send(
        new PutObjectAclCommand({
          Bucket: B,
          Key: 'k',
          AccessControlPolicy: {
            Owner: own.Owner,
            Grants: [
              ...own.Grants!,
              {
                Grantee: { Type: 'Group', URI: 'http://acs.amazonaws.com/groups/global/AllUsers' },
                Permission: 'READ',
              },
            ],
          },
        }),
      ),
    'AccessControlListNotSupported',
    400,
  );
  await rejects(
    () => s3.send(new PutObjectAclCommand({ Bucket: B, Key: 'k', ACL: 'public-read' })),
    'AccessControlListNotSupported',
    400,
  );
  const ownership = await s3.send(new GetBucketOwnershipControlsCommand({ Bucket: B }));
  assert.equal(ownership.OwnershipControls?.Rules?.[0]?.ObjectOwnership, 'BucketOwnerEnforced');
});

test('a write that would share what it creates is refused and stores nothing; owner-only ACLs pass', async () => {
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: B, Key: 'public', Body: 'x', ACL: 'public-read' })),
    'AccessControlListNotSupported',
    400,
  );
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'public' })), 'NotFound', 404);
  await rejects(
    () =>
      s3.send(
        new CreateMultipartUploadCommand({ Bucket: B, Key: 'granted', GrantRead: 'id="someone-else"' }),
      ),
    'AccessControlListNotSupported',
    400,
  );
  await rejects(
    () => s3.send(new CreateBucketCommand({ Bucket: 'shared-bucket', ACL: 'public-read-write' })),
    'InvalidBucketAclWithObjectOwnership',
    400,
  );
  for (const ACL of ['private', 'bucket-owner-full-control'] as const) {
    await s3.send(new PutObjectCommand({ Bucket: B, Key: `acl-${ACL}`, Body: 'x', ACL }));
  }
  await s3.send(new CreateBucketCommand({ Bucket: 'private-bucket', ACL: 'private' }));
});

test('unset settings answer with S3 "not found" codes, to readers of the bucket only', async () => {
  const unset: [string, () => Promise<unknown>][] = [
    ['NoSuchBucketPolicy', () => s3.send(new GetBucketPolicyCommand({ Bucket: B }))],
    ['NoSuchTagSet', () => s3.send(new GetBucketTaggingCommand({ Bucket: B }))],
    [
      'NoSuchLifecycleConfiguration',
      () => s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B })),
    ],
    ['NoSuchPublicAccessBlockConfiguration', () => s3.send(new GetPublicAccessBlockCommand({ Bucket: B }))],
    [
      'ServerSideEncryptionConfigurationNotFoundError',
      () => s3.send(new GetBucketEncryptionCommand({ Bucket: B })),
    ],
  ];
  for (const [code, call] of unset) await rejects(call, code, 404);
  const logging = await s3.send(new GetBucketLoggingCommand({ Bucket: B }));
  assert.equal(logging.LoggingEnabled, undefined);
  await s3.send(new DeleteBucketPolicyCommand({ Bucket: B }));
  const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: 'k' }));
  assert.deepEqual(tags.TagSet ?? [], []);

  // No answer about a bucket that does not exist, nor to a key with no right on it.
  await rejects(() => s3.send(new GetBucketPolicyCommand({ Bucket: 'no-such-bucket' })), 'NoSuchBucket', 404);
  const created = await runCoffre(['key', 'create', 'outsider', '--json', '--config', server.configPath]);
  assert.equal(created.code, 0, created.stderr);
  const key = JSON.parse(created.stdout) as { accessKeyId: string; secretAccessKey: string };
  const outsider = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: key,
  });
  try {
    await rejects(() => outsider.send(new GetBucketPolicyCommand({ Bucket: B })), 'AccessDenied', 403);
    await rejects(() => outsider.send(new GetBucketAclCommand({ Bucket: B })), 'AccessDenied', 403);
  } finally {
    outsider.destroy();
  }
});

test('ListObjectVersions lists every object once, version "null"; a bucket empties by its versions', async () => {
  const bucket = 'versions';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const keys = ['a/1', 'a/2', 'b', 'c', 'd/x/y'];
  for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }));

  // Page by page, two at a time, with a delimiter: a/ and d/ fold into common prefixes.
  const seen: string[] = [];
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  for (let pages = 0; pages < 10; pages++) {
    const page = await s3.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        Delimiter: '/',
        MaxKeys: 2,
        KeyMarker,
        VersionIdMarker,
      }),
    );
    for (const v of page.Versions ?? []) {
      assert.equal(v.VersionId, 'null');
      assert.equal(v.IsLatest, true);
      assert.equal(v.Size, v.Key!.length);
      seen.push(v.Key!);
    }
    for (const p of page.CommonPrefixes ?? []) seen.push(p.Prefix!);
    if (!page.IsTruncated) break;
    KeyMarker = page.NextKeyMarker;
    VersionIdMarker = page.NextVersionIdMarker;
  }
  assert.deepEqual(seen.sort(), ['a/', 'b', 'c', 'd/']);
  await rejects(
    () => s3.send(new ListObjectVersionsCommand({ Bucket: bucket, KeyMarker: 'b', VersionIdMarker: 'v2' })),
    'InvalidArgument',
    400,
  );

  // The usual "empty a bucket" loop: list versions, delete them by key and version id.
  const all = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
  assert.deepEqual(
    (all.Versions ?? []).map((v) => v.Key),
    keys,
  );
  const deleted = await s3.send(
    new DeleteObjectsCommand({
      Bucket: bucket,
      Delete: { Objects: (all.Versions ?? []).map((v) => ({ Key: v.Key!, VersionId: v.VersionId })) },
    }),
  );
  assert.equal(deleted.Errors, undefined);
  const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
  assert.equal(left.KeyCount, 0);
});
