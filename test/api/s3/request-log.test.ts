// What an operator reads: at info, one line per S3 request — method, bucket, key, status, bytes in and out,
// duration, request id, and for a refusal its code and reason — start and shutdown lines, and at start a
// warning, saying what to run, when the SSE-S3 keyring is locked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { rejects } from '../../helpers/s3.js';
import { startServer } from '../../helpers/server.js';
import { waitFor } from '../../cluster/cluster-helpers.js';
import { mustCli, operatorKey } from '../../security/sse-s3-helpers.js';

interface RequestLine {
  msg: string;
  requestId: string;
  method: string;
  bucket?: string;
  key?: string;
  status: number;
  bytesIn?: number;
  bytesOut: number;
  ms: number;
  error?: string;
  reason?: string;
}

function jsonLines(out: string): Record<string, unknown>[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('one line per request with its status, bytes, duration and, for a refusal, the reason', async (t) => {
  const server = await startServer();
  t.after(() => server.cleanup());
  const s3 = server.client();
  t.after(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'logged' }));
  const body = Buffer.alloc(100_000, 7);
  await s3.send(new PutObjectCommand({ Bucket: 'logged', Key: 'dir/object.bin', Body: body }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'logged', Key: 'dir/object.bin' }));
  assert.equal((await got.Body!.transformToByteArray()).length, body.length);
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: 'logged', Key: 'missing' })), 'NoSuchKey', 404);
  await server.stop();

  const lines = jsonLines(server.stderr());
  const requests = lines.filter((l) => l.msg === 's3 request') as unknown as RequestLine[];
  const put = requests.find((r) => r.method === 'PUT' && r.key === 'dir/object.bin');
  assert.ok(put, `no line for the PUT:\n${server.stderr()}`);
  assert.equal(put.bucket, 'logged');
  assert.equal(put.status, 200);
  assert.equal(put.bytesIn, body.length);
  assert.match(put.requestId, /^[0-9A-F]{16}$/);
  assert.ok(Number.isInteger(put.ms) && put.ms >= 0);
  const get = requests.find((r) => r.method === 'GET' && r.key === 'dir/object.bin');
  assert.ok(get && get.status === 200 && get.bytesOut >= body.length, JSON.stringify(get));
  const missing = requests.find((r) => r.key === 'missing');
  assert.ok(missing, 'no line for the refused GET');
  assert.equal(missing.status, 404);
  assert.equal(missing.error, 'NoSuchKey');
  assert.match(missing.reason ?? '', /does not exist/);
  // Every request was logged once, and start and shutdown are said.
  assert.equal(new Set(requests.map((r) => r.requestId)).size, requests.length);
  for (const msg of ['coffre node started', 'coffre node stopping', 'coffre node stopped'])
    assert.ok(
      lines.some((l) => l.msg === msg),
      `no "${msg}" line`,
    );
  // No credential appears in any line.
  assert.ok(!server.stderr().includes(server.secretAccessKey));
});

test('a node that starts with its SSE-S3 keyring locked warns and says what to run', async (t) => {
  const operator = await operatorKey('log-reader');
  let server = await startServer();
  t.after(() => server.cleanup());
  await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  await server.stop();
  assert.doesNotMatch(server.stderr(), /keyring is locked/);
  server = await startServer({ dir: server.dir });
  // Written at start: looked for while the node runs, so a line still on its way is not taken for a missing one.
  const restarted = server;
  await waitFor(
    async () => /keyring is locked/.test(restarted.stderr()),
    'the locked-keyring warning is logged',
  );
  await server.stop();
  const warning = jsonLines(server.stderr()).find((l) => /keyring is locked/.test(String(l.msg)));
  assert.ok(warning, `no warning:\n${server.stderr()}`);
  assert.equal(warning.level, 40);
  assert.match(String(warning.msg), /coffre sse-s3 unlock/);
});
