// Object lock with the AWS SDK: buckets created with object lock (and so versioning, never suspended); a
// default retention given to every new version; retention and legal hold set on PUT, copy and multipart, and
// with Put/GetObjectRetention and Put/GetObjectLegalHold; protected versions refused to DELETE and
// DeleteObjects with AccessDenied; GOVERNANCE bypassed only by an owner key asking to; COMPLIANCE by no one,
// and lifted only by the passing of its date. The ransomware drill: a key with every right overwrites and
// deletes everything, and every original version is still there to read, whatever the admin API and the CLI
// are asked to do.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  GetObjectLegalHoldCommand,
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  GetBucketVersioningCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectLockConfigurationCommand,
  PutObjectRetentionCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { runCoffre, serveForFile, type TestServer } from '../helpers/server.js';

let server: TestServer;
let s3: S3Client;

serveForFile((started) => ({ server, s3 } = started));

const DAY = 24 * 3600 * 1000;
const inDays = (days: number) => new Date(Date.now() + days * DAY);

async function lockedBucket(name: string): Promise<string> {
  await s3.send(new CreateBucketCommand({ Bucket: name, ObjectLockEnabledForBucket: true }));
  return name;
}

/** A new key allowed `rights` on `bucket` (coffre key create, coffre bucket allow), and a client signing with it. */
async function keyWith(
  bucket: string,
  rights: ('read' | 'write' | 'owner')[],
): Promise<{ id: string; client: S3Client }> {
  const created = await runCoffre([
    'key',
    'create',
    `k-${Math.random().toString(16).slice(2)}`,
    '--json',
    '--config',
    server.configPath,
  ]);
  assert.equal(created.code, 0, created.stderr);
  const key = JSON.parse(created.stdout) as { accessKeyId: string; secretAccessKey: string };
  const allow = await runCoffre([
    'bucket',
    'allow',
    bucket,
    '--key',
    key.accessKeyId,
    ...rights.map((r) => `--${r}`),
    '--config',
    server.configPath,
  ]);
  assert.equal(allow.code, 0, allow.stderr);
  return {
    id: key.accessKeyId,
    client: new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
    }),
  };
}

async function versionsOf(client: S3Client, Bucket: string) {
  const r = await client.send(new ListObjectVersionsCommand({ Bucket }));
  return {
    versions: (r.Versions ?? []).map((v) => ({ key: v.Key!, id: v.VersionId! })),
    markers: (r.DeleteMarkers ?? []).map((v) => ({ key: v.Key!, id: v.VersionId! })),
  };
}

test('a bucket created with object lock is versioned for good and has no default retention until given one', async () => {
  const B = await lockedBucket('lock-config');
  assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: B }))).Status, 'Enabled');
  assert.deepEqual(
    (await s3.send(new GetObjectLockConfigurationCommand({ Bucket: B }))).ObjectLockConfiguration,
    { ObjectLockEnabled: 'Enabled' },
  );
  await rejects(
    () =>
      s3.send(
        new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Suspended' } }),
      ),
    'InvalidBucketState',
    409,
  );
  await s3.send(
    new PutObjectLockConfigurationCommand({
      Bucket: B,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 2 } },
      },
    }),
  );
  assert.deepEqual(
    (await s3.send(new GetObjectLockConfigurationCommand({ Bucket: B }))).ObjectLockConfiguration?.Rule,
    { DefaultRetention: { Mode: 'GOVERNANCE', Days: 2 } },
  );
  const { VersionId } = await s3.send(new PutObjectCommand({ Bucket: B, Key: 'k', Body: 'x' }));
  const retention = await s3.send(new GetObjectRetentionCommand({ Bucket: B, Key: 'k', VersionId }));
  assert.equal(retention.Retention?.Mode, 'GOVERNANCE');
  const until = retention.Retention!.RetainUntilDate!.getTime();
  assert.ok(Math.abs(until - (Date.now() + 2 * DAY)) < 60_000, 'two days from now');
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'k' }));
  assert.equal(head.ObjectLockMode, 'GOVERNANCE');
  assert.equal(head.ObjectLockRetainUntilDate?.getTime(), until);

  for (const bad of [
    { ObjectLockEnabled: 'Enabled' as const, Rule: { DefaultRetention: { Mode: 'GOVERNANCE' as const } } },
    {
      ObjectLockEnabled: 'Enabled' as const,
      Rule: { DefaultRetention: { Mode: 'GOVERNANCE' as const, Days: 1, Years: 1 } },
    },
    {
      ObjectLockEnabled: 'Enabled' as const,
      Rule: { DefaultRetention: { Mode: 'FOREVER' as 'GOVERNANCE', Days: 1 } },
    },
  ])
    await rejects(
      () => s3.send(new PutObjectLockConfigurationCommand({ Bucket: B, ObjectLockConfiguration: bad })),
      'MalformedXML',
      400,
    );
  await rejects(
    () =>
      s3.send(
        new PutObjectLockConfigurationCommand({
          Bucket: B,
          ObjectLockConfiguration: {
            ObjectLockEnabled: 'Enabled',
            Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 0 } },
          },
        }),
      ),
    'InvalidArgument',
    400,
  );
});

test('object lock is refused where the bucket has none, and given a versioned bucket on request', async () => {
  const B = 'no-lock';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await rejects(
    () => s3.send(new GetObjectLockConfigurationCommand({ Bucket: B })),
    'ObjectLockConfigurationNotFoundError',
    404,
  );
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({
          Bucket: B,
          Key: 'k',
          Body: 'x',
          ObjectLockMode: 'COMPLIANCE',
          ObjectLockRetainUntilDate: inDays(1),
        }),
      ),
    'InvalidRequest',
    400,
  );
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'k', Body: 'x' }));
  await rejects(() => s3.send(new GetObjectRetentionCommand({ Bucket: B, Key: 'k' })), 'InvalidRequest', 400);
  const enable = () =>
    s3.send(
      new PutObjectLockConfigurationCommand({
        Bucket: B,
        ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled' },
      }),
    );
  await rejects(enable, 'InvalidBucketState', 409);
  await s3.send(
    new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  await enable();
  await rejects(
    () => s3.send(new GetObjectRetentionCommand({ Bucket: B, Key: 'k' })),
    'NoSuchObjectLockConfiguration',
    404,
  );
});

test('GOVERNANCE: a protected version is refused to every delete unless an owner key asks to bypass', async () => {
  const B = await lockedBucket('governance');
  const { VersionId } = await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'g',
      Body: 'kept',
      ObjectLockMode: 'GOVERNANCE',
      ObjectLockRetainUntilDate: inDays(1),
    }),
  );
  const writer = await keyWith(B, ['read', 'write']);
  try {
    // A delete without a version id only adds a marker: allowed.
    const marker = await writer.client.send(new DeleteObjectCommand({ Bucket: B, Key: 'g' }));
    assert.equal(marker.DeleteMarker, true);
    await rejects(
      () => writer.client.send(new DeleteObjectCommand({ Bucket: B, Key: 'g', VersionId })),
      'AccessDenied',
      403,
    );
    // The bypass header is no right of its own: a writer asking for it is still refused.
    await rejects(
      () =>
        writer.client.send(
          new DeleteObjectCommand({ Bucket: B, Key: 'g', VersionId, BypassGovernanceRetention: true }),
        ),
      'AccessDenied',
      403,
    );
    const batch = await writer.client.send(
      new DeleteObjectsCommand({
        Bucket: B,
        BypassGovernanceRetention: true,
        Delete: { Objects: [{ Key: 'g', VersionId }] },
      }),
    );
    assert.deepEqual(
      (batch.Errors ?? []).map((e) => e.Code),
      ['AccessDenied'],
    );
    // Shortening or removing the retention is a bypass too.
    await rejects(
      () =>
        writer.client.send(
          new PutObjectRetentionCommand({
            Bucket: B,
            Key: 'g',
            VersionId,
            Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 3600_000) },
          }),
        ),
      'AccessDenied',
      403,
    );
    // Extending it is not.
    await writer.client.send(
      new PutObjectRetentionCommand({
        Bucket: B,
        Key: 'g',
        VersionId,
        Retention: { Mode: 'GOVERNANCE', RetainUntilDate: inDays(2) },
      }),
    );
    assert.equal(
      await (
        await s3.send(new GetObjectCommand({ Bucket: B, Key: 'g', VersionId }))
      ).Body!.transformToString(),
      'kept',
    );
    // The owner may bypass, and only by asking.
    await rejects(
      () => s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'g', VersionId })),
      'AccessDenied',
      403,
    );
    await s3.send(
      new DeleteObjectCommand({ Bucket: B, Key: 'g', VersionId, BypassGovernanceRetention: true }),
    );
    await rejects(
      () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'g', VersionId })),
      'NoSuchVersion',
      404,
    );
  } finally {
    writer.client.destroy();
  }
});

test('GOVERNANCE: a bucket policy grants the bypass to a key without owner rights, or denies it to the owner', async () => {
  const B = await lockedBucket('governance-policy');
  const governed = { ObjectLockMode: 'GOVERNANCE' as const, ObjectLockRetainUntilDate: inDays(1) };
  const put = async (Key: string) =>
    (await s3.send(new PutObjectCommand({ Bucket: B, Key, Body: Key, ...governed }))).VersionId!;
  const [granted, other, ownerDenied] = [await put('logs/a'), await put('keep/b'), await put('logs/c')];
  const writer = await keyWith(B, ['read', 'write']);
  try {
    await s3.send(
      new PutBucketPolicyCommand({
        Bucket: B,
        Policy: JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: { AWS: [writer.id] },
              Action: 's3:BypassGovernanceRetention',
              Resource: `arn:aws:s3:::${B}/logs/*`,
            },
            {
              Effect: 'Deny',
              Principal: '*',
              Action: 's3:BypassGovernanceRetention',
              Resource: `arn:aws:s3:::${B}/logs/c`,
            },
          ],
        }),
      }),
    );
    // Without asking, the grant changes nothing.
    await rejects(
      () => writer.client.send(new DeleteObjectCommand({ Bucket: B, Key: 'logs/a', VersionId: granted })),
      'AccessDenied',
      403,
    );
    // A batch holding a key outside the grant is not bypassed for any of its keys.
    const batch = await writer.client.send(
      new DeleteObjectsCommand({
        Bucket: B,
        BypassGovernanceRetention: true,
        Delete: {
          Objects: [
            { Key: 'logs/a', VersionId: granted },
            { Key: 'keep/b', VersionId: other },
          ],
        },
      }),
    );
    assert.deepEqual((batch.Errors ?? []).map((e) => [e.Key, e.Code]).sort(), [
      ['keep/b', 'AccessDenied'],
      ['logs/a', 'AccessDenied'],
    ]);
    // Inside the grant, the bypass holds.
    await writer.client.send(
      new DeleteObjectCommand({
        Bucket: B,
        Key: 'logs/a',
        VersionId: granted,
        BypassGovernanceRetention: true,
      }),
    );
    await rejects(
      () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'logs/a', VersionId: granted })),
      'NoSuchVersion',
      404,
    );
    // The Deny takes the bypass from everyone, the bucket's owner too.
    await rejects(
      () =>
        s3.send(
          new DeleteObjectCommand({
            Bucket: B,
            Key: 'logs/c',
            VersionId: ownerDenied,
            BypassGovernanceRetention: true,
          }),
        ),
      'AccessDenied',
      403,
    );
    await rejects(
      () =>
        s3.send(
          new PutObjectRetentionCommand({
            Bucket: B,
            Key: 'logs/c',
            VersionId: ownerDenied,
            BypassGovernanceRetention: true,
            Retention: {},
          }),
        ),
      'AccessDenied',
      403,
    );
    // The owner keeps the bypass elsewhere.
    await s3.send(
      new DeleteObjectCommand({
        Bucket: B,
        Key: 'keep/b',
        VersionId: other,
        BypassGovernanceRetention: true,
      }),
    );
  } finally {
    writer.client.destroy();
  }
});

test('a legal hold protects a version whatever its retention, until it is lifted', async () => {
  const B = await lockedBucket('legal-hold');
  const { VersionId } = await s3.send(
    new PutObjectCommand({ Bucket: B, Key: 'h', Body: 'held', ObjectLockLegalHoldStatus: 'ON' }),
  );
  assert.equal(
    (await s3.send(new GetObjectLegalHoldCommand({ Bucket: B, Key: 'h', VersionId }))).LegalHold?.Status,
    'ON',
  );
  assert.equal(
    (await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'h' }))).ObjectLockLegalHoldStatus,
    'ON',
  );
  await rejects(
    () =>
      s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'h', VersionId, BypassGovernanceRetention: true })),
    'AccessDenied',
    403,
  );
  await s3.send(
    new PutObjectLegalHoldCommand({ Bucket: B, Key: 'h', VersionId, LegalHold: { Status: 'OFF' } }),
  );
  assert.equal(
    (await s3.send(new GetObjectLegalHoldCommand({ Bucket: B, Key: 'h', VersionId }))).LegalHold?.Status,
    'OFF',
  );
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'h', VersionId }));
  await rejects(
    () =>
      s3.send(
        new PutObjectLegalHoldCommand({
          Bucket: B,
          Key: 'h',
          VersionId,
          LegalHold: { Status: 'MAYBE' as 'ON' },
        }),
      ),
    'MalformedXML',
    400,
  );
});

test('lock headers on copy and multipart, and dates in the past refused', async () => {
  const B = await lockedBucket('lock-writes');
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'src', Body: 'data' }));
  const copy = await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'copy',
      CopySource: `${B}/src`,
      ObjectLockMode: 'COMPLIANCE',
      ObjectLockRetainUntilDate: inDays(1),
    }),
  );
  assert.equal(
    (await s3.send(new GetObjectRetentionCommand({ Bucket: B, Key: 'copy', VersionId: copy.VersionId })))
      .Retention?.Mode,
    'COMPLIANCE',
  );
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({
      Bucket: B,
      Key: 'mpu',
      ObjectLockLegalHoldStatus: 'ON',
      ObjectLockMode: 'GOVERNANCE',
      ObjectLockRetainUntilDate: inDays(1),
    }),
  );
  const part = await s3.send(
    new UploadPartCommand({ Bucket: B, Key: 'mpu', UploadId, PartNumber: 1, Body: 'part' }),
  );
  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'mpu',
      UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
    }),
  );
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'mpu', VersionId: done.VersionId }));
  assert.equal(head.ObjectLockMode, 'GOVERNANCE');
  assert.equal(head.ObjectLockLegalHoldStatus, 'ON');
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({
          Bucket: B,
          Key: 'old',
          Body: 'x',
          ObjectLockMode: 'COMPLIANCE',
          ObjectLockRetainUntilDate: new Date(Date.now() - 1000),
        }),
      ),
    'InvalidArgument',
    400,
  );
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: B, Key: 'half', Body: 'x', ObjectLockMode: 'COMPLIANCE' })),
    'InvalidArgument',
    400,
  );
});

test('COMPLIANCE: no key can shorten, remove or bypass it; only its date passing frees the version', async () => {
  const B = await lockedBucket('compliance');
  const until = new Date(Date.now() + 4000);
  const { VersionId } = await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'c',
      Body: 'sealed',
      ObjectLockMode: 'COMPLIANCE',
      ObjectLockRetainUntilDate: until,
    }),
  );
  await rejects(
    () =>
      s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'c', VersionId, BypassGovernanceRetention: true })),
    'AccessDenied',
    403,
  );
  for (const Retention of [
    { Mode: 'COMPLIANCE' as const, RetainUntilDate: new Date(Date.now() + 2000) },
    { Mode: 'GOVERNANCE' as const, RetainUntilDate: inDays(10) },
  ])
    await rejects(
      () =>
        s3.send(
          new PutObjectRetentionCommand({
            Bucket: B,
            Key: 'c',
            VersionId,
            BypassGovernanceRetention: true,
            Retention,
          }),
        ),
      'AccessDenied',
      403,
    );
  // Waiting for the date (a condition with a generous deadline), then the version may go.
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'c', VersionId }));
      break;
    } catch (err) {
      assert.equal((err as Error).name, 'AccessDenied');
      assert.ok(Date.now() < until.getTime() + 30_000, 'refused long after its date');
      assert.ok(Date.now() < deadline);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  assert.ok(Date.now() >= until.getTime(), 'removed before its date');
});

test('ransomware drill: a key with every right overwrites and deletes everything; every original survives', async () => {
  const B = await lockedBucket('records');
  await s3.send(
    new PutObjectLockConfigurationCommand({
      Bucket: B,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1 } },
      },
    }),
  );
  const originals = new Map<string, { id: string; body: string }>();
  for (let i = 0; i < 5; i++) {
    const body = `ledger ${i}`;
    const { VersionId } = await s3.send(
      new PutObjectCommand({ Bucket: B, Key: `books/${i}.txt`, Body: body }),
    );
    originals.set(`books/${i}.txt`, { id: VersionId!, body });
  }
  const reader = await keyWith(B, ['read']);
  const attacker = await keyWith(B, ['read', 'write', 'owner']);
  const evil = attacker.client;
  try {
    // Encrypt everything in place, delete it, then try to destroy every version, bypass asked for.
    for (const key of originals.keys())
      await evil.send(new PutObjectCommand({ Bucket: B, Key: key, Body: 'ENCRYPTED, PAY UP' }));
    for (const key of originals.keys()) await evil.send(new DeleteObjectCommand({ Bucket: B, Key: key }));
    const { versions, markers } = await versionsOf(evil, B);
    assert.equal(versions.length, 10);
    const batch = await evil.send(
      new DeleteObjectsCommand({
        Bucket: B,
        BypassGovernanceRetention: true,
        Delete: { Objects: [...versions, ...markers].map((v) => ({ Key: v.key, VersionId: v.id })) },
      }),
    );
    // Delete markers carry no data and no lock: they go. Every version with data is refused.
    assert.equal((batch.Errors ?? []).length, 10);
    assert.ok((batch.Errors ?? []).every((e) => e.Code === 'AccessDenied'));
    for (const v of versions)
      await rejects(
        () =>
          evil.send(
            new DeleteObjectCommand({
              Bucket: B,
              Key: v.key,
              VersionId: v.id,
              BypassGovernanceRetention: true,
            }),
          ),
        'AccessDenied',
        403,
      );
    for (const v of versions)
      await rejects(
        () =>
          evil.send(
            new PutObjectRetentionCommand({
              Bucket: B,
              Key: v.key,
              VersionId: v.id,
              BypassGovernanceRetention: true,
              Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 60_000) },
            }),
          ),
        'AccessDenied',
        403,
      );
    // Nor can the operator's tools remove them: the bucket is not empty to the admin API and the CLI.
    const res = await fetch(`${server.adminEndpoint}/v1/buckets/${B}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    assert.equal(res.status, 409);
    const cli = await runCoffre(['bucket', 'delete', B, '--config', server.configPath]);
    assert.notEqual(cli.code, 0);
    assert.doesNotMatch(cli.stderr, /\n\s+at /, 'one line, no stack trace');
    // Deleting the attacking key removes its rights, not the data.
    const keyDelete = await runCoffre(['key', 'delete', attacker.id, '--config', server.configPath]);
    assert.equal(keyDelete.code, 0, keyDelete.stderr);
  } finally {
    evil.destroy();
  }
  try {
    for (const [key, original] of originals) {
      const got = await reader.client.send(
        new GetObjectCommand({ Bucket: B, Key: key, VersionId: original.id }),
      );
      assert.equal(await got.Body!.transformToString(), original.body);
    }
  } finally {
    reader.client.destroy();
  }
});
