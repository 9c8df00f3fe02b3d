// Multipart uploads through a gateway (its backend here another coffre node): ListMultipartUploads shows those
// in progress, a CompleteMultipartUpload repeated after it succeeded answers the same (as AWS does), and what a
// gateway killed mid-upload left in the backend is aborted by the sweep of uploads older than a day (here
// shortened through the environment), whether the upload had its record yet or not.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { gatewayForFile, startGateway, type Backend } from './gateway-helpers.js';

const MiB = 1024 * 1024;
const rpcSecret = `rpc_secret = "${randomBytes(32).toString('hex')}"`;

let backend: Backend;
let s3: S3Client;

gatewayForFile((started) => ({ backend, s3 } = started), {
  buckets: ['ups', 'other'],
  gateway: { server: { secretConfig: rpcSecret } },
});

async function uploadedPart(key: string, uploadId: string, n: number, size: number) {
  const part = await s3.send(
    new UploadPartCommand({
      Bucket: 'ups',
      Key: key,
      UploadId: uploadId,
      PartNumber: n,
      Body: randomBytes(size),
    }),
  );
  return { PartNumber: n, ETag: part.ETag! };
}

test('ListMultipartUploads shows the uploads in progress of the bucket asked for, and no others', async () => {
  const a = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'ups', Key: 'dir/a.bin' }));
  const b = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'ups', Key: 'b.bin' }));
  const elsewhere = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'other', Key: 'c.bin' }));
  await uploadedPart('dir/a.bin', a.UploadId!, 1, 1000);
  const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'ups' }));
  assert.deepEqual(listed.Uploads?.map((u) => [u.Key, u.UploadId]).sort(), [
    ['b.bin', b.UploadId],
    ['dir/a.bin', a.UploadId],
  ]);
  for (const u of listed.Uploads ?? []) assert.ok(u.Initiated instanceof Date);
  const prefixed = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'ups', Prefix: 'dir/' }));
  assert.deepEqual(
    prefixed.Uploads?.map((u) => u.Key),
    ['dir/a.bin'],
  );
  await s3.send(new AbortMultipartUploadCommand({ Bucket: 'ups', Key: 'dir/a.bin', UploadId: a.UploadId }));
  await s3.send(new AbortMultipartUploadCommand({ Bucket: 'ups', Key: 'b.bin', UploadId: b.UploadId }));
  const none = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'ups' }));
  assert.equal(none.Uploads?.length ?? 0, 0);
  const other = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'other' }));
  assert.deepEqual(
    other.Uploads?.map((u) => u.UploadId),
    [elsewhere.UploadId],
  );
  await s3.send(
    new AbortMultipartUploadCommand({ Bucket: 'other', Key: 'c.bin', UploadId: elsewhere.UploadId }),
  );
});

test('a CompleteMultipartUpload repeated after it succeeded answers the same; another part list does not', async () => {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'ups', Key: 'twice.bin' }));
  const parts = [
    await uploadedPart('twice.bin', UploadId!, 1, 5 * MiB),
    await uploadedPart('twice.bin', UploadId!, 2, 10),
  ];
  const complete = () =>
    s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'ups',
        Key: 'twice.bin',
        UploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
  const first = await complete();
  const again = await complete();
  assert.equal(again.ETag, first.ETag);
  assert.equal(again.Key, 'twice.bin');
  await rejects(
    () =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: 'ups',
          Key: 'twice.bin',
          UploadId,
          MultipartUpload: { Parts: [parts[0]!, { PartNumber: 2, ETag: parts[0]!.ETag }] },
        }),
      ),
    'InvalidPart',
    400,
  );
  await rejects(
    () =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: 'ups',
          Key: 'twice.bin',
          UploadId,
          MultipartUpload: { Parts: [parts[0]!] },
        }),
      ),
    'InvalidPart',
    400,
  );
  // Another upload id on the same key is still no such upload.
  await rejects(
    () =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: 'ups',
          Key: 'twice.bin',
          UploadId: 'f'.repeat(32),
          MultipartUpload: { Parts: parts },
        }),
      ),
    'NoSuchUpload',
    404,
  );
});

test('what a gateway killed mid-upload left in the backend is aborted by the sweep of old uploads', async () => {
  const prefix = 'swept/';
  // A gateway on its own prefix starts an upload, sends a part, and is killed.
  const doomed = await startGateway(backend.target, { prefix, server: { secretConfig: rpcSecret } });
  await doomed.client.send(new CreateBucketCommand({ Bucket: 'lost' }));
  const started = await doomed.client.send(
    new CreateMultipartUploadCommand({ Bucket: 'lost', Key: 'big.bin' }),
  );
  await doomed.client.send(
    new UploadPartCommand({
      Bucket: 'lost',
      Key: 'big.bin',
      UploadId: started.UploadId,
      PartNumber: 1,
      Body: randomBytes(MiB),
    }),
  );
  doomed.client.destroy();
  await doomed.server.kill();
  // ... and one killed between starting the backend's upload and writing its record left only that upload.
  await backend.client.send(
    new CreateMultipartUploadCommand({ Bucket: backend.target.bucket, Key: `${prefix}lost/no-record.bin` }),
  );
  const backendUploads = async () =>
    (
      await backend.client.send(
        new ListMultipartUploadsCommand({ Bucket: backend.target.bucket, Prefix: prefix }),
      )
    ).Uploads ?? [];
  assert.equal((await backendUploads()).length, 2);

  // Another gateway on that prefix, whose uploads count as abandoned at once, sweeps them.
  const sweeper = await startGateway(backend.target, {
    prefix,
    keyring: false,
    server: {
      secretConfig: rpcSecret,
      accessKey: { id: doomed.server.accessKeyId, secret: doomed.server.secretAccessKey },
      env: { COFFRE_UPLOAD_SWEEP_MS: '200', COFFRE_UPLOAD_MAX_AGE_MS: '1' },
    },
  });
  try {
    const deadline = Date.now() + 60_000;
    while ((await backendUploads()).length > 0) {
      assert.ok(Date.now() < deadline, 'the sweep aborted the abandoned uploads within a minute');
      await new Promise((r) => setTimeout(r, 200));
    }
    const records = await backend.client.send(
      new ListObjectsV2Command({ Bucket: backend.target.bucket, Prefix: `${prefix}.coffre/uploads/` }),
    );
    assert.equal(records.KeyCount ?? 0, 0, 'the upload record and part markers are gone');
    const listed = await sweeper.client.send(new ListMultipartUploadsCommand({ Bucket: 'lost' }));
    assert.equal(listed.Uploads?.length ?? 0, 0);
    // The uploads of the first prefix's gateway are not this one's to sweep.
    const kept = await backend.client.send(
      new ListMultipartUploadsCommand({ Bucket: backend.target.bucket, Prefix: 'coffre/' }),
    );
    assert.ok(kept.Uploads === undefined || kept.Uploads.every((u) => !u.Key?.startsWith(prefix)));
  } finally {
    await sweeper.stop();
    doomed.server.cleanup();
    rmSync(doomed.operator.dir, { recursive: true, force: true });
  }
});
