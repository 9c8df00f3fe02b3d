// Space of deleted and overwritten objects is reclaimed: the bytes stored under the data directory go back
// down once the garbage collector has run (gc_delay_seconds = 1 in tests), for single PUTs, overwrites,
// batch deletes, aborted multipart uploads and parts left out of a completed upload; blocks still shared by
// a copy are kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { startServer } from '../helpers/server.js';
import { MiB, bytesUnder, getBytes, noRetryClient, sha256, sleep } from './s3-util.js';

const BUCKET = 'space';
const OBJECT_SIZE = 2 * MiB;
// Block files are the bytes themselves; allow a little for directory entries and rounding.
const SLACK = 64 * 1024;
const GC_WAIT_MS = 15_000;

// Waits until the data directory holds at most `limit` bytes, or gives up and returns what it holds.
async function settlesAtMost(dataDir: string, limit: number): Promise<number> {
  const deadline = Date.now() + GC_WAIT_MS;
  let bytes = bytesUnder(dataDir);
  while (bytes > limit && Date.now() < deadline) {
    await sleep(200);
    bytes = bytesUnder(dataDir);
  }
  return bytes;
}

async function uploadParts(client: S3Client, key: string, parts: Buffer[]) {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  const etags: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const out = await client.send(
      new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: parts[i] }),
    );
    etags.push(out.ETag!);
  }
  return { uploadId: UploadId!, etags };
}

test('deleted, overwritten and aborted data gives its space back', async (t) => {
  const server = await startServer();
  t.after(async () => {
    await server.kill();
    server.cleanup();
  });
  const client = noRetryClient(server);
  const dataDir = join(server.dir, 'data');
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const empty = bytesUnder(dataDir);

  // Eight objects, then four of them overwritten with new content.
  const contents = new Map<string, Buffer>();
  for (let i = 0; i < 8; i++) {
    const body = randomBytes(OBJECT_SIZE);
    contents.set(`obj${i}`, body);
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `obj${i}`, Body: body }));
  }
  const eight = bytesUnder(dataDir);
  assert.ok(
    eight >= empty + 8 * OBJECT_SIZE,
    `8 objects should take 16 MiB, data dir grew by ${eight - empty}`,
  );
  for (let i = 0; i < 4; i++) {
    const body = randomBytes(OBJECT_SIZE);
    contents.set(`obj${i}`, body);
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `obj${i}`, Body: body }));
  }
  let bytes = await settlesAtMost(dataDir, empty + 8 * OBJECT_SIZE + SLACK);
  assert.ok(
    bytes <= empty + 8 * OBJECT_SIZE + SLACK,
    `overwritten data not reclaimed: ${bytes - empty} bytes`,
  );
  for (const [key, body] of contents) assert.equal(sha256(await getBytes(client, BUCKET, key)), sha256(body));

  // A copy shares its source's blocks: deleting the source frees nothing, the copy stays readable.
  await client.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copy', CopySource: `${BUCKET}/obj7` }));
  await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'obj7' }));
  await sleep(2500); // more than the GC delay plus one collection interval
  assert.equal(sha256(await getBytes(client, BUCKET, 'copy')), sha256(contents.get('obj7')!));
  bytes = bytesUnder(dataDir);
  assert.ok(bytes >= empty + 8 * OBJECT_SIZE, 'blocks shared with a copy were collected');

  // Single and batch deletes of everything.
  await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'copy' }));
  await client.send(
    new DeleteObjectsCommand({
      Bucket: BUCKET,
      Delete: { Objects: [...Array(7).keys()].map((i) => ({ Key: `obj${i}` })) },
    }),
  );
  bytes = await settlesAtMost(dataDir, empty + SLACK);
  assert.ok(bytes <= empty + SLACK, `deleted data not reclaimed: ${bytes - empty} bytes remain`);

  // An aborted multipart upload.
  const aborted = await uploadParts(client, 'aborted', [randomBytes(5 * MiB), randomBytes(3 * MiB)]);
  assert.ok(bytesUnder(dataDir) >= empty + 8 * MiB);
  await client.send(
    new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: 'aborted', UploadId: aborted.uploadId }),
  );
  bytes = await settlesAtMost(dataDir, empty + SLACK);
  assert.ok(bytes <= empty + SLACK, `aborted upload's parts not reclaimed: ${bytes - empty} bytes remain`);

  // A completed upload that leaves part 2 out, and a part uploaded twice: only what the object uses stays.
  const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(2 * MiB)];
  const mp = await uploadParts(client, 'assembled', parts);
  const part1Again = randomBytes(5 * MiB);
  const again = await client.send(
    new UploadPartCommand({
      Bucket: BUCKET,
      Key: 'assembled',
      UploadId: mp.uploadId,
      PartNumber: 1,
      Body: part1Again,
    }),
  );
  await client.send(
    new CompleteMultipartUploadCommand({
      Bucket: BUCKET,
      Key: 'assembled',
      UploadId: mp.uploadId,
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: again.ETag },
          { PartNumber: 3, ETag: mp.etags[2] },
        ],
      },
    }),
  );
  const used = 5 * MiB + 2 * MiB;
  bytes = await settlesAtMost(dataDir, empty + used + SLACK);
  assert.ok(bytes <= empty + used + SLACK, `unused parts not reclaimed: ${bytes - empty - used} extra bytes`);
  assert.equal(
    sha256(await getBytes(client, BUCKET, 'assembled')),
    sha256(Buffer.concat([part1Again, parts[2]!])),
  );
  await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'assembled' }));
  bytes = await settlesAtMost(dataDir, empty + SLACK);
  assert.ok(
    bytes <= empty + SLACK,
    `completed upload not reclaimed after delete: ${bytes - empty} bytes remain`,
  );
  client.destroy();
});
