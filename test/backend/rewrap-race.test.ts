// A rewrap pass's copy of an object onto itself never undoes a client's PUT that landed between the pass's
// read of the object and its copy: the copy is conditional on the ETag read (x-amz-copy-source-if-match, and
// If-Match on the destination, which a coffre node checks as the copy commits). The race is forced: the pass
// stops before its copy (a test hook), the test overwrites the object, then lets the pass go on; it looks at
// the object again and finishes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { mustCli } from '../security/sse-s3-helpers.js';
import { startBackend, startGateway, until, type Gateway } from './gateway-helpers.js';

let hold: string;
let backend: Awaited<ReturnType<typeof startBackend>>;
let gateway: Gateway;

before(async () => {
  hold = await mkdtemp(join(tmpdir(), 'coffre-rewrap-hold-'));
  backend = await startBackend();
  gateway = await startGateway(backend.target, {
    server: {
      secretConfig: `rpc_secret = "${randomBytes(32).toString('hex')}"`,
      env: { COFFRE_GATEWAY_ANNOUNCE_MS: '300', COFFRE_REWRAP_HOLD_DIR: hold },
    },
  });
});

after(async () => {
  await gateway?.stop();
  backend?.client.destroy();
  await backend?.server.stop();
  backend?.server.cleanup();
  if (hold) await rm(hold, { recursive: true, force: true });
});

test('a PUT between the rewrap reading an object and copying it survives; the pass still finishes', async () => {
  const client = gateway.client;
  await client.send(new CreateBucketCommand({ Bucket: 'race' }));
  await client.send(new PutObjectCommand({ Bucket: 'race', Key: 'k', Body: randomBytes(5000) }));
  await mustCli(gateway.server, ['sse-s3', 'rotate', '--recipient', gateway.operator.publicFile]);
  await mustCli(gateway.server, ['sse-s3', 'rewrap', '--no-wait']);
  // The pass has read the object (under the old key) and waits before its copy.
  const key = await until(
    'the pass before its copy',
    async () => (await readFile(join(hold, 'ready'), 'utf8')) || undefined,
  );
  assert.match(key, /race\/k$/);
  const newer = randomBytes(7000);
  await client.send(new PutObjectCommand({ Bucket: 'race', Key: 'k', Body: newer }));
  await writeFile(join(hold, 'go'), '');
  const done = await until('the pass done', async () => {
    const p = JSON.parse(await mustCli(gateway.server, ['sse-s3', 'rewrap', '--status', '--json'])) as {
      state: string;
      failed: number;
      current: number;
      rewrapped: number;
    };
    return p.state === 'done' ? p : undefined;
  });
  // It looked again: the newer object is under the new key already.
  assert.equal(done.failed, 0);
  assert.equal(done.current, 1);
  assert.equal(done.rewrapped, 0);
  const got = await client.send(new GetObjectCommand({ Bucket: 'race', Key: 'k' }));
  assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), newer);
});

test('a coffre node refuses a copy whose destination If-Match no longer holds, and keeps the newer object', async () => {
  const direct = backend.client;
  await direct.send(new CreateBucketCommand({ Bucket: 'dest-if-match' }));
  await direct.send(new PutObjectCommand({ Bucket: 'dest-if-match', Key: 'o', Body: 'first' }));
  const read = await direct.send(new HeadObjectCommand({ Bucket: 'dest-if-match', Key: 'o' }));
  await direct.send(new PutObjectCommand({ Bucket: 'dest-if-match', Key: 'o', Body: 'second' }));
  const copy = (ifMatch: string) =>
    direct.send(
      new CopyObjectCommand({
        Bucket: 'dest-if-match',
        Key: 'o',
        CopySource: 'dest-if-match/o',
        MetadataDirective: 'REPLACE',
        Metadata: { m: '1' },
        IfMatch: ifMatch,
      }),
    );
  await rejects(() => copy(read.ETag!), 'PreconditionFailed', 412);
  const got = await direct.send(new GetObjectCommand({ Bucket: 'dest-if-match', Key: 'o' }));
  assert.equal(await got.Body!.transformToString(), 'second');
  // With the ETag of the object there now, the copy goes through.
  const now = await direct.send(new HeadObjectCommand({ Bucket: 'dest-if-match', Key: 'o' }));
  await copy(now.ETag!);
  const after = await direct.send(new HeadObjectCommand({ Bucket: 'dest-if-match', Key: 'o' }));
  assert.equal(after.Metadata?.m, '1');
});
