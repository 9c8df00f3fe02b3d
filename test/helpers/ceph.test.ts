// The Ceph RGW helper starts a real cluster that the AWS SDK can write to and read from, and leaves nothing
// running once stopped.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { cephOrSkip, startCeph } from './ceph.js';

test('a Ceph RGW started by the helper stores and returns an object, and is gone once stopped', async (t) => {
  const ceph = await cephOrSkip(t, () => startCeph());
  if (!ceph) return;
  const client = ceph.client();
  try {
    assert.match(ceph.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    await client.send(new CreateBucketCommand({ Bucket: 'helper' }));
    const body = Buffer.from('stored by a real Ceph RGW\n');
    await client.send(new PutObjectCommand({ Bucket: 'helper', Key: 'a/b.txt', Body: body }));
    const got = await client.send(new GetObjectCommand({ Bucket: 'helper', Key: 'a/b.txt' }));
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body);
  } finally {
    client.destroy();
    await ceph.stop();
  }
  for (const pid of Object.values(ceph.pids)) {
    assert.ok(
      !existsSync(`/proc/${pid}`) || /State:\s+Z/.test(readStatus(pid)),
      `daemon ${pid} still running`,
    );
  }
  assert.ok(!existsSync(ceph.dir), 'the cluster directory is removed');
});

function readStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return 'State: gone';
  }
}
