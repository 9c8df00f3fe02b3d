// A coffre gateway in front of a real Ceph RGW (test/helpers/ceph.ts): objects of several sizes, ranges,
// metadata, SSE-C, a multipart upload with parts that are not whole chunks, and listings with plaintext sizes;
// then Ceph, read with its own credentials, holds no plaintext, no user metadata and no customer key.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutBucketVersioningCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { cephOrSkip } from '../helpers/ceph.js';
import { customerKey, sseCParams } from '../security/ssec-helpers.js';
import { SharedRecords } from '../../src/backend/records.js';
import { startGateway } from './gateway-helpers.js';
import { checkLease } from './lease-helpers.js';

const MiB = 1024 * 1024;

async function bytes(out: { Body?: unknown }): Promise<Buffer> {
  return Buffer.from(
    await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
}

/**
 * A gateway in front of the Ceph RGW, on a new backend bucket named from `prefix`, stopped when the test ends;
 * undefined (the test skipped) where Ceph cannot run here.
 */
async function gatewayOnCeph(t: TestContext, prefix: string) {
  const ceph = await cephOrSkip(t);
  if (!ceph) return undefined;
  const direct = ceph.client();
  const bucket = `${prefix}-${randomBytes(4).toString('hex')}`;
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  const gateway = await startGateway({
    endpoint: ceph.endpoint,
    region: ceph.region,
    accessKeyId: ceph.accessKeyId,
    secretAccessKey: ceph.secretAccessKey,
    bucket,
  });
  t.after(async () => {
    direct.destroy();
    await gateway.stop();
  });
  return { ceph, direct, bucket, gateway, s3: gateway.client };
}

test('a gateway in front of Ceph RGW stores only ciphertext there, and serves S3 as coffre does', async (t) => {
  const set = await gatewayOnCeph(t, 'coffre-gw');
  if (!set) return;
  const { direct, bucket, s3 } = set;
  await s3.send(new CreateBucketCommand({ Bucket: 'album' }));
  const marker = Buffer.from('plaintext that Ceph must never see');
  const data = new Map<string, Buffer>();
  for (const size of [0, 5, 65536, 3 * MiB + 1]) {
    const body = Buffer.concat([marker, randomBytes(size)]);
    data.set(`sizes/${size}`, body);
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: 'album',
        Key: `sizes/${size}`,
        Body: body,
        ContentType: 'image/x-hidden',
        Metadata: { caption: 'ultramarine-caption' },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'album', Key: `sizes/${size}` }));
    assert.equal(head.ETag, put.ETag);
    assert.equal(head.ContentLength, body.length);
    assert.deepEqual(head.Metadata, { caption: 'ultramarine-caption' });
    assert.ok(
      (await bytes(await s3.send(new GetObjectCommand({ Bucket: 'album', Key: `sizes/${size}` })))).equals(
        body,
      ),
    );
  }
  const big = data.get(`sizes/${3 * MiB + 1}`)!;
  const ranged = await s3.send(
    new GetObjectCommand({ Bucket: 'album', Key: `sizes/${3 * MiB + 1}`, Range: 'bytes=65530-2000000' }),
  );
  assert.ok((await bytes(ranged)).equals(big.subarray(65530, 2000001)));

  const key = customerKey();
  const ssec = sseCParams(key);
  await s3.send(new PutObjectCommand({ Bucket: 'album', Key: 'ssec', Body: marker, ...ssec }));
  assert.ok(
    (await bytes(await s3.send(new GetObjectCommand({ Bucket: 'album', Key: 'ssec', ...ssec })))).equals(
      marker,
    ),
  );

  const parts = [Buffer.concat([marker, randomBytes(5 * MiB + 7)]), randomBytes(777)];
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'album', Key: 'multi' }));
  const etags = [];
  for (const [i, body] of parts.entries())
    etags.push(
      (
        await s3.send(
          new UploadPartCommand({ Bucket: 'album', Key: 'multi', UploadId, PartNumber: i + 1, Body: body }),
        )
      ).ETag,
    );
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: 'album',
      Key: 'multi',
      UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
    }),
  );
  const whole = Buffer.concat(parts);
  assert.ok(
    (await bytes(await s3.send(new GetObjectCommand({ Bucket: 'album', Key: 'multi' })))).equals(whole),
  );
  data.set('multi', whole);
  data.set('ssec', marker);

  const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'album' }));
  assert.deepEqual(
    listed.Contents?.map((o) => [o.Key, o.Size]),
    [...data.entries()].map(([k, v]) => [k, v.length]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
  );

  const all = await direct.send(new ListObjectsV2Command({ Bucket: bucket }));
  assert.ok((all.Contents ?? []).length >= data.size);
  for (const item of all.Contents ?? []) {
    const got = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: item.Key }));
    const stored = await bytes(got);
    const meta = JSON.stringify(got.Metadata ?? {});
    for (const needle of [
      marker,
      key.raw,
      Buffer.from(key.b64),
      Buffer.from('ultramarine-caption'),
      Buffer.from('image/x-hidden'),
    ]) {
      assert.equal(stored.indexOf(needle), -1, `${item.Key} holds no plaintext or key`);
      assert.ok(!meta.includes(needle.toString('latin1')), `${item.Key}'s metadata holds none`);
    }
  }
});

// Setting versioning updates the bucket's record with a conditional PUT: this Ceph RGW refuses If-Match in
// the quoted form of its own ETags, so the gateway names them bare (client.ts writeIfMatch).
test('a versioned bucket through a gateway in front of Ceph RGW passes Ceph’s version ids through', async (t) => {
  const set = await gatewayOnCeph(t, 'coffre-gwv');
  if (!set) return;
  const { direct, bucket, s3 } = set;
  await s3.send(new CreateBucketCommand({ Bucket: 'drafts' }));
  await s3.send(
    new PutBucketVersioningCommand({ Bucket: 'drafts', VersioningConfiguration: { Status: 'Enabled' } }),
  );
  const cephSays = await direct.send(new GetBucketVersioningCommand({ Bucket: bucket }));
  assert.equal(cephSays.Status, 'Enabled');
  const one = randomBytes(100_000);
  const two = randomBytes(3000);
  const v1 = (await s3.send(new PutObjectCommand({ Bucket: 'drafts', Key: 'd', Body: one }))).VersionId;
  const v2 = (await s3.send(new PutObjectCommand({ Bucket: 'drafts', Key: 'd', Body: two }))).VersionId;
  assert.ok(v1 && v2 && v1 !== v2);
  const cephVersions = await direct.send(
    new ListObjectVersionsCommand({ Bucket: bucket, Prefix: 'coffre/drafts/d' }),
  );
  assert.deepEqual(new Set(cephVersions.Versions?.map((v) => v.VersionId)), new Set([v1, v2]));
  const old = await s3.send(new GetObjectCommand({ Bucket: 'drafts', Key: 'd', VersionId: v1 }));
  assert.equal(old.VersionId, v1);
  assert.ok((await bytes(old)).equals(one));
  const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: 'drafts' }));
  assert.deepEqual(
    listed.Versions?.map((v) => [v.VersionId, v.Size, v.IsLatest]),
    [
      [v2, two.length, true],
      [v1, one.length, false],
    ],
  );
  const del = await s3.send(new DeleteObjectCommand({ Bucket: 'drafts', Key: 'd' }));
  assert.equal(del.DeleteMarker, true);
  await s3.send(new DeleteObjectCommand({ Bucket: 'drafts', Key: 'd', VersionId: del.VersionId }));
  const back = await s3.send(new GetObjectCommand({ Bucket: 'drafts', Key: 'd' }));
  assert.equal(back.VersionId, v2);
  assert.ok((await bytes(back)).equals(two));
});

// The lease one gateway holds to apply lifecycle rules (src/backend/lease.ts) rests on this Ceph RGW refusing a
// PUT with If-None-Match: * over an object that exists, and one with If-Match on an ETag it no longer has.
test('the backend lease is exclusive on Ceph RGW (If-None-Match: *, If-Match on PUT)', async (t) => {
  const ceph = await cephOrSkip(t);
  if (!ceph) return;
  const direct = ceph.client();
  t.after(() => direct.destroy());
  const bucket = `coffre-lease-${randomBytes(4).toString('hex')}`;
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  const records = new SharedRecords(direct, bucket, 'coffre/', randomBytes(32));
  t.after(() => records.dispose());
  await checkLease(records, (name) =>
    direct.send(new PutObjectCommand({ Bucket: bucket, Key: `coffre/.coffre/leases/${name}`, Body: 'x' })),
  );
});
