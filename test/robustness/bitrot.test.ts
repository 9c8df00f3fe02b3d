// Every block is checked against its hash when read through S3: a flipped byte or a truncated or missing
// block file makes the read fail (an error status before the body, or a cut connection mid-body), never a
// complete 200 response with wrong bytes, and the server keeps serving other objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startServer } from '../helpers/server.js';
import { MiB, getBytes, noRetryClient, sha256 } from './s3-util.js';

const BUCKET = 'bitrot';
const BLOCK = MiB; // the server's default block_size

function blockPath(dataDir: string, block: Buffer): string {
  const hash = sha256(block);
  return join(dataDir, hash.slice(0, 2), hash.slice(2, 4), hash);
}

test('damaged blocks are never served as good data', async (t) => {
  const server = await startServer();
  t.after(async () => {
    await server.kill();
    server.cleanup();
  });
  const client = noRetryClient(server);
  const dataDir = join(server.dir, 'data');
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const healthy = randomBytes(2 * BLOCK);
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'healthy', Body: healthy }));

  const damages: [string, (path: string) => void][] = [
    [
      'a flipped byte',
      (p) => {
        const b = readFileSync(p);
        b[b.length >> 1] ^= 0x40;
        writeFileSync(p, b);
      },
    ],
    ['a truncated file', (p) => writeFileSync(p, readFileSync(p).subarray(0, 1000))],
    ['a missing file', (p) => rmSync(p)],
  ];
  for (const [what, damage] of damages) {
    for (const blockIndex of [0, 2]) {
      const key = `damaged-${what.replace(/ /g, '-')}-${blockIndex}`;
      // A tail longer than 1/16 block gets a block of its own, so the first three blocks are whole MiBs.
      const body = randomBytes(3 * BLOCK + 100_000);
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
      damage(blockPath(dataDir, body.subarray(blockIndex * BLOCK, (blockIndex + 1) * BLOCK)));
      let got: Buffer | undefined;
      let failure: unknown;
      try {
        got = await getBytes(client, BUCKET, key);
      } catch (err) {
        failure = err;
      }
      assert.ok(
        failure !== undefined || (got !== undefined && got.length !== body.length),
        `${what} in block ${blockIndex}: the read succeeded`,
      );
      if (got) assert.notEqual(sha256(got), sha256(body));
      // Damage in the first block is found before anything is sent: a proper S3 error.
      if (blockIndex === 0) {
        const status = (failure as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        assert.equal(status, 500, `${what} in block 0: ${String(failure)}`);
      }
      assert.equal(
        sha256(await getBytes(client, BUCKET, 'healthy')),
        sha256(healthy),
        'server stopped serving',
      );
    }
  }
  client.destroy();
});
