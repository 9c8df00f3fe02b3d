// Versions through a gateway: a versioned coffre bucket in front of a versioned backend bucket (here another
// coffre node) passes the backend's version ids through — PUT names the version it made, GET, HEAD, DELETE,
// tagging and copies name versions by those ids, DELETE makes delete markers, ListObjectVersions shows
// plaintext sizes and the ETags PUT gave — and every version is opened with its own sealed metadata. Version
// ids of other keys, malformed ones, and versions the backend's operator wrote themselves are refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { rejects } from '../helpers/s3.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../helpers/server.js';
import { requireTools, writeRcloneConfig } from '../helpers/tools.js';
import { bodyOf, gatewayForFile, type Backend, type Gateway } from './gateway-helpers.js';

const MiB = 1024 * 1024;
const B = 'history';
const PLAIN = 'unversioned';

let backend: Backend;
let gateway: Gateway;
let s3: S3Client;

gatewayForFile((started) => ({ backend, gateway, s3 } = started), { buckets: [B, PLAIN] });

const backendKey = (key: string) => `coffre/${B}/${key}`;

async function put(key: string, body: Buffer, meta: Record<string, string> = {}): Promise<string> {
  const out = await s3.send(new PutObjectCommand({ Bucket: B, Key: key, Body: body, Metadata: meta }));
  assert.ok(out.VersionId, 'a PUT into a versioned bucket names its version');
  return out.VersionId;
}

test('versioning set through the gateway is the backend bucket’s, and a bucket never set stays unversioned', async () => {
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: B }))).Status, undefined);
  await s3.send(
    new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: B }))).Status, 'Enabled');
  const direct = await backend.client.send(new GetBucketVersioningCommand({ Bucket: backend.target.bucket }));
  assert.equal(direct.Status, 'Enabled');
  // Another coffre bucket in the same backend bucket shows no version ids.
  const plain = await s3.send(new PutObjectCommand({ Bucket: PLAIN, Key: 'k', Body: 'x' }));
  assert.equal(plain.VersionId, undefined);
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: PLAIN }))).Status, undefined);
});

test('each version reads back with its own body, metadata and ranges; the ids are the backend’s', async () => {
  const one = randomBytes(200 * 1024);
  const two = randomBytes(70 * 1024);
  const v1 = await put('doc.bin', one, { rev: 'one' });
  const v2 = await put('doc.bin', two, { rev: 'two' });
  assert.notEqual(v1, v2);
  const direct = await backend.client.send(
    new ListObjectVersionsCommand({ Bucket: backend.target.bucket, Prefix: backendKey('doc.bin') }),
  );
  assert.deepEqual(new Set(direct.Versions?.map((v) => v.VersionId)), new Set([v1, v2]));

  const cur = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'doc.bin' }));
  assert.equal(cur.VersionId, v2);
  assert.equal(cur.Metadata?.rev, 'two');
  assert.ok((await bodyOf(cur)).equals(two));
  const old = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'doc.bin', VersionId: v1 }));
  assert.equal(old.VersionId, v1);
  assert.equal(old.Metadata?.rev, 'one', 'the old version’s own sealed metadata');
  assert.ok((await bodyOf(old)).equals(one));
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'doc.bin', VersionId: v1 }));
  assert.equal(head.ContentLength, one.length);
  assert.equal(head.VersionId, v1);
  const range = await s3.send(
    new GetObjectCommand({ Bucket: B, Key: 'doc.bin', VersionId: v1, Range: 'bytes=65530-131080' }),
  );
  assert.equal(range.ContentRange, `bytes 65530-131080/${one.length}`);
  assert.ok((await bodyOf(range)).equals(one.subarray(65530, 131081)));
});

test('ListObjectVersions shows plaintext sizes and the ETags PUT gave, multipart versions too', async () => {
  const small = randomBytes(1000);
  const p1 = await s3.send(new PutObjectCommand({ Bucket: B, Key: 'list/a', Body: small }));
  const big = randomBytes(11 * MiB);
  const up = new Upload({
    client: s3,
    params: { Bucket: B, Key: 'list/a', Body: big },
    partSize: 5 * MiB,
    queueSize: 1,
  });
  const p2 = await up.done();
  assert.ok(p2.VersionId, 'CompleteMultipartUpload names the version it made');
  const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: B, Prefix: 'list/' }));
  assert.deepEqual(
    listed.Versions?.map((v) => [v.Key, v.VersionId, v.Size, v.ETag, v.IsLatest]),
    [
      ['list/a', p2.VersionId, big.length, p2.ETag, true],
      ['list/a', p1.VersionId, small.length, p1.ETag, false],
    ],
  );
  const older = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'list/a', VersionId: p1.VersionId }));
  assert.ok((await bodyOf(older)).equals(small));
  const newer = await s3.send(
    new GetObjectCommand({
      Bucket: B,
      Key: 'list/a',
      VersionId: p2.VersionId,
      Range: 'bytes=5242870-5242889',
    }),
  );
  assert.ok((await bodyOf(newer)).equals(big.subarray(5242870, 5242890)));
  // Paged one version at a time: the same versions, in the same order.
  const seen: string[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectVersionsCommand({
        Bucket: B,
        Prefix: 'list/',
        MaxKeys: 1,
        KeyMarker: keyMarker,
        VersionIdMarker: versionMarker,
      }),
    );
    for (const v of page.Versions ?? []) seen.push(v.VersionId!);
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
  } while (keyMarker);
  assert.deepEqual(seen, [p2.VersionId, p1.VersionId]);
});

test('DELETE makes a delete marker; deleting the marker by its id brings the object back', async () => {
  const body = randomBytes(5000);
  const v1 = await put('gone.txt', body);
  const del = await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'gone.txt' }));
  assert.equal(del.DeleteMarker, true);
  assert.ok(del.VersionId);
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: B, Key: 'gone.txt' })), 'NoSuchKey', 404);
  await rejects(
    () => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'gone.txt', VersionId: del.VersionId })),
    '',
    405,
  );
  const kept = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'gone.txt', VersionId: v1 }));
  assert.ok((await bodyOf(kept)).equals(body));
  const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: B, Prefix: 'gone.txt' }));
  assert.deepEqual(
    listed.DeleteMarkers?.map((m) => [m.VersionId, m.IsLatest]),
    [[del.VersionId, true]],
  );
  assert.deepEqual(
    listed.Versions?.map((v) => [v.VersionId, v.IsLatest, v.Size]),
    [[v1, false, body.length]],
  );
  const undo = await s3.send(
    new DeleteObjectCommand({ Bucket: B, Key: 'gone.txt', VersionId: del.VersionId }),
  );
  assert.equal(undo.VersionId, del.VersionId);
  const back = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'gone.txt' }));
  assert.equal(back.VersionId, v1);
  assert.ok((await bodyOf(back)).equals(body));
  // A version removed for good is gone from the backend too.
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'gone.txt', VersionId: v1 }));
  const direct = await backend.client.send(
    new ListObjectVersionsCommand({ Bucket: backend.target.bucket, Prefix: backendKey('gone.txt') }),
  );
  assert.equal(direct.Versions?.length ?? 0, 0);
});

test('DeleteObjects removes versions by id and makes markers without one', async () => {
  const a1 = await put('batch/a', Buffer.from('a1'));
  const a2 = await put('batch/a', Buffer.from('a2'));
  await put('batch/b', Buffer.from('b1'));
  const out = await s3.send(
    new DeleteObjectsCommand({
      Bucket: B,
      Delete: { Objects: [{ Key: 'batch/a', VersionId: a2 }, { Key: 'batch/b' }] },
    }),
  );
  assert.equal(out.Errors?.length ?? 0, 0);
  const byKey = new Map(out.Deleted?.map((d) => [d.Key, d]));
  assert.equal(byKey.get('batch/a')?.VersionId, a2);
  assert.equal(byKey.get('batch/b')?.DeleteMarker, true);
  const a = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'batch/a' }));
  assert.equal(a.VersionId, a1);
  assert.equal((await bodyOf(a)).toString(), 'a1');
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: B, Key: 'batch/b' })), 'NoSuchKey', 404);
});

test('tags belong to one version, and a copy of an older version is a new version with its bytes', async () => {
  const v1 = await put('tagged', Buffer.from('first'));
  const v2 = await put('tagged', Buffer.from('second'));
  await s3.send(
    new PutObjectTaggingCommand({
      Bucket: B,
      Key: 'tagged',
      VersionId: v1,
      Tagging: { TagSet: [{ Key: 'era', Value: 'old' }] },
    }),
  );
  const t1 = await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: 'tagged', VersionId: v1 }));
  assert.deepEqual(t1.TagSet, [{ Key: 'era', Value: 'old' }]);
  assert.equal(t1.VersionId, v1);
  const t2 = await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: 'tagged', VersionId: v2 }));
  assert.deepEqual(t2.TagSet ?? [], []);

  const copied = await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'tagged', CopySource: `${B}/tagged?versionId=${v1}` }),
  );
  assert.equal(copied.CopySourceVersionId, v1);
  assert.ok(copied.VersionId && copied.VersionId !== v1 && copied.VersionId !== v2);
  const now = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'tagged' }));
  assert.equal(now.VersionId, copied.VersionId);
  assert.equal((await bodyOf(now)).toString(), 'first');
  // A metadata change onto itself is a new version too, and the one before keeps its metadata.
  const before = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'tagged' }));
  const changed = await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'tagged',
      CopySource: `${B}/tagged`,
      MetadataDirective: 'REPLACE',
      Metadata: { note: 'renamed' },
    }),
  );
  assert.ok(changed.VersionId && changed.VersionId !== before.VersionId);
  const prior = await s3.send(
    new HeadObjectCommand({ Bucket: B, Key: 'tagged', VersionId: before.VersionId }),
  );
  assert.equal(prior.Metadata?.note, undefined);
  const latest = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'tagged' }));
  assert.equal(latest.Metadata?.note, 'renamed');
});

test('another key’s version id, malformed ids, and versions the backend’s operator wrote are refused', async () => {
  const mine = await put('victim', Buffer.from('secret of victim'));
  const other = await put('other', Buffer.from('other'));
  // Version ids are per key: another key's names nothing here.
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'victim', VersionId: other })),
    'NoSuchVersion',
    404,
  );
  for (const bad of ['a b', 'x'.repeat(1025), '%00', '<v>', 'ü', 'v\nx']) {
    await rejects(
      () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'victim', VersionId: bad })),
      'InvalidArgument',
      400,
    );
  }
  // Well-formed ids the backend never made, path tricks among them, name no version.
  for (const unknown of ['A'.repeat(32), '../../other', 'null'])
    await rejects(
      () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'victim', VersionId: unknown })),
      'NoSuchVersion',
      404,
    );
  // The backend's operator writes a version of their own: the gateway refuses to serve it, by id or as the
  // current object, and the gateway's versions stay readable.
  const planted = await backend.client.send(
    new PutObjectCommand({
      Bucket: backend.target.bucket,
      Key: backendKey('victim'),
      Body: 'planted plaintext',
      Metadata: { coffre: '1' },
    }),
  );
  assert.ok(planted.VersionId);
  for (const VersionId of [planted.VersionId, undefined]) {
    const err = await rejects(
      () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'victim', VersionId })),
      '',
      500,
    );
    assert.doesNotMatch(err.message, /planted/);
  }
  // Its own sealed version copied by the operator under another key does not open there.
  await backend.client.send(
    new CopyObjectCommand({
      Bucket: backend.target.bucket,
      Key: backendKey('moved'),
      CopySource: `${backend.target.bucket}/${backendKey('victim')}?versionId=${mine}`,
    }),
  );
  await assert.rejects(async () => bodyOf(await s3.send(new GetObjectCommand({ Bucket: B, Key: 'moved' }))));
  const still = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'victim', VersionId: mine }));
  assert.equal((await bodyOf(still)).toString(), 'secret of victim');
});

test('rclone --s3-versions lists the older versions and reads them back', async (t) => {
  if (!requireTools(t, 'rclone')) return;
  const work = mkdtempSync(join(tmpdir(), 'coffre-rclone-versions-'));
  try {
    const config = join(work, 'rclone.conf');
    writeRcloneConfig(config, gateway.server);
    const env = { RCLONE_CONFIG: config, HOME: work, AWS_CA_BUNDLE: '' };
    const rclone = async (args: string[]) => {
      const r = await runCommand('rclone', ['--low-level-retries', '1', '--retries', '1', ...args], env);
      assert.equal(r.code, 0, `rclone ${args.join(' ')}:\n${r.stderr}`);
      return r.stdout;
    };
    writeFileSync(join(work, 'note.txt'), 'first draft\n');
    await rclone(['copyto', join(work, 'note.txt'), `coffre:${B}/note.txt`]);
    // Listings give times to the second: the next version is written in a later second than the first.
    const between = Math.floor(Date.now() / 1000) * 1000 + 1000;
    const deadline = Date.now() + 10_000;
    while (Date.now() < between + 1000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    writeFileSync(join(work, 'note.txt'), 'second draft\n');
    await rclone(['copyto', join(work, 'note.txt'), `coffre:${B}/note.txt`]);
    const names = (
      await rclone(['lsf', '--s3-versions', '--files-only', '--include', 'note*', `coffre:${B}/`])
    )
      .trim()
      .split('\n');
    assert.equal(names.length, 2, names.join(', '));
    assert.ok(names.includes('note.txt'), names.join(', '));
    assert.match(
      names.find((n) => n !== 'note.txt')!,
      /^note-v\d{4}-\d\d-\d\d-\d{6}-\d{3}\.txt$/,
    );
    assert.equal(await rclone(['cat', `coffre:${B}/note.txt`]), 'second draft\n');
    const at = new Date(between).toISOString();
    assert.equal(await rclone(['--s3-version-at', at, 'cat', `coffre:${B}/note.txt`]), 'first draft\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
