// A storage node and a gateway node, separate processes on loopback, joined and given roles through the CLI.
// Through the gateway: the AWS SDK (buckets, objects, listing, multipart, copy, SSE-C) and the aws CLI; what one
// node writes the other reads; the gateway stores no blocks; status shows both nodes with their roles. Then the
// storage node is killed: the gateway answers 503 ServiceUnavailable at once, status shows the node down, and
// once the node is restarted requests work again with no manual reconnect.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { runCommand } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';
import { requireTools } from '../helpers/tools.js';
import { AWS_BIN, customerKey, walkFiles, sseCParams } from '../security/ssec-helpers.js';
import { operatorKey } from '../security/sse-s3-helpers.js';
import {
  blockFiles,
  clusterStatus,
  formCluster,
  newRpcSecret,
  s3Client,
  startNode,
  waitFor,
  type ClusterNode,
} from './cluster-helpers.js';

const MiB = 1024 * 1024;
const B = 'gateway-test';
let storage: ClusterNode;
let gateway: ClusterNode;
let viaGateway: S3Client;
let direct: S3Client;
let storageId: string;
let gatewayId: string;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const body = async (r: { Body?: unknown }) =>
  Buffer.from(await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());

before(async () => {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  storage = await startNode({ secretConfig: secret, label: 'storage' });
  gateway = await startNode({ secretConfig: secret, label: 'gateway' });
  await formCluster(storage, [
    { node: storage, zone: 'z1' },
    { node: gateway, zone: 'z1', gateway: true },
  ]);
  storageId = (await storage.id()).split('@')[0]!;
  gatewayId = (await gateway.id()).split('@')[0]!;
  // The access key lives in the metadata, which lives on the storage node.
  viaGateway = s3Client(gateway.endpoint, storage);
  direct = s3Client(storage.endpoint, storage);
  await viaGateway.send(new CreateBucketCommand({ Bucket: B }));
});

after(async () => {
  viaGateway?.destroy();
  direct?.destroy();
  for (const n of [gateway, storage]) {
    await n?.stop();
    n?.cleanup();
  }
});

test('node id is <64 hex>@<rpc address> and status shows both nodes up with their roles', async () => {
  assert.match(await storage.id(), new RegExp(`^[0-9a-f]{64}@127\\.0\\.0\\.1:${storage.rpcPort}$`));
  for (const from of [storage, gateway]) {
    const nodes = await clusterStatus(from);
    const s = nodes.find((n) => n.id === storageId);
    const g = nodes.find((n) => n.id === gatewayId);
    assert.ok(s && g, `both nodes listed by ${from.label}`);
    assert.deepEqual([s.up, s.role, s.zone, s.capacity], [true, 'storage', 'z1', 10_000_000_000]);
    assert.deepEqual([g.up, g.role, g.capacity], [true, 'gateway', null]);
  }
  const text = await gateway.cli(['status']);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /storage\s+z1\s+10 GB\s+up/);
});

test('SDK through the gateway: put, get, head, list, delete', async () => {
  const data = randomBytes(3 * MiB + 17);
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'a/big', Body: data }));
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'a/small', Body: 'hello gateway' }));
  assert.equal(
    sha(await body(await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'a/big' })))),
    sha(data),
  );
  const head = await viaGateway.send(new HeadObjectCommand({ Bucket: B, Key: 'a/big' }));
  assert.equal(head.ContentLength, data.length);
  const range = await viaGateway.send(
    new GetObjectCommand({ Bucket: B, Key: 'a/big', Range: 'bytes=1048570-1048580' }),
  );
  assert.deepEqual(await body(range), data.subarray(1048570, 1048581));
  const list = await viaGateway.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'a/' }));
  assert.deepEqual(
    list.Contents?.map((c) => c.Key),
    ['a/big', 'a/small'],
  );
  await viaGateway.send(new DeleteObjectCommand({ Bucket: B, Key: 'a/small' }));
  await assert.rejects(viaGateway.send(new HeadObjectCommand({ Bucket: B, Key: 'a/small' })), {
    name: 'NotFound',
  });
});

test('SDK through the gateway: multipart upload and copy', async () => {
  const parts = [randomBytes(5 * MiB), randomBytes(2 * MiB + 3)];
  const { UploadId } = await viaGateway.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'mp' }));
  const etags: string[] = [];
  for (const [i, p] of parts.entries()) {
    const r = await viaGateway.send(
      new UploadPartCommand({ Bucket: B, Key: 'mp', UploadId, PartNumber: i + 1, Body: p }),
    );
    etags.push(r.ETag!);
  }
  await viaGateway.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'mp',
      UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }),
  );
  const whole = Buffer.concat(parts);
  assert.equal(
    sha(await body(await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'mp' })))),
    sha(whole),
  );
  await viaGateway.send(new CopyObjectCommand({ Bucket: B, Key: 'mp-copy', CopySource: `${B}/mp` }));
  assert.equal(
    sha(await body(await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'mp-copy' })))),
    sha(whole),
  );
});

test('through the gateway: a repeated Complete answers as the first did; DeleteBucket aborts uploads in progress', async () => {
  const { UploadId } = await viaGateway.send(
    new CreateMultipartUploadCommand({ Bucket: B, Key: 'mp-again' }),
  );
  const { ETag } = await viaGateway.send(
    new UploadPartCommand({ Bucket: B, Key: 'mp-again', UploadId, PartNumber: 1, Body: randomBytes(3000) }),
  );
  const completion = () =>
    viaGateway.send(
      new CompleteMultipartUploadCommand({
        Bucket: B,
        Key: 'mp-again',
        UploadId,
        MultipartUpload: { Parts: [{ ETag, PartNumber: 1 }] },
      }),
    );
  const first = await completion();
  const again = await completion();
  assert.deepEqual(
    [again.ETag, again.Location, again.Bucket, again.Key],
    [first.ETag, first.Location, first.Bucket, first.Key],
  );
  await viaGateway.send(new DeleteObjectCommand({ Bucket: B, Key: 'mp-again' }));
  await rejects(completion, 'NoSuchUpload', 404);

  const bucket = 'gateway-uploads-only';
  await viaGateway.send(new CreateBucketCommand({ Bucket: bucket }));
  const pending = await viaGateway.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'p' }));
  await viaGateway.send(
    new UploadPartCommand({
      Bucket: bucket,
      Key: 'p',
      UploadId: pending.UploadId,
      PartNumber: 1,
      Body: randomBytes(100_000),
    }),
  );
  await viaGateway.send(new DeleteBucketCommand({ Bucket: bucket }));
  await rejects(() => direct.send(new HeadBucketCommand({ Bucket: bucket })), 'NotFound', 404);
});

test('SSE-C through the gateway: put, get, range; a wrong key or no key is refused', async () => {
  const key = customerKey();
  const other = customerKey();
  const ssec = (k = key) => ({
    SSECustomerAlgorithm: 'AES256',
    SSECustomerKey: k.b64,
    SSECustomerKeyMD5: k.md5,
  });
  const data = randomBytes(2 * MiB + 100);
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'secret', Body: data, ...ssec() }));
  const got = await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'secret', ...ssec() }));
  assert.equal(got.SSECustomerAlgorithm, 'AES256');
  assert.equal(sha(await body(got)), sha(data));
  const part = await viaGateway.send(
    new GetObjectCommand({ Bucket: B, Key: 'secret', Range: 'bytes=65530-131080', ...ssec() }),
  );
  assert.deepEqual(await body(part), data.subarray(65530, 131081));
  await assert.rejects(
    viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'secret', ...ssec(other) })),
    (e: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(e.$metadata?.httpStatusCode, 403);
      return true;
    },
  );
  await assert.rejects(
    viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'secret' })),
    (e: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(e.$metadata?.httpStatusCode, 400);
      return true;
    },
  );
  // The storage node reads it with the key too: the object is one object, wherever it is asked for.
  assert.equal(
    sha(await body(await direct.send(new GetObjectCommand({ Bucket: B, Key: 'secret', ...ssec() })))),
    sha(data),
  );
});

test('SSE-S3 through the gateway: the gateway holds the master key; the storage node holds none, nor plaintext', async () => {
  const operator = await operatorKey('gateway-operator');
  try {
    const init = await gateway.cli(['sse-s3', 'init', '--recipient', operator.publicFile]);
    assert.equal(init.code, 0, init.stderr);
    const marker = `sse-s3-through-gateway-${randomBytes(8).toString('hex')}`;
    const data = Buffer.concat([Buffer.from(marker), randomBytes(2 * MiB)]);
    const small = Buffer.from(`${marker} inline`);
    await viaGateway.send(
      new PutObjectCommand({ Bucket: B, Key: 'sse-s3', Body: data, ServerSideEncryption: 'AES256' }),
    );
    await viaGateway.send(
      new PutObjectCommand({ Bucket: B, Key: 'sse-s3-small', Body: small, ServerSideEncryption: 'AES256' }),
    );
    const got = await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'sse-s3' }));
    assert.equal(got.ServerSideEncryption, 'AES256');
    assert.equal(sha(await body(got)), sha(data));
    // The storage node has no keyring: asked directly, it cannot open the object.
    await assert.rejects(
      direct.send(new GetObjectCommand({ Bucket: B, Key: 'sse-s3' })),
      (e: Error & { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode === 501,
    );
    const storageFiles = walkFiles(storage.dir);
    assert.ok(!storageFiles.some((f) => f.endsWith('sse_s3_keyring.json')));
    for (const file of storageFiles) {
      assert.ok(!readFileSync(file).includes(Buffer.from(marker)), `${file} holds plaintext`);
    }
  } finally {
    rmSync(operator.dir, { recursive: true, force: true });
  }
});

test('an upload through the gateway that outlasts gc_delay_seconds keeps its blocks', async () => {
  // Blocks reach the storage node before the record that refers to them: its collector (gc_delay_seconds = 1
  // here) must not take them for strays while the upload goes on.
  const pieces = Array.from({ length: 6 }, () => randomBytes(MiB));
  async function* slowly() {
    for (const p of pieces) {
      yield p;
      await new Promise((r) => setTimeout(r, 700));
    }
  }
  await viaGateway.send(
    new PutObjectCommand({ Bucket: B, Key: 'slow', Body: Readable.from(slowly()), ContentLength: 6 * MiB }),
  );
  await new Promise((r) => setTimeout(r, 1500)); // a collection pass after the commit, too
  const got = await body(await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'slow' })));
  assert.equal(sha(got), sha(Buffer.concat(pieces)));
});

test('an upload through the gateway that stores a block again just as its last reference is collected keeps it', async () => {
  // The same 3 MiB are uploaded, deleted, and uploaded again through the gateway. The new upload's first blocks
  // reach the storage node (already there: nothing is written) before the collector (gc_delay_seconds = 1)
  // removes the deleted object's blocks, and its record commits after: the storage node must keep them.
  const pieces = Array.from({ length: 3 }, () => randomBytes(MiB));
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'again/1', Body: Buffer.concat(pieces) }));
  await viaGateway.send(new DeleteObjectCommand({ Bucket: B, Key: 'again/1' }));
  async function* pausing() {
    yield pieces[0]!;
    yield pieces[1]!;
    // Two blocks stored; the collector runs meanwhile, its delay over.
    await new Promise((r) => setTimeout(r, 3000));
    yield pieces[2]!;
  }
  await viaGateway.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'again/2',
      Body: Readable.from(pausing()),
      ContentLength: 3 * MiB,
    }),
  );
  await new Promise((r) => setTimeout(r, 1500)); // and a pass after the commit
  const got = await body(await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'again/2' })));
  assert.equal(sha(got), sha(Buffer.concat(pieces)));
});

test('an upload through the gateway whose blocks were collected before it committed fails with a 503, and stores nothing', async () => {
  // This time the second upload stores its first blocks (already there: nothing is written) before the first
  // object is deleted, so the collector removes them while the upload pauses. Its commit must be refused: the
  // client retries, rather than getting an object whose blocks are gone.
  const pieces = Array.from({ length: 3 }, () => randomBytes(MiB));
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'early/1', Body: Buffer.concat(pieces) }));
  let resume!: () => void;
  const resumed = new Promise<void>((r) => (resume = r));
  async function* pausing() {
    yield pieces[0]!;
    yield pieces[1]!;
    await resumed;
    yield pieces[2]!;
  }
  const upload = viaGateway.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'early/2',
      Body: Readable.from(pausing()),
      ContentLength: 3 * MiB,
    }),
  );
  await new Promise((r) => setTimeout(r, 800)); // the first two blocks reach the storage node
  await viaGateway.send(new DeleteObjectCommand({ Bucket: B, Key: 'early/1' }));
  await new Promise((r) => setTimeout(r, 3000)); // collected (gc_delay_seconds = 1)
  resume();
  await assert.rejects(upload, (err: { $metadata?: { httpStatusCode?: number }; message?: string }) => {
    assert.equal(err.$metadata?.httpStatusCode, 503, err.message);
    return true;
  });
  await assert.rejects(viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'early/2' })), {
    name: 'NoSuchKey',
  });
  // Sent again, it is stored whole.
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'early/2', Body: Buffer.concat(pieces) }));
  const got = await body(await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'early/2' })));
  assert.equal(sha(got), sha(Buffer.concat(pieces)));
});

test('what one node writes the other reads, under the same key', async () => {
  const a = randomBytes(1.5 * MiB);
  const b = randomBytes(1.5 * MiB);
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'x/from-gateway', Body: a }));
  await direct.send(new PutObjectCommand({ Bucket: B, Key: 'x/from-storage', Body: b }));
  assert.equal(
    sha(await body(await direct.send(new GetObjectCommand({ Bucket: B, Key: 'x/from-gateway' })))),
    sha(a),
  );
  assert.equal(
    sha(await body(await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'x/from-storage' })))),
    sha(b),
  );
});

test('aws CLI through the gateway: cp up, ls, cp down', async (t) => {
  if (!requireTools(t, 'aws')) return;
  const home = mkdtempSync(join(tmpdir(), 'coffre-awscli-'));
  try {
    const env = {
      HOME: home,
      AWS_ACCESS_KEY_ID: storage.accessKeyId,
      AWS_SECRET_ACCESS_KEY: storage.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_CONFIG_FILE: join(home, 'none'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'none'),
      AWS_PAGER: '',
    };
    const aws = (...args: string[]) =>
      runCommand(AWS_BIN, ['--endpoint-url', gateway.endpoint, ...args], env);
    const src = join(home, 'up.bin');
    const data = randomBytes(9 * MiB); // above the CLI's 8 MiB threshold: a multipart upload
    writeFileSync(src, data);
    const up = await aws('s3', 'cp', src, `s3://${B}/cli/up.bin`);
    assert.equal(up.code, 0, up.stderr);
    const ls = await aws('s3', 'ls', `s3://${B}/cli/`);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, new RegExp(`${data.length}\\s+up\\.bin`));
    const down = await aws('s3', 'cp', `s3://${B}/cli/up.bin`, join(home, 'down.bin'));
    assert.equal(down.code, 0, down.stderr);
    assert.equal(sha(readFileSync(join(home, 'down.bin'))), sha(data));
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('a damaged block on the storage node is never served through the gateway, plaintext or SSE-C', async () => {
  const key = customerKey();
  const ssec = sseCParams(key);
  const cases: [string, Record<string, string>][] = [
    ['plain', {}],
    ['sse-c', ssec],
  ];
  for (const [name, headers] of cases) {
    // Whole blocks, so that every block is its own file; the damage goes into each of this object's blocks.
    const data = randomBytes(3 * MiB);
    const before = new Set(blockFiles(storage));
    await viaGateway.send(
      new PutObjectCommand({ Bucket: B, Key: `damaged-${name}`, Body: data, ...headers }),
    );
    const added = blockFiles(storage).filter((f) => !before.has(f));
    assert.equal(added.length, 3, `${name}: blocks written`);
    for (const file of added) {
      const b = readFileSync(file);
      b[b.length >> 1] ^= 0x40;
      writeFileSync(file, b);
    }
    let failure: (Error & { $metadata?: { httpStatusCode?: number } }) | undefined;
    let got: Buffer | undefined;
    try {
      got = await body(
        await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: `damaged-${name}`, ...headers })),
      );
    } catch (err) {
      failure = err as typeof failure;
    }
    // The first block fails its check (on the gateway for plaintext, on the storage node for SSE-C, where
    // AES-GCM would also catch it) before anything is sent: a proper S3 error, never the damaged bytes.
    assert.equal(got, undefined, `${name}: the damaged object was served`);
    assert.equal(failure?.$metadata?.httpStatusCode, 500, `${name}: ${String(failure)}`);
  }
  const healthy = randomBytes(MiB + 1);
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'healthy-after-damage', Body: healthy }));
  const back = await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'healthy-after-damage' }));
  assert.equal(sha(await body(back)), sha(healthy));
});

test("the gateway's data dir holds no blocks; the storage node's does", () => {
  assert.deepEqual(blockFiles(gateway), []);
  assert.ok(blockFiles(storage).length >= 10, `storage holds ${blockFiles(storage).length} blocks`);
});

test('a killed storage node: 503 from the gateway at once, status shows it down; restarted, it all works again', async () => {
  await storage.kill();
  const started = Date.now();
  await assert.rejects(
    viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'x/from-storage' })),
    (e: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(e.name, 'ServiceUnavailable');
      assert.equal(e.$metadata?.httpStatusCode, 503);
      return true;
    },
  );
  await assert.rejects(viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'during', Body: 'x' })), {
    name: 'ServiceUnavailable',
  });
  assert.ok(Date.now() - started < 5000, `refusals took ${Date.now() - started} ms`);
  await waitFor(
    async () => !(await clusterStatus(gateway)).find((n) => n.id === storageId)!.up,
    'status shows the storage node down',
  );

  await storage.start();
  await waitFor(
    async () => (await clusterStatus(gateway)).find((n) => n.id === storageId)!.up,
    'the gateway sees the storage node up again',
    30_000,
  );
  const back = await viaGateway.send(new GetObjectCommand({ Bucket: B, Key: 'x/from-storage' }));
  assert.equal((await body(back)).length, 1.5 * MiB);
  await viaGateway.send(new PutObjectCommand({ Bucket: B, Key: 'after', Body: 'back' }));
  assert.equal(
    (await body(await direct.send(new GetObjectCommand({ Bucket: B, Key: 'after' })))).toString(),
    'back',
  );
});
