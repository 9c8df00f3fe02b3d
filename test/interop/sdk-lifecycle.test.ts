// Lifecycle with the AWS SDK and `coffre lifecycle run`: rules set, read and deleted; malformed rules refused
// with S3's errors; the worker, run "as of" a later date (the injected clock), expires current versions by
// prefix, tags and size, removes non-current versions past their age but keeps the newest ones asked for,
// removes delete markers left alone, aborts old multipart uploads, reports what it removed — and never
// removes a version object lock protects, whatever date it is told.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketLifecycleCommand,
  DeleteObjectCommand,
  GetBucketLifecycleConfigurationCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectLockConfigurationCommand,
  S3Client,
  type LifecycleRule,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { runCoffre, serveForFile, type TestServer } from '../helpers/server.js';
import type { LifecycleReport } from '../../src/model/lifecycle.js';

let server: TestServer;
let s3: S3Client;

serveForFile((started) => ({ server, s3 } = started));

const DAY = 24 * 3600 * 1000;

/** `coffre lifecycle run --now <days from now>` (the injected clock), its JSON report. */
async function runAsOf(daysFromNow: number): Promise<LifecycleReport> {
  const now = new Date(Date.now() + daysFromNow * DAY).toISOString();
  const r = await runCoffre(['lifecycle', 'run', '--now', now, '--json', '--config', server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as LifecycleReport;
}

async function setRules(Bucket: string, Rules: LifecycleRule[]): Promise<void> {
  await s3.send(new PutBucketLifecycleConfigurationCommand({ Bucket, LifecycleConfiguration: { Rules } }));
}

async function keys(Bucket: string): Promise<string[]> {
  return ((await s3.send(new ListObjectsV2Command({ Bucket }))).Contents ?? []).map((o) => o.Key!);
}

test('lifecycle rules are set, read back and deleted; malformed ones are refused as S3 refuses them', async () => {
  const B = 'rules';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await rejects(
    () => s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B })),
    'NoSuchLifecycleConfiguration',
    404,
  );
  await setRules(B, [
    { ID: 'tmp', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 7 } },
    {
      ID: 'old-versions',
      Status: 'Disabled',
      Filter: {
        And: { Prefix: 'logs/', Tags: [{ Key: 'class', Value: 'scratch' }], ObjectSizeGreaterThan: 10 },
      },
      NoncurrentVersionExpiration: { NoncurrentDays: 30, NewerNoncurrentVersions: 3 },
    },
    {
      ID: 'uploads',
      Status: 'Enabled',
      Filter: {},
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 },
    },
    {
      ID: 'dated',
      Status: 'Enabled',
      Filter: { Prefix: '' },
      Expiration: { Date: new Date('2031-01-01T00:00:00Z') },
    },
  ]);
  const got = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B }))).Rules!;
  assert.deepEqual(
    got.map((r) => r.ID),
    ['tmp', 'old-versions', 'uploads', 'dated'],
  );
  assert.deepEqual(got[0]!.Filter, { Prefix: 'tmp/' });
  assert.equal(got[0]!.Expiration?.Days, 7);
  assert.deepEqual(got[1]!.Filter?.And?.Tags, [{ Key: 'class', Value: 'scratch' }]);
  assert.equal(got[1]!.Status, 'Disabled');
  assert.equal(got[1]!.NoncurrentVersionExpiration?.NewerNoncurrentVersions, 3);
  assert.equal(got[2]!.AbortIncompleteMultipartUpload?.DaysAfterInitiation, 2);
  assert.equal(got[3]!.Expiration?.Date?.toISOString(), '2031-01-01T00:00:00.000Z');

  const refused: [LifecycleRule[], string, number][] = [
    [
      [{ ID: 'x', Status: 'Sometimes' as 'Enabled', Filter: {}, Expiration: { Days: 1 } }],
      'MalformedXML',
      400,
    ],
    [[{ ID: 'x', Status: 'Enabled', Filter: {} }], 'InvalidRequest', 400],
    [[{ ID: 'x', Status: 'Enabled', Filter: {}, Expiration: { Days: 0 } }], 'InvalidArgument', 400],
    [
      [{ ID: 'x', Status: 'Enabled', Filter: {}, Expiration: { Date: new Date('2031-01-01T12:00:00Z') } }],
      'InvalidArgument',
      400,
    ],
    [
      [
        { ID: 'x', Status: 'Enabled', Filter: {}, Expiration: { Days: 1 } },
        { ID: 'x', Status: 'Enabled', Filter: {}, Expiration: { Days: 2 } },
      ],
      'InvalidArgument',
      400,
    ],
    [
      [{ ID: 'x', Status: 'Enabled', Filter: {}, Transitions: [{ Days: 1, StorageClass: 'GLACIER' }] }],
      'NotImplemented',
      501,
    ],
    [
      [
        {
          ID: 'x',
          Status: 'Enabled',
          Filter: { Tag: { Key: 'a', Value: 'b' } },
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
        },
      ],
      'InvalidRequest',
      400,
    ],
  ];
  for (const [Rules, code, status] of refused) await rejects(() => setRules(B, Rules), code, status);
  // Nothing refused changed the rules.
  assert.equal((await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B }))).Rules!.length, 4);
  await s3.send(new DeleteBucketLifecycleCommand({ Bucket: B }));
  await rejects(
    () => s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B })),
    'NoSuchLifecycleConfiguration',
    404,
  );
});

test('expiration by prefix, tags and size removes current objects once their day comes, and only them', async () => {
  const B = 'expiring';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await setRules(B, [
    { ID: 'tmp', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 2 } },
    {
      ID: 'big-scratch',
      Status: 'Enabled',
      Filter: { And: { Tags: [{ Key: 'class', Value: 'scratch' }], ObjectSizeGreaterThan: 4 } },
      Expiration: { Days: 1 },
    },
    { ID: 'off', Status: 'Disabled', Filter: {}, Expiration: { Days: 1 } },
  ]);
  const put = (Key: string, Body: string, Tagging?: string) =>
    s3.send(new PutObjectCommand({ Bucket: B, Key, Body, Tagging }));
  await put('tmp/a', 'a');
  await put('keep/b', 'b');
  await put('scratch-big', 'big body', 'class=scratch');
  await put('scratch-small', 'tiny', 'class=scratch');
  await put('other-big', 'big body', 'class=keep');
  const today = await runAsOf(0);
  assert.equal(today.expired, 0);
  assert.equal((await keys(B)).length, 5);
  const later = await runAsOf(3);
  assert.ok(later.buckets >= 1);
  assert.deepEqual(
    later.actions
      .filter((a) => a.bucket === B)
      .map((a) => [a.key, a.action, a.rule])
      .sort(),
    [
      ['scratch-big', 'expired', 'big-scratch'],
      ['tmp/a', 'expired', 'tmp'],
    ],
  );
  assert.deepEqual(await keys(B), ['keep/b', 'other-big', 'scratch-small']);
});

test('versioned: non-current versions go after their age but the newest asked for stay; lone markers go', async () => {
  const B = 'aging-versions';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await s3.send(
    new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  await setRules(B, [
    {
      ID: 'history',
      Status: 'Enabled',
      Filter: {},
      NoncurrentVersionExpiration: { NoncurrentDays: 1, NewerNoncurrentVersions: 1 },
    },
    { ID: 'markers', Status: 'Enabled', Filter: {}, Expiration: { ExpiredObjectDeleteMarker: true } },
  ]);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++)
    ids.push((await s3.send(new PutObjectCommand({ Bucket: B, Key: 'k', Body: `v${i}` }))).VersionId!);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'gone', Body: 'x' }));
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'gone' }));
  const report = await runAsOf(5);
  const mine = report.actions.filter((a) => a.bucket === B);
  // k: current v3 and the newest non-current v2 stay; v1 and v0 go. gone: its one version is non-current and
  // the newest, so it stays, and so does its marker.
  assert.deepEqual(
    mine.map((a) => [a.key, a.versionId, a.action]),
    [
      ['k', ids[1], 'noncurrent-removed'],
      ['k', ids[0], 'noncurrent-removed'],
    ],
  );
  const left = await s3.send(new ListObjectVersionsCommand({ Bucket: B }));
  assert.deepEqual(
    (left.Versions ?? []).filter((v) => v.Key === 'k').map((v) => v.VersionId),
    [ids[3], ids[2]],
  );
  // Once a key's last version is gone, the marker left alone goes too.
  await setRules(B, [
    { ID: 'all-history', Status: 'Enabled', Filter: {}, NoncurrentVersionExpiration: { NoncurrentDays: 1 } },
    { ID: 'markers', Status: 'Enabled', Filter: {}, Expiration: { ExpiredObjectDeleteMarker: true } },
  ]);
  const second = await runAsOf(5);
  assert.ok(
    second.actions.some((a) => a.bucket === B && a.key === 'gone' && a.action === 'delete-marker-removed'),
  );
  const after = await s3.send(new ListObjectVersionsCommand({ Bucket: B, Prefix: 'gone' }));
  assert.equal((after.Versions ?? []).length + (after.DeleteMarkers ?? []).length, 0);
});

test('old multipart uploads are aborted; recent ones and other prefixes are not', async () => {
  const B = 'stale-uploads';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await setRules(B, [
    {
      ID: 'abort',
      Status: 'Enabled',
      Filter: { Prefix: 'up/' },
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 3 },
    },
  ]);
  await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'up/one' }));
  await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'elsewhere' }));
  assert.equal((await runAsOf(1)).uploadsAborted, 0);
  const report = await runAsOf(4);
  assert.deepEqual(
    report.actions.filter((a) => a.bucket === B).map((a) => [a.key, a.action]),
    [['up/one', 'upload-aborted']],
  );
  const left = await s3.send(new ListMultipartUploadsCommand({ Bucket: B }));
  assert.deepEqual(
    (left.Uploads ?? []).map((u) => u.Key),
    ['elsewhere'],
  );
});

test('lifecycle never acts against object lock, whatever date it is run as of', async () => {
  const B = 'locked-lifecycle';
  await s3.send(new CreateBucketCommand({ Bucket: B, ObjectLockEnabledForBucket: true }));
  await s3.send(
    new PutObjectLockConfigurationCommand({
      Bucket: B,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1 } },
      },
    }),
  );
  const first = (await s3.send(new PutObjectCommand({ Bucket: B, Key: 'r', Body: 'first' }))).VersionId!;
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'r', Body: 'second' }));
  await setRules(B, [
    {
      ID: 'everything',
      Status: 'Enabled',
      Filter: {},
      Expiration: { Days: 1 },
      NoncurrentVersionExpiration: { NoncurrentDays: 1 },
    },
  ]);
  const report = await runAsOf(400);
  const mine = report.actions.filter((a) => a.bucket === B);
  // Expiring the current version only puts a delete marker on it; the locked non-current version is kept.
  assert.deepEqual(
    mine.map((a) => a.action),
    ['expired'],
  );
  assert.ok(report.keptByObjectLock >= 1);
  const again = await runAsOf(800);
  assert.ok(again.keptByObjectLock >= 2, 'both versions protected');
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'r', VersionId: first }));
  assert.equal(await got.Body!.transformToString(), 'first');
});

test('the admin API runs lifecycle too, and refuses a date it cannot read', async () => {
  const call = (body: unknown) =>
    fetch(`${server.adminEndpoint}/v1/lifecycle/run`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  assert.equal((await call({})).status, 200);
  const bad = await call({ now: 'next tuesday' });
  assert.equal(bad.status, 400);
  const unauthenticated = await fetch(`${server.adminEndpoint}/v1/lifecycle/run`, {
    method: 'POST',
    body: '{}',
  });
  assert.equal(unauthenticated.status, 403);
  const cli = await runCoffre(['lifecycle', 'run', '--now', 'soonish', '--config', server.configPath]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /--now soonish/);
  assert.doesNotMatch(cli.stderr, /\n\s+at /);
});
