// Versioning with the AWS SDK: Put/GetBucketVersioning; a version id on every write (PUT, copy, multipart);
// objects written before versioning as the null version; delete markers; GET, HEAD, DELETE, tagging, copy and
// UploadPartCopy of a named version; the null version while suspended; ListObjectVersions with prefix,
// delimiter, markers and max-keys; DeleteObjects of versions; a bucket holding versions is not deleted; the
// errors S3 gives for malformed and unknown version ids; SSE-C versions each read with their own key.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  UploadPartCopyCommand,
  type ListObjectVersionsCommandOutput,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { serveForFile } from '../helpers/server.js';
import { sseCParams, customerKey } from '../security/ssec-helpers.js';

let s3: S3Client;

serveForFile((started) => ({ s3 } = started));

async function bucket(name: string, versioning?: 'Enabled' | 'Suspended'): Promise<string> {
  await s3.send(new CreateBucketCommand({ Bucket: name }));
  if (versioning)
    await s3.send(
      new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: versioning } }),
    );
  return name;
}

async function body(Bucket: string, Key: string, VersionId?: string): Promise<string> {
  const r = await s3.send(new GetObjectCommand({ Bucket, Key, VersionId }));
  return r.Body!.transformToString();
}

async function put(Bucket: string, Key: string, Body: string): Promise<string | undefined> {
  return (await s3.send(new PutObjectCommand({ Bucket, Key, Body }))).VersionId;
}

/** Every version and delete marker, walking the listing page by page with `pageSize`. */
async function allVersions(Bucket: string, pageSize = 1000, Prefix?: string) {
  const versions: { key: string; id: string; latest: boolean; marker: boolean }[] = [];
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const r: ListObjectVersionsCommandOutput = await s3.send(
      new ListObjectVersionsCommand({ Bucket, MaxKeys: pageSize, KeyMarker, VersionIdMarker, Prefix }),
    );
    const page = [
      ...(r.Versions ?? []).map((v) => ({
        key: v.Key!,
        id: v.VersionId!,
        latest: v.IsLatest!,
        marker: false,
      })),
      ...(r.DeleteMarkers ?? []).map((v) => ({
        key: v.Key!,
        id: v.VersionId!,
        latest: v.IsLatest!,
        marker: true,
      })),
    ];
    assert.ok(page.length <= pageSize);
    versions.push(...page);
    if (!r.IsTruncated) return versions;
    KeyMarker = r.NextKeyMarker;
    VersionIdMarker = r.NextVersionIdMarker;
  }
  assert.fail('listing did not end');
}

test('a new bucket is unversioned: no version ids, and its objects list as their null version', async () => {
  const B = await bucket('plain');
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: B }))).Status, undefined);
  assert.equal(await put(B, 'a', 'one'), undefined);
  assert.equal(await put(B, 'a', 'two'), undefined);
  assert.deepEqual(await allVersions(B), [{ key: 'a', id: 'null', latest: true, marker: false }]);
  assert.equal(await body(B, 'a', 'null'), 'two');
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'a' }));
  assert.deepEqual(await allVersions(B), []);
});

test('enabled: every write keeps the previous version, deletes leave a marker, any version reads back', async () => {
  const B = await bucket('history');
  await put(B, 'doc', 'before versioning');
  await s3.send(
    new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: B }))).Status, 'Enabled');
  const v1 = await put(B, 'doc', 'first');
  const v2 = await put(B, 'doc', 'second');
  assert.match(v1!, /^[0-9a-f]{32}$/);
  assert.notEqual(v1, v2);
  assert.equal(await body(B, 'doc'), 'second');
  assert.equal(await body(B, 'doc', v1), 'first');
  assert.equal(await body(B, 'doc', 'null'), 'before versioning');
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'doc', VersionId: v1 }));
  assert.equal(head.VersionId, v1);
  assert.equal(head.ContentLength, 5);
  assert.equal((await s3.send(new GetObjectCommand({ Bucket: B, Key: 'doc' }))).VersionId, v2);

  const del = await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'doc' }));
  assert.equal(del.DeleteMarker, true);
  assert.match(del.VersionId!, /^[0-9a-f]{32}$/);
  const gone = await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'doc' })),
    'NoSuchKey',
    404,
  );
  assert.equal(gone.$response?.headers['x-amz-delete-marker'], 'true');
  assert.equal((await s3.send(new ListObjectsV2Command({ Bucket: B }))).KeyCount, 0);
  // A delete marker named by its id is no object to GET.
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'doc', VersionId: del.VersionId })),
    'MethodNotAllowed',
    405,
  );
  assert.deepEqual(await allVersions(B), [
    { key: 'doc', id: v2!, latest: false, marker: false },
    { key: 'doc', id: v1!, latest: false, marker: false },
    { key: 'doc', id: 'null', latest: false, marker: false },
    { key: 'doc', id: del.VersionId!, latest: true, marker: true },
  ]);
  // Removing the marker brings the newest version back.
  const undo = await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'doc', VersionId: del.VersionId }));
  assert.equal(undo.DeleteMarker, true);
  assert.equal(undo.VersionId, del.VersionId);
  assert.equal(await body(B, 'doc'), 'second');
  // Removing the current version for good makes the one before it current.
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'doc', VersionId: v2 }));
  assert.equal(await body(B, 'doc'), 'first');
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'doc', VersionId: v2 })),
    'NoSuchVersion',
    404,
  );
});

test('suspended: writes make the null version, replacing the previous null one and keeping the others', async () => {
  const B = await bucket('suspended', 'Enabled');
  const kept = await put(B, 'k', 'kept');
  await s3.send(
    new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Suspended' } }),
  );
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: B }))).Status, 'Suspended');
  assert.equal(await put(B, 'k', 'null one'), 'null');
  assert.equal(await put(B, 'k', 'null two'), 'null');
  assert.deepEqual(await allVersions(B), [
    { key: 'k', id: 'null', latest: true, marker: false },
    { key: 'k', id: kept!, latest: false, marker: false },
  ]);
  assert.equal(await body(B, 'k', 'null'), 'null two');
  const del = await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'k' }));
  assert.equal(del.DeleteMarker, true);
  assert.equal(del.VersionId, 'null');
  assert.deepEqual(await allVersions(B), [
    { key: 'k', id: kept!, latest: false, marker: false },
    { key: 'k', id: 'null', latest: true, marker: true },
  ]);
  assert.equal(await body(B, 'k', kept), 'kept');
});

test('copy names its source version and makes a new one; an old version is restored by copying it', async () => {
  const B = await bucket('copies', 'Enabled');
  const v1 = await put(B, 'src', 'old content');
  await put(B, 'src', 'new content');
  const copy = await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'dst', CopySource: `${B}/src?versionId=${v1}` }),
  );
  assert.equal(copy.CopySourceVersionId, v1);
  assert.match(copy.VersionId!, /^[0-9a-f]{32}$/);
  assert.equal(await body(B, 'dst'), 'old content');
  const restored = await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'src', CopySource: `${B}/src?versionId=${v1}` }),
  );
  assert.equal(await body(B, 'src'), 'old content');
  assert.equal((await allVersions(B, 1000, 'src')).length, 3);
  assert.equal(
    (await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'src' }))).VersionId,
    restored.VersionId,
  );
  await rejects(
    () =>
      s3.send(
        new CopyObjectCommand({
          Bucket: B,
          Key: 'x',
          CopySource: `${B}/src?versionId=${'0'.repeat(32)}`,
        }),
      ),
    'NoSuchVersion',
    404,
  );
  const marker = await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'dst' }));
  await rejects(
    () => s3.send(new CopyObjectCommand({ Bucket: B, Key: 'x', CopySource: `${B}/dst` })),
    'NoSuchKey',
    404,
  );
  await rejects(
    () =>
      s3.send(
        new CopyObjectCommand({ Bucket: B, Key: 'x', CopySource: `${B}/dst?versionId=${marker.VersionId}` }),
      ),
    'InvalidRequest',
    400,
  );
});

test('multipart uploads complete into a new version; UploadPartCopy reads a named version', async () => {
  const B = await bucket('mpu-versions', 'Enabled');
  const part = randomBytes(5 * 1024 * 1024);
  const old = (await s3.send(new PutObjectCommand({ Bucket: B, Key: 'big', Body: part }))).VersionId;
  await put(B, 'big', 'small now');
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'joined' }));
  const p1 = await s3.send(
    new UploadPartCopyCommand({
      Bucket: B,
      Key: 'joined',
      UploadId,
      PartNumber: 1,
      CopySource: `${B}/big?versionId=${old}`,
    }),
  );
  assert.equal(p1.CopySourceVersionId, old);
  const p2 = await s3.send(
    new UploadPartCopyCommand({ Bucket: B, Key: 'joined', UploadId, PartNumber: 2, CopySource: `${B}/big` }),
  );
  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'joined',
      UploadId,
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: p1.CopyPartResult!.ETag },
          { PartNumber: 2, ETag: p2.CopyPartResult!.ETag },
        ],
      },
    }),
  );
  assert.match(done.VersionId!, /^[0-9a-f]{32}$/);
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'joined', VersionId: done.VersionId }));
  const bytes = Buffer.from(await got.Body!.transformToByteArray());
  assert.equal(bytes.length, part.length + 'small now'.length);
  assert.ok(bytes.subarray(0, part.length).equals(part));
});

test('tags belong to a version: set, read and replaced by version id', async () => {
  const B = await bucket('tagged-versions', 'Enabled');
  const v1 = await put(B, 't', 'one');
  const v2 = await put(B, 't', 'two');
  const set = await s3.send(
    new PutObjectTaggingCommand({
      Bucket: B,
      Key: 't',
      VersionId: v1,
      Tagging: { TagSet: [{ Key: 'era', Value: 'first' }] },
    }),
  );
  assert.equal(set.VersionId, v1);
  const tags1 = await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: 't', VersionId: v1 }));
  assert.deepEqual(tags1.TagSet, [{ Key: 'era', Value: 'first' }]);
  assert.equal(tags1.VersionId, v1);
  const current = await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: 't' }));
  assert.deepEqual(current.TagSet ?? [], []);
  assert.equal(current.VersionId, v2);
});

test('ListObjectVersions pages through versions with markers, prefix and delimiter', async () => {
  const B = await bucket('paging', 'Enabled');
  const written: { key: string; id: string }[] = [];
  for (const key of ['a', 'dir/x', 'dir/y', 'm', 'z'])
    for (let i = 0; i < 3; i++) written.push({ key, id: (await put(B, key, `${key}${i}`))! });
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'm' }));
  const whole = await allVersions(B);
  assert.equal(whole.length, 16);
  // (A page lists its versions apart from its delete markers: compared as sets.)
  const canonical = (list: typeof whole) => list.map((v) => JSON.stringify(v)).sort();
  for (const size of [1, 2, 3, 5, 7])
    assert.deepEqual(canonical(await allVersions(B, size)), canonical(whole), `pages of ${size}`);
  // Newest first within a key.
  const a = whole.filter((v) => v.key === 'a').map((v) => v.id);
  assert.deepEqual(
    a,
    written
      .filter((w) => w.key === 'a')
      .map((w) => w.id)
      .reverse(),
  );
  assert.deepEqual(
    (await allVersions(B, 1000, 'dir/')).map((v) => v.key),
    ['dir/x', 'dir/x', 'dir/x', 'dir/y', 'dir/y', 'dir/y'],
  );
  const folded = await s3.send(new ListObjectVersionsCommand({ Bucket: B, Delimiter: '/' }));
  assert.deepEqual(folded.CommonPrefixes, [{ Prefix: 'dir/' }]);
  assert.equal((folded.Versions ?? []).length, 9);
  // A page that ends within a key says where to resume.
  const page = await s3.send(new ListObjectVersionsCommand({ Bucket: B, MaxKeys: 2 }));
  assert.equal(page.IsTruncated, true);
  assert.equal(page.NextKeyMarker, 'a');
  assert.equal(page.NextVersionIdMarker, page.Versions![1]!.VersionId);
  // The key marker alone skips every version of that key.
  const afterA = await s3.send(new ListObjectVersionsCommand({ Bucket: B, KeyMarker: 'a', MaxKeys: 1 }));
  assert.equal(afterA.Versions![0]!.Key, 'dir/x');
  await rejects(
    () => s3.send(new ListObjectVersionsCommand({ Bucket: B, VersionIdMarker: written[0]!.id })),
    'InvalidArgument',
    400,
  );
  await rejects(
    () => s3.send(new ListObjectVersionsCommand({ Bucket: B, KeyMarker: 'a', VersionIdMarker: 'bogus' })),
    'InvalidArgument',
    400,
  );
});

test('DeleteObjects removes named versions and makes delete markers; a bucket holding versions stays', async () => {
  const B = await bucket('batch', 'Enabled');
  const v1 = await put(B, 'one', '1');
  await put(B, 'two', '2');
  const r = await s3.send(
    new DeleteObjectsCommand({
      Bucket: B,
      Delete: {
        Objects: [{ Key: 'one', VersionId: v1 }, { Key: 'two' }, { Key: 'three', VersionId: 'nope' }],
      },
    }),
  );
  const byKey = new Map((r.Deleted ?? []).map((d) => [d.Key, d]));
  assert.equal(byKey.get('one')?.VersionId, v1);
  assert.equal(byKey.get('one')?.DeleteMarker, undefined);
  assert.equal(byKey.get('two')?.DeleteMarker, true);
  assert.match(byKey.get('two')?.DeleteMarkerVersionId ?? '', /^[0-9a-f]{32}$/);
  assert.deepEqual(
    (r.Errors ?? []).map((e) => [e.Key, e.Code]),
    [['three', 'NoSuchVersion']],
  );
  // 'two' still has its version and its marker: the bucket is not empty.
  await rejects(() => s3.send(new DeleteBucketCommand({ Bucket: B })), 'BucketNotEmpty', 409);
  const left = await allVersions(B);
  assert.equal(left.length, 2);
  await s3.send(
    new DeleteObjectsCommand({
      Bucket: B,
      Delete: { Objects: left.map((v) => ({ Key: v.key, VersionId: v.id })), Quiet: true },
    }),
  );
  await s3.send(new DeleteBucketCommand({ Bucket: B }));
});

test('malformed and unknown version ids and versioning documents are refused as S3 refuses them', async () => {
  const B = await bucket('errors', 'Enabled');
  await put(B, 'k', 'v');
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'k', VersionId: '../etc' })),
    'InvalidArgument',
    400,
  );
  await rejects(
    () => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'k', VersionId: 'f'.repeat(32) })),
    '',
    404,
  );
  await rejects(
    () => s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'k', VersionId: 'x'.repeat(40) })),
    'InvalidArgument',
    400,
  );
  // Deleting a version that does not exist changes nothing and succeeds, as in S3.
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'k', VersionId: 'f'.repeat(32) }));
  assert.equal(await body(B, 'k'), 'v');
  await rejects(
    () =>
      s3.send(
        new PutBucketVersioningCommand({
          Bucket: B,
          VersioningConfiguration: { Status: 'Disabled' as 'Enabled' },
        }),
      ),
    'MalformedXML',
    400,
  );
});

test('SSE-C versions are each sealed with the key they were written with', async () => {
  const B = await bucket('sealed-versions', 'Enabled');
  const keys = [randomBytes(32), randomBytes(32)];
  const sse = (k: Buffer) => sseCParams(customerKey(k));
  const ids: string[] = [];
  for (const [i, k] of keys.entries())
    ids.push(
      (await s3.send(new PutObjectCommand({ Bucket: B, Key: 's', Body: `secret ${i}`, ...sse(k) })))
        .VersionId!,
    );
  for (const [i, k] of keys.entries()) {
    const r = await s3.send(new GetObjectCommand({ Bucket: B, Key: 's', VersionId: ids[i], ...sse(k) }));
    assert.equal(await r.Body!.transformToString(), `secret ${i}`);
  }
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 's', VersionId: ids[0], ...sse(keys[1]!) })),
    '',
    403,
  );
});
