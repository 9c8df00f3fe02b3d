// CopyObject, UploadPartCopy and object tags through a gateway (its backend here another coffre node): copies
// are sealed anew under their own keys, a copy onto itself that changes metadata is the backend's own
// server-side copy (its bytes never cross the gateway), SSE-C sources and destinations take their own keys,
// tags are kept sealed; and a hostile copy source (path tricks, another user's bucket, a wrong key) is
// refused as coffre's own store refuses it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectTaggingCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { rejects } from '../helpers/s3.js';
import { runCoffre } from '../helpers/server.js';
import { customerKey, type CustomerKey, sseCParams } from '../security/ssec-helpers.js';
import { bodyOf, gatewayForFile, type Backend, type Gateway } from './gateway-helpers.js';

const MiB = 1024 * 1024;
const B = 'copies';

let backend: Backend;
let gateway: Gateway;
let s3: S3Client;

gatewayForFile((started) => ({ backend, gateway, s3 } = started), { buckets: [B] });

const body = bodyOf;

async function read(key: string, extra: Record<string, string> = {}): Promise<Buffer> {
  return body(await s3.send(new GetObjectCommand({ Bucket: B, Key: key, ...extra })));
}

function ssec(key: CustomerKey) {
  return sseCParams(key);
}

function copySsec(key: CustomerKey) {
  return {
    CopySourceSSECustomerAlgorithm: 'AES256',
    CopySourceSSECustomerKey: key.b64,
    CopySourceSSECustomerKeyMD5: key.md5,
  };
}

/** Every backend object's body, read with the backend's own credentials. */
async function backendBodies(): Promise<Buffer[]> {
  const listed = await backend.client.send(new ListObjectsV2Command({ Bucket: backend.target.bucket }));
  return Promise.all(
    (listed.Contents ?? []).map(async (item) =>
      body(await backend.client.send(new GetObjectCommand({ Bucket: backend.target.bucket, Key: item.Key }))),
    ),
  );
}

/**
 * The operations the backend logged for its object `key` of coffre bucket B after `from` characters of its
 * log, once `expected` is among them (a log line may be written just after its answer), or after 20 s.
 */
async function backendOperations(key: string, from: number, expected: string): Promise<string[]> {
  const stored = `coffre/${B}/${key}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ops = backend.server
      .stderr()
      .slice(from)
      .split('\n')
      .filter((line) => line.includes(`"key":${JSON.stringify(stored)}`))
      .map((line) => /"operation":"(\w+)"/.exec(line)?.[1] ?? '?');
    if (ops.includes(expected) || Date.now() > deadline) return ops;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('CopyObject: another key and another bucket, metadata copied or replaced, sealed anew', async () => {
  const data = randomBytes(200_000);
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'src.bin',
      Body: data,
      ContentType: 'application/x-src',
      Metadata: { colour: 'blue' },
    }),
  );
  const copied = await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'dst/copied.bin', CopySource: `${B}/src.bin` }),
  );
  assert.match(copied.CopyObjectResult!.ETag!, /^"[0-9a-f]{32}-1"$/);
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'dst/copied.bin' }));
  assert.equal(head.ETag, copied.CopyObjectResult!.ETag, 'the copy ETag is the one HEAD gives');
  assert.equal(head.ContentLength, data.length);
  assert.equal(head.ContentType, 'application/x-src');
  assert.deepEqual(head.Metadata, { colour: 'blue' });
  assert.ok((await read('dst/copied.bin')).equals(data));

  await s3.send(new CreateBucketCommand({ Bucket: 'elsewhere' }));
  await s3.send(
    new CopyObjectCommand({
      Bucket: 'elsewhere',
      Key: 'replaced.bin',
      CopySource: `${B}/src.bin`,
      MetadataDirective: 'REPLACE',
      ContentType: 'text/plain',
      Metadata: { shape: 'round' },
    }),
  );
  const other = await s3.send(new GetObjectCommand({ Bucket: 'elsewhere', Key: 'replaced.bin' }));
  assert.equal(other.ContentType, 'text/plain');
  assert.deepEqual(other.Metadata, { shape: 'round' });
  assert.ok((await body(other)).equals(data));
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'elsewhere' }));
  assert.equal(listed.Contents?.[0]?.Size, data.length, 'the listing shows the plaintext size');

  // Nothing of the plaintext reaches the backend, whichever way it was written.
  const needle = data.subarray(1000, 1032);
  for (const stored of await backendBodies()) assert.ok(!stored.includes(needle), 'no plaintext');
});

test('a copy onto itself that changes metadata is a server-side copy in the backend, ETag kept', async () => {
  const data = randomBytes(300_000);
  const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: 'self.bin', Body: data }));
  // The backend may log the PUT just after answering it: counted from once it has.
  await backendOperations('self.bin', 0, 'PutObject');
  const from = backend.server.stderr().length;
  const copied = await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'self.bin',
      CopySource: `${B}/self.bin`,
      MetadataDirective: 'REPLACE',
      Metadata: { mtime: '1700000000' },
      ContentType: 'application/x-new',
    }),
  );
  assert.equal(copied.CopyObjectResult!.ETag, put.ETag, 'the same bytes keep their ETag');
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'self.bin' }));
  assert.deepEqual(got.Metadata, { mtime: '1700000000' });
  assert.equal(got.ContentType, 'application/x-new');
  assert.ok((await body(got)).equals(data));
  // The backend copied the object onto itself; the gateway sent it no data.
  const ops = await backendOperations('self.bin', from, 'CopyObject');
  assert.ok(
    ops.includes('CopyObject'),
    `backend operations: ${ops.join(', ')}; log: ${backend.server.stderr().slice(-1500)}`,
  );
  assert.ok(
    !ops.includes('PutObject') && !ops.includes('UploadPart'),
    `backend operations: ${ops.join(', ')}`,
  );
});

test('a multipart object copies whole; UploadPartCopy takes ranges of it', async () => {
  const data = randomBytes(11 * MiB + 5);
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'mp.bin' }));
  const parts = [];
  for (let i = 0, n = 1; i < data.length; i += 5 * MiB, n++) {
    const part = await s3.send(
      new UploadPartCommand({
        Bucket: B,
        Key: 'mp.bin',
        UploadId,
        PartNumber: n,
        Body: data.subarray(i, i + 5 * MiB),
      }),
    );
    parts.push({ PartNumber: n, ETag: part.ETag });
  }
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'mp.bin',
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
  await s3.send(new CopyObjectCommand({ Bucket: B, Key: 'mp-copy.bin', CopySource: `${B}/mp.bin` }));
  assert.ok((await read('mp-copy.bin')).equals(data));
  // A multipart object copied onto itself is sealed anew as one stream, and reads the same.
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'mp.bin',
      CopySource: `${B}/mp.bin`,
      MetadataDirective: 'REPLACE',
      Metadata: { again: 'yes' },
    }),
  );
  const again = await s3.send(
    new GetObjectCommand({ Bucket: B, Key: 'mp.bin', Range: 'bytes=5242870-5242889' }),
  );
  assert.ok((await body(again)).equals(data.subarray(5242870, 5242890)));

  // Parts copied from ranges that straddle the source's parts.
  const up = await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'ranged.bin' }));
  const cuts = [
    [3, 6 * MiB + 2],
    [6 * MiB + 3, 11 * MiB],
  ] as const;
  const copiedParts = [];
  for (const [i, [first, last]] of cuts.entries()) {
    const part = await s3.send(
      new UploadPartCopyCommand({
        Bucket: B,
        Key: 'ranged.bin',
        UploadId: up.UploadId,
        PartNumber: i + 1,
        CopySource: `${B}/mp-copy.bin`,
        CopySourceRange: `bytes=${first}-${last}`,
      }),
    );
    copiedParts.push({ PartNumber: i + 1, ETag: part.CopyPartResult!.ETag });
  }
  await rejects(
    () =>
      s3.send(
        new UploadPartCopyCommand({
          Bucket: B,
          Key: 'ranged.bin',
          UploadId: up.UploadId,
          PartNumber: 3,
          CopySource: `${B}/mp-copy.bin`,
          CopySourceRange: `bytes=0-${data.length}`,
        }),
      ),
    'InvalidRange',
    416,
  );
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'ranged.bin',
      UploadId: up.UploadId,
      MultipartUpload: { Parts: copiedParts },
    }),
  );
  const expected = Buffer.concat(cuts.map(([first, last]) => data.subarray(first, last + 1)));
  assert.ok((await read('ranged.bin')).equals(expected));
});

test('SSE-C: the source key opens the source, the destination key seals the copy', async () => {
  const a = customerKey();
  const b = customerKey();
  const data = randomBytes(100_000);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'secret.bin', Body: data, ...ssec(a) }));
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'secret-b.bin',
      CopySource: `${B}/secret.bin`,
      ...copySsec(a),
      ...ssec(b),
    }),
  );
  assert.ok((await read('secret-b.bin', ssec(b))).equals(data));
  await rejects(() => read('secret-b.bin', ssec(a)), 'AccessDenied', 403);
  // Without the source's key, or with another, nothing is copied.
  await rejects(
    () => s3.send(new CopyObjectCommand({ Bucket: B, Key: 'nokey.bin', CopySource: `${B}/secret.bin` })),
    'InvalidRequest',
    400,
  );
  await rejects(
    () =>
      s3.send(
        new CopyObjectCommand({ Bucket: B, Key: 'wrong.bin', CopySource: `${B}/secret.bin`, ...copySsec(b) }),
      ),
    'AccessDenied',
    403,
  );
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'wrong.bin' })), 'NotFound', 404);
  // The same key onto itself with new metadata: a server-side copy; a new key onto itself: sealed anew.
  const from = backend.server.stderr().length;
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'secret.bin',
      CopySource: `${B}/secret.bin`,
      MetadataDirective: 'REPLACE',
      Metadata: { note: 'same key' },
      ...copySsec(a),
      ...ssec(a),
    }),
  );
  assert.ok((await backendOperations('secret.bin', from, 'CopyObject')).includes('CopyObject'));
  const same = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'secret.bin', ...ssec(a) }));
  assert.deepEqual(same.Metadata, { note: 'same key' });
  assert.ok((await body(same)).equals(data));
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'secret.bin',
      CopySource: `${B}/secret.bin`,
      ...copySsec(a),
      ...ssec(b),
    }),
  );
  assert.ok((await read('secret.bin', ssec(b))).equals(data));
  await rejects(() => read('secret.bin', ssec(a)), 'AccessDenied', 403);
  // An SSE-C source copied into an SSE-S3 object, read without a key.
  await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'managed.bin', CopySource: `${B}/secret.bin`, ...copySsec(b) }),
  );
  assert.ok((await read('managed.bin')).equals(data));
  // The customer keys never reach the backend.
  for (const stored of await backendBodies())
    for (const k of [a, b]) assert.ok(!stored.includes(k.raw) && !stored.includes(Buffer.from(k.b64)));
});

test('tags: on PUT, on CreateMultipartUpload, Put/Get/DeleteObjectTagging, copied or replaced; sealed', async () => {
  await s3.send(
    new PutObjectCommand({ Bucket: B, Key: 'tagged.txt', Body: 'x', Tagging: 'project=zebra&stage=draft' }),
  );
  const tagsOf = async (key: string) =>
    (await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: key }))).TagSet?.map(
      (t) => `${t.Key}=${t.Value}`,
    );
  assert.deepEqual(await tagsOf('tagged.txt'), ['project=zebra', 'stage=draft']);
  await s3.send(
    new PutObjectTaggingCommand({
      Bucket: B,
      Key: 'tagged.txt',
      Tagging: { TagSet: [{ Key: 'stage', Value: 'final' }] },
    }),
  );
  assert.deepEqual(await tagsOf('tagged.txt'), ['stage=final']);
  await s3.send(new CopyObjectCommand({ Bucket: B, Key: 'tag-copy.txt', CopySource: `${B}/tagged.txt` }));
  assert.deepEqual(await tagsOf('tag-copy.txt'), ['stage=final']);
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'tag-replaced.txt',
      CopySource: `${B}/tagged.txt`,
      TaggingDirective: 'REPLACE',
      Tagging: 'other=one',
    }),
  );
  assert.deepEqual(await tagsOf('tag-replaced.txt'), ['other=one']);
  await s3.send(new DeleteObjectTaggingCommand({ Bucket: B, Key: 'tagged.txt' }));
  assert.deepEqual(await tagsOf('tagged.txt'), []);
  // An overwritten object does not inherit its predecessor's tags.
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'tag-copy.txt', Body: 'new' }));
  assert.deepEqual(await tagsOf('tag-copy.txt'), []);

  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: B, Key: 'tagged-mp.bin', Tagging: 'via=multipart' }),
  );
  const part = await s3.send(
    new UploadPartCommand({ Bucket: B, Key: 'tagged-mp.bin', UploadId, PartNumber: 1, Body: 'part' }),
  );
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'tagged-mp.bin',
      UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
    }),
  );
  assert.deepEqual(await tagsOf('tagged-mp.bin'), ['via=multipart']);
  await rejects(
    () => s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: 'no-such-object' })),
    'NoSuchKey',
    404,
  );
  await rejects(
    () =>
      s3.send(
        new PutObjectTaggingCommand({
          Bucket: B,
          Key: 'no-such-object',
          Tagging: { TagSet: [{ Key: 'a', Value: 'b' }] },
        }),
      ),
    'NoSuchKey',
    404,
  );
  for (const stored of await backendBodies())
    for (const word of ['zebra', 'multipart', 'other=one'])
      assert.ok(!stored.includes(Buffer.from(word)), `the tag ${word} is not in the backend in clear`);
});

test('hostile copy sources: path tricks, missing objects, another user bucket, an unknown upload', async () => {
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'private.txt', Body: 'mine' }));
  const copy = (source: string, key = 'target.txt') =>
    s3.send(new CopyObjectCommand({ Bucket: B, Key: key, CopySource: source }));
  await rejects(() => copy(`${B}/../${B}/private.txt`), 'NoSuchKey', 404);
  await rejects(() => copy(`${B}/%2e%2e/private.txt`), 'NoSuchKey', 404);
  await rejects(() => copy(`${B}/no-such-key`), 'NoSuchKey', 404);
  await rejects(() => copy(`no-such-bucket/private.txt`), 'NoSuchBucket', 404);
  await rejects(() => copy(`.coffre/keys/x`), 'NoSuchBucket', 404);
  await rejects(() => copy(`${B}`), 'InvalidArgument', 400);
  await rejects(() => copy(`%zz/private.txt`), 'InvalidArgument', 400);
  // A path out of the coffre bucket into the gateway's own records in the backend finds nothing.
  await rejects(() => copy(`${B}/../.coffre/keys/anything`), 'NoSuchKey', 404);

  // Another user, with write on a bucket of their own only, cannot copy out of this one.
  const made = await runCoffre(['key', 'create', 'mallory', '--json', '--config', gateway.server.configPath]);
  assert.equal(made.code, 0, made.stderr);
  const mallory = JSON.parse(made.stdout) as { accessKeyId: string; secretAccessKey: string };
  await s3.send(new CreateBucketCommand({ Bucket: 'mallory' }));
  const allowed = await runCoffre([
    'bucket',
    'allow',
    'mallory',
    '--key',
    mallory.accessKeyId,
    '--read',
    '--write',
    '--config',
    gateway.server.configPath,
  ]);
  assert.equal(allowed.code, 0, allowed.stderr);
  const m = new S3Client({
    endpoint: gateway.server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: mallory,
  });
  try {
    await m.send(new PutObjectCommand({ Bucket: 'mallory', Key: 'own.txt', Body: 'own' }));
    await rejects(
      () =>
        m.send(
          new CopyObjectCommand({ Bucket: 'mallory', Key: 'stolen.txt', CopySource: `${B}/private.txt` }),
        ),
      'AccessDenied',
      403,
    );
    const up = await m.send(new CreateMultipartUploadCommand({ Bucket: 'mallory', Key: 'stolen.bin' }));
    await rejects(
      () =>
        m.send(
          new UploadPartCopyCommand({
            Bucket: 'mallory',
            Key: 'stolen.bin',
            UploadId: up.UploadId,
            PartNumber: 1,
            CopySource: `${B}/private.txt`,
          }),
        ),
      'AccessDenied',
      403,
    );
    // Nor copy into it.
    await rejects(
      () => m.send(new CopyObjectCommand({ Bucket: B, Key: 'planted.txt', CopySource: 'mallory/own.txt' })),
      'AccessDenied',
      403,
    );
  } finally {
    m.destroy();
  }
  await rejects(
    () =>
      s3.send(
        new UploadPartCopyCommand({
          Bucket: B,
          Key: 'x.bin',
          UploadId: '0'.repeat(32),
          PartNumber: 1,
          CopySource: `${B}/private.txt`,
        }),
      ),
    'NoSuchUpload',
    404,
  );
  assert.equal((await read('private.txt')).toString(), 'mine');
});

test('a PUT or part whose body fails its Content-MD5 is refused (400), and the gateway goes on', async () => {
  const wrongMd5 = Buffer.alloc(16).toString('base64');
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({ Bucket: B, Key: 'bad.bin', Body: randomBytes(70_000), ContentMD5: wrongMd5 }),
      ),
    'BadDigest',
    400,
  );
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'bad-mp.bin' }));
  await rejects(
    () =>
      s3.send(
        new UploadPartCommand({
          Bucket: B,
          Key: 'bad-mp.bin',
          UploadId,
          PartNumber: 1,
          Body: randomBytes(70_000),
          ContentMD5: wrongMd5,
        }),
      ),
    'BadDigest',
    400,
  );
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'bad.bin' })), 'NotFound', 404);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'after.txt', Body: 'still here' }));
  assert.equal((await read('after.txt')).toString(), 'still here');
});
