// A server killed with SIGKILL while concurrent uploads (single PUTs, overwrites, multipart uploads) and
// deletes are in flight loses no acknowledged write and exposes no partial object: after a restart on the
// same data, every acknowledged object reads back byte-identical, and every listed object is exactly one of
// the versions that was sent for its key, never a truncated or mixed one. Space left by the interrupted
// writes is reclaimed afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { join } from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { startServer, type TestServer } from '../helpers/server.js';
import { MiB, bytesUnder, getBytes, listAllKeys, noRetryClient, sha256, sleep } from './s3-util.js';

const BUCKET = 'crash';
const CONCURRENT_PUTS = 16;
const PART_SIZE = 5 * MiB;
const PARTS = 3;
// When to kill: a random moment early on (nothing acknowledged yet, most bodies half sent), then once a
// random number of uploads has been acknowledged (plus a random few milliseconds), so that every round has
// uploads in flight and later rounds also have acknowledged ones.
const KILL_PLANS: { afterAcks: [number, number]; delayMs: [number, number] }[] = [
  { afterAcks: [0, 0], delayMs: [50, 400] },
  { afterAcks: [1, 5], delayMs: [0, 30] },
  { afterAcks: [6, 12], delayMs: [0, 30] },
  { afterAcks: [2, 8], delayMs: [0, 30] },
];
// Uploads start a little apart so they finish at different times.
const START_STAGGER_MS = 40;

interface Version {
  hash: string;
  size: number;
  acknowledged: boolean;
}

// Every version ever sent for a key, in the order sent (rounds are sequential; within a round a key is
// written once).
const sent = new Map<string, Version[]>();

// A deletion is recorded as a version with no content.
const DELETED = 'deleted';

function record(key: string, data: Buffer | typeof DELETED): Version {
  const v =
    data === DELETED
      ? { hash: DELETED, size: -1, acknowledged: false }
      : { hash: sha256(data), size: data.length, acknowledged: false };
  const list = sent.get(key) ?? [];
  list.push(v);
  sent.set(key, list);
  return v;
}

// The versions a key may show after a crash: the last acknowledged one or anything sent after it. It may
// be absent if no version was ever acknowledged, or if one of those is a deletion.
function allowed(key: string): { versions: Version[]; mayBeAbsent: boolean } {
  const list = sent.get(key) ?? [];
  let lastAck = -1;
  list.forEach((v, i) => {
    if (v.acknowledged) lastAck = i;
  });
  const versions = lastAck >= 0 ? list.slice(lastAck) : list;
  return { versions, mayBeAbsent: lastAck < 0 || versions.some((v) => v.hash === DELETED) };
}

async function deleteOne(client: S3Client, key: string): Promise<void> {
  const v = record(key, DELETED);
  await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  v.acknowledged = true;
}

async function putOne(client: S3Client, key: string, data: Buffer): Promise<void> {
  const v = record(key, data);
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: data }));
  v.acknowledged = true;
}

async function multipartOne(client: S3Client, key: string): Promise<void> {
  const parts = Array.from({ length: PARTS }, (_, i) => randomBytes(i === PARTS - 1 ? 1234567 : PART_SIZE));
  const v = record(key, Buffer.concat(parts));
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  const etags: string[] = [];
  for (let i = 0; i < PARTS; i++) {
    const out = await client.send(
      new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: parts[i] }),
    );
    etags.push(out.ETag!);
  }
  await client.send(
    new CompleteMultipartUploadCommand({
      Bucket: BUCKET,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }),
  );
  v.acknowledged = true;
}

async function verify(server: TestServer, round: number): Promise<void> {
  const client = noRetryClient(server);
  const listed = await listAllKeys(client, BUCKET);
  for (const [key, size] of listed) {
    assert.ok(sent.has(key), `round ${round}: listed key ${key} was never sent`);
    const { versions } = allowed(key);
    assert.ok(
      versions.some((v) => v.size === size),
      `round ${round}: ${key} is listed with size ${size}, not one of ${versions.map((v) => v.size).join(', ')}`,
    );
    const hash = sha256(await getBytes(client, BUCKET, key));
    assert.ok(
      versions.some((v) => v.hash === hash),
      `round ${round}: ${key} reads back as none of the versions that may be there`,
    );
  }
  for (const key of sent.keys()) {
    if (!allowed(key).mayBeAbsent)
      assert.ok(listed.has(key), `round ${round}: acknowledged ${key} is missing`);
  }
  client.destroy();
}

test('SIGKILL during concurrent uploads loses no acknowledged object and exposes no partial one', async (t) => {
  let server = await startServer();
  const dir = server.dir;
  t.after(async () => {
    await server.kill();
    server.cleanup();
  });
  const setup = server.client();
  await setup.send(new CreateBucketCommand({ Bucket: BUCKET }));
  setup.destroy();

  let acknowledgedTotal = 0;
  let interruptedTotal = 0;
  for (let round = 0; round < KILL_PLANS.length; round++) {
    const client = noRetryClient(server);
    const plan = KILL_PLANS[round]!;
    const ackTarget = randomInt(plan.afterAcks[0], plan.afterAcks[1] + 1);
    let acks = 0;
    let reachedTarget: () => void = () => undefined;
    const targetReached = new Promise<void>((r) => (reachedTarget = r));
    if (ackTarget === 0) reachedTarget();
    // Settled at once into booleans, so a rejection is never "unhandled" while the kill is awaited.
    const uploads: Promise<boolean>[] = [];
    const track = (p: Promise<void>) =>
      uploads.push(
        p.then(
          () => {
            if (++acks === ackTarget) reachedTarget();
            return true;
          },
          () => false,
        ),
      );
    const startAt = (n: number) => sleep(n * START_STAGGER_MS);
    for (let i = 0; i < CONCURRENT_PUTS; i++) {
      // Half the keys are new each round, half overwrite the same keys every round.
      const key = i % 2 === 0 ? `round${round}/obj${i}` : `shared/obj${i}`;
      const data = randomBytes(randomInt(1 * MiB, 8 * MiB + 1));
      track(startAt(i).then(() => putOne(client, key, data)));
    }
    // Deletes of objects acknowledged in earlier rounds, in flight with the uploads.
    const earlier = [...sent.keys()].filter((k) => k.startsWith('round') && !allowed(k).mayBeAbsent);
    for (let i = 0; i < 3 && earlier.length > 0; i++) {
      const key = earlier.splice(randomInt(earlier.length), 1)[0]!;
      track(startAt(i * 4).then(() => deleteOne(client, key)));
    }
    track(multipartOne(client, `round${round}/multipart`));
    track(multipartOne(client, 'shared/multipart'));

    await targetReached;
    await sleep(randomInt(plan.delayMs[0], plan.delayMs[1] + 1));
    await server.kill();
    const results = await Promise.all(uploads);
    const ok = results.filter(Boolean).length;
    acknowledgedTotal += ok;
    interruptedTotal += results.length - ok;
    t.diagnostic(`round ${round}: ${ok} of ${results.length} operations acknowledged before the kill`);
    client.destroy();

    server = await startServer({ dir });
    await verify(server, round);
  }
  t.diagnostic(
    `${acknowledgedTotal} acknowledged, ${interruptedTotal} interrupted over ${KILL_PLANS.length} rounds`,
  );
  // The test proves something only if some uploads were cut off and some completed.
  assert.ok(interruptedTotal > 0, 'no upload was in flight at any kill');
  assert.ok(acknowledgedTotal > 0, 'no upload completed before any kill');

  // The restarted server keeps serving writes, and once everything is deleted the blocks left behind by
  // interrupted writes are collected too (gc_delay_seconds = 1 in tests).
  const client = noRetryClient(server);
  const fresh = randomBytes(3 * MiB);
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'after-crash', Body: fresh }));
  assert.equal(sha256(await getBytes(client, BUCKET, 'after-crash')), sha256(fresh));
  for (const key of (await listAllKeys(client, BUCKET)).keys()) {
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  }
  // Unfinished multipart uploads still hold their parts; abort them through the listing.
  const { ListMultipartUploadsCommand, AbortMultipartUploadCommand } = await import('@aws-sdk/client-s3');
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
  for (const u of uploads.Uploads ?? []) {
    await client.send(
      new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: u.Key!, UploadId: u.UploadId! }),
    );
  }
  const dataDir = join(dir, 'data');
  const deadline = Date.now() + 15_000;
  while (bytesUnder(dataDir) > 0 && Date.now() < deadline) await sleep(250);
  assert.equal(bytesUnder(dataDir), 0, 'blocks and temporary files remain after deleting everything');
  client.destroy();
});

test('SIGKILL while the collector removes blocks leaves every live object readable', async (t) => {
  let server = await startServer();
  const dir = server.dir;
  t.after(async () => {
    await server.kill();
    server.cleanup();
  });
  let client = noRetryClient(server);
  const bucket = 'gc-crash';
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  // Pairs of objects with the same content share their blocks; deleting one of a pair must not take the
  // blocks of the other, whatever instant the collector is stopped at.
  const bodies = new Map<string, Buffer>();
  for (let i = 0; i < 8; i++) {
    const body = randomBytes(randomInt(1 * MiB, 3 * MiB));
    bodies.set(`pair${i}/a`, body);
    bodies.set(`pair${i}/b`, body);
    bodies.set(`single${i}`, randomBytes(randomInt(1 * MiB, 3 * MiB)));
  }
  for (const [key, body] of bodies)
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const deleted = new Set<string>();
  for (let i = 0; i < 8; i++) {
    for (const key of [`pair${i}/a`, `single${i}`]) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      deleted.add(key);
    }
  }
  // gc_delay_seconds = 1 and a pass every second: kill somewhere in the first passes.
  await sleep(randomInt(900, 2500));
  await server.kill();
  client.destroy();

  const verifyLive = async () => {
    const listed = await listAllKeys(client, bucket);
    for (const [key, body] of bodies) {
      if (deleted.has(key)) {
        assert.ok(!listed.has(key), `${key} was deleted but is listed`);
        continue;
      }
      assert.ok(listed.has(key), `${key} is missing`);
      assert.equal(sha256(await getBytes(client, bucket, key)), sha256(body), `${key} changed`);
    }
  };
  server = await startServer({ dir });
  client = noRetryClient(server);
  await verifyLive();
  // Once the collector has finished after the restart too, the survivors are still whole.
  await sleep(2500);
  await verifyLive();
  client.destroy();
});
