// Two gateways in front of one backend, with the same rpc_secret and nothing else shared but the backend (which
// holds the SSE-S3 keyring too: see docs/gateway.md): a key created through one works on the other within
// seconds, and stops as soon once deleted; a permission given on one holds on the other; an object written
// through one is read through the other, SSE-S3 and SSE-C alike.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';
import { customerKey, sseCParams } from '../security/ssec-helpers.js';
import { backendTable, startBackend, startGateway, type Gateway } from './gateway-helpers.js';

const rpcSecret = `rpc_secret = "${randomBytes(32).toString('hex')}"`;
let backend: Awaited<ReturnType<typeof startBackend>>;
let first: Gateway;
let second: TestServer;

before(async () => {
  backend = await startBackend();
  first = await startGateway(backend.target, { server: { secretConfig: rpcSecret } });
  // The second gateway: the same backend, prefix and rpc_secret; it reads the keyring the first made from the
  // backend, unlocked at start by the operator's key. It finds the access keys the first made, so it prints
  // none.
  second = await startServer({
    secretConfig: rpcSecret,
    extraConfig: `${backendTable(backend.target)}\n[sse_s3]\nunlock_key_file = "${first.operator.privateFile}"\n`,
    accessKey: { id: first.server.accessKeyId, secret: first.server.secretAccessKey },
  });
});

after(async () => {
  await second?.stop();
  second?.cleanup();
  await first?.stop();
  backend?.client.destroy();
  await backend?.server.stop();
  backend?.server.cleanup();
});

function clientOf(
  server: TestServer,
  credentials: { accessKeyId: string; secretAccessKey: string },
): S3Client {
  return new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
}

/** Waits (generously) until `check` stops throwing. */
async function eventually(check: () => Promise<void>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function text(out: { Body?: unknown }): Promise<string> {
  return (out.Body as { transformToString(): Promise<string> }).transformToString();
}

test('an object written through one gateway is read through the other', async () => {
  const a = first.client;
  const b = second.client();
  await a.send(new CreateBucketCommand({ Bucket: 'shared' }));
  await a.send(
    new PutObjectCommand({ Bucket: 'shared', Key: 'sse-s3.txt', Body: 'written through the first' }),
  );
  const key = customerKey();
  const ssec = sseCParams(key);
  await a.send(new PutObjectCommand({ Bucket: 'shared', Key: 'ssec.txt', Body: 'customer keyed', ...ssec }));
  assert.equal(
    await text(await b.send(new GetObjectCommand({ Bucket: 'shared', Key: 'sse-s3.txt' }))),
    'written through the first',
  );
  assert.equal(
    await text(await b.send(new GetObjectCommand({ Bucket: 'shared', Key: 'ssec.txt', ...ssec }))),
    'customer keyed',
  );
  const listed = await b.send(new ListObjectsV2Command({ Bucket: 'shared' }));
  assert.deepEqual(
    listed.Contents?.map((o) => o.Key),
    ['sse-s3.txt', 'ssec.txt'],
  );
  b.destroy();
});

test('a key created on one gateway works on the other within seconds, and stops once deleted', async () => {
  const made = await runCoffre(['key', 'create', 'bob', '--json', '--config', first.server.configPath]);
  assert.equal(made.code, 0, made.stderr);
  const bob = JSON.parse(made.stdout) as { accessKeyId: string; secretAccessKey: string };
  const onSecond = clientOf(second, bob);
  await eventually(async () => {
    await onSecond.send(new ListBucketsCommand({}));
  }, 'the new key works on the second gateway');
  // No permission on the bucket yet; given on the first, it holds on the second.
  await rejects(() => onSecond.send(new ListObjectsV2Command({ Bucket: 'shared' })), 'AccessDenied', 403);
  const allowed = await runCoffre([
    'bucket',
    'allow',
    'shared',
    '--key',
    bob.accessKeyId,
    '--read',
    '--config',
    first.server.configPath,
  ]);
  assert.equal(allowed.code, 0, allowed.stderr);
  await eventually(async () => {
    await onSecond.send(new ListObjectsV2Command({ Bucket: 'shared' }));
  }, 'the permission holds on the second gateway');
  const deleted = await runCoffre(['key', 'delete', bob.accessKeyId, '--config', first.server.configPath]);
  assert.equal(deleted.code, 0, deleted.stderr);
  await eventually(async () => {
    await rejects(() => onSecond.send(new ListBucketsCommand({})), 'InvalidAccessKeyId', 403);
  }, 'the deleted key stops on the second gateway');
  onSecond.destroy();
});

test('a gateway with another rpc_secret cannot open the records, and says so in one line at start', async () => {
  const refused = await startServer({ extraConfig: backendTable(backend.target) }).then(
    async (s) => {
      await s.stop();
      s.cleanup();
      return undefined;
    },
    (err: Error) => err,
  );
  assert.ok(refused, 'the start is refused');
  assert.match(refused.message, /exited with 1/);
  assert.match(refused.message, /gateways in front of one backend need the same rpc_secret/);
});
