// Versioning and object lock in a cluster, through a gateway: the version calls cross RPC as checked plain data
// to the storage node that holds the metadata. Through the gateway: versioning enabled, versions written and
// read back by id (SSE-C versions each with their own key), a delete marker, ListObjectVersions, and a
// COMPLIANCE version refused to DeleteObjects; the storage node sees the same versions. A bucket policy set
// through the gateway holds on every node, and lifecycle rules run from the gateway act on the cluster's tables.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import {
  formCluster,
  mustRun,
  newRpcSecret,
  s3Client,
  startNode,
  type ClusterNode,
} from './cluster-helpers.js';
import { sseCParams, customerKey } from '../security/ssec-helpers.js';

let storage: ClusterNode;
let gateway: ClusterNode;
let viaGateway: S3Client;
let direct: S3Client;

before(async () => {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  storage = await startNode({ secretConfig: secret, label: 'storage' });
  gateway = await startNode({ secretConfig: secret, label: 'gateway' });
  await formCluster(storage, [
    { node: storage, zone: 'z1' },
    { node: gateway, zone: 'z1', gateway: true },
  ]);
  viaGateway = s3Client(gateway.endpoint, storage);
  direct = s3Client(storage.endpoint, storage);
});

after(async () => {
  viaGateway?.destroy();
  direct?.destroy();
  for (const n of [gateway, storage]) {
    await n?.stop();
    n?.cleanup();
  }
});

test('versions written through a gateway are kept, listed and read back by id on every node', async () => {
  const B = 'versions-via-gateway';
  await viaGateway.send(new CreateBucketCommand({ Bucket: B }));
  await viaGateway.send(
    new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  const keys = [randomBytes(32), randomBytes(32)];
  const sse = (k: Buffer) => sseCParams(customerKey(k));
  const ids: string[] = [];
  for (const [i, k] of keys.entries())
    ids.push(
      (await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'doc', Body: `v${i}`, ...sse(k) })))
        .VersionId!,
    );
  const marker = await viaGateway.send(new DeleteObjectCommand({ Bucket: B, Key: 'doc' }));
  assert.equal(marker.DeleteMarker, true);
  await rejects(() => viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'doc' })), 'NoSuchKey', 404);
  for (const client of [viaGateway, direct]) {
    const listed = await client.send(new ListObjectVersionsCommand({ Bucket: B }));
    assert.deepEqual(
      (listed.Versions ?? []).map((v) => v.VersionId),
      [ids[1], ids[0]],
    );
    assert.deepEqual(
      (listed.DeleteMarkers ?? []).map((m) => [m.VersionId, m.IsLatest]),
      [[marker.VersionId, true]],
    );
    for (const [i, k] of keys.entries()) {
      const got = await client.send(
        new GetObjectCommand({ Bucket: B, Key: 'doc', VersionId: ids[i], ...sse(k) }),
      );
      assert.equal(await got.Body!.transformToString(), `v${i}`);
    }
  }
});

test('a COMPLIANCE version is refused removal through the gateway', async () => {
  const B = 'locked-via-gateway';
  await viaGateway.send(new CreateBucketCommand({ Bucket: B, ObjectLockEnabledForBucket: true }));
  const { VersionId } = await viaGateway.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'record',
      Body: 'kept',
      ObjectLockMode: 'COMPLIANCE',
      ObjectLockRetainUntilDate: new Date(Date.now() + 24 * 3600_000),
    }),
  );
  const r = await viaGateway.send(
    new DeleteObjectsCommand({
      Bucket: B,
      BypassGovernanceRetention: true,
      Delete: { Objects: [{ Key: 'record', VersionId }] },
    }),
  );
  assert.deepEqual(
    (r.Errors ?? []).map((e) => e.Code),
    ['AccessDenied'],
  );
  const got = await direct.send(new GetObjectCommand({ Bucket: B, Key: 'record', VersionId }));
  assert.equal(await got.Body!.transformToString(), 'kept');
});

test('a bucket policy set through the gateway holds on every node: unencrypted uploads refused', async () => {
  const B = 'policy-via-gateway';
  await viaGateway.send(new CreateBucketCommand({ Bucket: B }));
  // AWS's recipe: deny every PutObject that does not ask for server-side encryption.
  const policy = {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'DenyUnencrypted',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:PutObject',
        Resource: `arn:aws:s3:::${B}/*`,
        Condition: { Null: { 's3:x-amz-server-side-encryption-customer-algorithm': 'true' } },
      },
    ],
  };
  await viaGateway.send(new PutBucketPolicyCommand({ Bucket: B, Policy: JSON.stringify(policy) }));
  const key = randomBytes(32);
  const sse = sseCParams(customerKey(key));
  for (const client of [viaGateway, direct]) {
    await rejects(
      () => client.send(new PutObjectCommand({ Bucket: B, Key: 'plain', Body: 'x' })),
      'AccessDenied',
      403,
    );
    await client.send(new PutObjectCommand({ Bucket: B, Key: 'sealed', Body: 'y', ...sse }));
  }
  const listed = await direct.send(new ListObjectsV2Command({ Bucket: B }));
  assert.deepEqual(
    (listed.Contents ?? []).map((o) => o.Key),
    ['sealed'],
  );
});

test('lifecycle rules set through the gateway are applied by `coffre lifecycle run` there', async () => {
  const B = 'lifecycle-via-gateway';
  await viaGateway.send(new CreateBucketCommand({ Bucket: B }));
  await viaGateway.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket: B,
      LifecycleConfiguration: {
        Rules: [{ ID: 'tmp', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 1 } }],
      },
    }),
  );
  for (const Key of ['tmp/a', 'tmp/b', 'keep/c'])
    await viaGateway.send(new PutObjectCommand({ Bucket: B, Key, Body: Key }));
  // Run as of three days from now (the injected clock): the tmp/ objects are past their day.
  const now = new Date(Date.now() + 3 * 24 * 3600_000).toISOString();
  const report = JSON.parse(await mustRun(gateway, ['lifecycle', 'run', '--now', now, '--json'])) as {
    actions: { bucket: string; key: string; action: string }[];
  };
  assert.deepEqual(
    report.actions
      .filter((a) => a.bucket === B)
      .map((a) => [a.key, a.action])
      .sort(),
    [
      ['tmp/a', 'expired'],
      ['tmp/b', 'expired'],
    ],
  );
  for (const client of [viaGateway, direct]) {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: B }));
    assert.deepEqual(
      (listed.Contents ?? []).map((o) => o.Key),
      ['keep/c'],
    );
  }
});
