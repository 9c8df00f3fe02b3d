// A coffre node in front of an S3 backend (here another coffre node): objects written through the gateway
// with the AWS SDK come back whole, by ranges, in listings with their plaintext sizes and one stable ETag; the
// backend, read directly with its own credentials, holds no plaintext, no user metadata and no customer key.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListPartsCommand,
  UploadPartCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { rejects } from '../helpers/s3.js';
import { customerKey, sseCParams } from '../security/ssec-helpers.js';
import { bodyOf, gatewayForFile, type Backend, type Gateway } from './gateway-helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const B = 'photos';

let backend: Backend;
let gateway: Gateway;
let s3: S3Client;

gatewayForFile((started) => ({ backend, gateway, s3 } = started), { buckets: [B] });

const body = bodyOf;

/** Every object the backend holds, with its body and metadata, read with the backend's own credentials. */
async function backendContents(): Promise<{ key: string; body: Buffer; meta: Record<string, string> }[]> {
  const out = [];
  const listed = await backend.client.send(new ListObjectsV2Command({ Bucket: backend.target.bucket }));
  for (const item of listed.Contents ?? []) {
    const got = await backend.client.send(
      new GetObjectCommand({ Bucket: backend.target.bucket, Key: item.Key }),
    );
    out.push({ key: item.Key!, body: await body(got), meta: got.Metadata ?? {} });
  }
  return out;
}

test('objects of every size round-trip, and listings show plaintext sizes with the ETags PUT gave', async () => {
  const sizes = [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, MiB, MiB + 17, 3 * MiB + 5];
  const etags = new Map<string, string>();
  const data = new Map<string, Buffer>();
  for (const size of sizes) {
    const key = `sizes/${String(size).padStart(8, '0')}.bin`;
    const bytes = randomBytes(size);
    data.set(key, bytes);
    const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: key, Body: bytes }));
    assert.ok(put.ETag, 'PUT gives an ETag');
    // Not an MD5 of the plaintext, and not shaped like one: clients that check MD5s skip it.
    assert.match(put.ETag, /^"[0-9a-f]{32}-1"$/);
    etags.set(key, put.ETag);
    const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: key }));
    assert.equal(head.ContentLength, size);
    assert.equal(head.ETag, put.ETag);
    assert.equal(head.ServerSideEncryption, 'AES256', 'encrypted with SSE-S3 although not asked');
    const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: key }));
    assert.equal(got.ETag, put.ETag);
    assert.ok((await body(got)).equals(bytes), `${size} bytes come back`);
  }
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'sizes/' }));
  assert.deepEqual(
    listed.Contents?.map((o) => [o.Key, o.Size, o.ETag]),
    [...data.keys()].map((k) => [k, data.get(k)!.length, etags.get(k)]),
  );
  // Paged by one, with a delimiter: the same keys in the same order.
  const seen: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: B, Prefix: 'sizes/', MaxKeys: 3, ContinuationToken: token }),
    );
    seen.push(...(page.Contents ?? []).map((o) => o.Key!));
    token = page.NextContinuationToken;
  } while (token);
  assert.deepEqual(seen, [...data.keys()]);
  const top = await s3.send(new ListObjectsV2Command({ Bucket: B, Delimiter: '/' }));
  assert.deepEqual(
    top.CommonPrefixes?.map((p) => p.Prefix),
    ['sizes/'],
  );
});

test('Range reads return exact bytes and Content-Range, across chunk boundaries', async () => {
  const bytes = randomBytes(2 * MiB + 333);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'ranges.bin', Body: bytes }));
  const cases: [string, number, number][] = [
    ['bytes=0-0', 0, 1],
    ['bytes=65535-65536', 65535, 65537],
    ['bytes=1000000-1200000', 1000000, 1200001],
    ['bytes=-10', bytes.length - 10, bytes.length],
    [`bytes=${bytes.length - 1}-`, bytes.length - 1, bytes.length],
    ['bytes=2000000-99999999', 2000000, bytes.length],
  ];
  for (const [range, start, end] of cases) {
    const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'ranges.bin', Range: range }));
    assert.equal(got.ContentRange, `bytes ${start}-${end - 1}/${bytes.length}`, range);
    assert.ok((await body(got)).equals(bytes.subarray(start, end)), range);
  }
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'ranges.bin', Range: `bytes=${bytes.length}-` })),
    'InvalidRange',
    416,
  );
});

test('metadata and content-type come back through the gateway, sealed in the backend', async () => {
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'meta.txt',
      Body: 'hello',
      ContentType: 'text/x-secret-type',
      ContentDisposition: 'attachment; filename="secret-name.txt"',
      Metadata: { colour: 'ultramarine-secret' },
    }),
  );
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'meta.txt' }));
  assert.equal(head.ContentType, 'text/x-secret-type');
  assert.equal(head.ContentDisposition, 'attachment; filename="secret-name.txt"');
  assert.deepEqual(head.Metadata, { colour: 'ultramarine-secret' });
});

test('SSE-C objects need their key, which never reaches the backend', async () => {
  const key = customerKey();
  const ssec = sseCParams(key);
  const bytes = randomBytes(200 * KiB);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'ssec.bin', Body: bytes, ...ssec }));
  const got = await s3.send(
    new GetObjectCommand({ Bucket: B, Key: 'ssec.bin', Range: 'bytes=100-199', ...ssec }),
  );
  assert.ok((await body(got)).equals(bytes.subarray(100, 200)));
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: B, Key: 'ssec.bin' })), 'InvalidRequest', 400);
  const other = customerKey();
  await rejects(
    () =>
      s3.send(
        new GetObjectCommand({
          Bucket: B,
          Key: 'ssec.bin',
          SSECustomerAlgorithm: 'AES256',
          SSECustomerKey: other.b64,
          SSECustomerKeyMD5: other.md5,
        }),
      ),
    'AccessDenied',
    403,
  );
  // The backend, read with its own credentials, holds none of it.
  const plain = Buffer.from('a plaintext marker that must not be found in the backend');
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'marker.txt',
      Body: plain,
      Metadata: { note: 'ultramarine-secret' },
    }),
  );
  const stored = await backendContents();
  assert.ok(stored.length > 5, 'the backend holds the objects');
  assert.ok(
    stored.some((o) => o.key.startsWith('coffre/.coffre/keys/GK')),
    'and the access keys',
  );
  for (const o of stored) {
    assert.ok(
      o.key.startsWith(`coffre/${B}/`) || o.key.startsWith('coffre/.coffre/'),
      `${o.key} is under the configured prefix`,
    );
    for (const needle of [
      plain,
      bytes.subarray(0, 32),
      key.raw,
      Buffer.from(key.b64),
      Buffer.from(key.md5),
      Buffer.from('ultramarine-secret'),
      Buffer.from('text/x-secret-type'),
      Buffer.from('secret-name'),
      // The gateway's access keys live in the backend too, sealed.
      Buffer.from(gateway.server.secretAccessKey),
    ]) {
      assert.equal(o.body.indexOf(needle), -1, `${o.key}'s body holds no plaintext or key`);
      assert.ok(
        !JSON.stringify(o.meta).includes(needle.toString('latin1')),
        `${o.key}'s metadata holds none`,
      );
      assert.ok(
        !JSON.stringify(o.meta).includes(needle.toString('base64')),
        `${o.key}'s metadata holds none`,
      );
    }
  }
});

test('conditional requests and deletes', async () => {
  const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: 'cond.txt', Body: 'one' }));
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: B, Key: 'cond.txt', Body: 'two', IfNoneMatch: '*' })),
    'PreconditionFailed',
    412,
  );
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({
          Bucket: B,
          Key: 'cond.txt',
          Body: 'two',
          IfMatch: '"0123456789abcdef0123456789abcdef-1"',
        }),
      ),
    'PreconditionFailed',
    412,
  );
  const second = await s3.send(
    new PutObjectCommand({ Bucket: B, Key: 'cond.txt', Body: 'two', IfMatch: put.ETag }),
  );
  assert.notEqual(second.ETag, put.ETag);
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'cond.txt', IfMatch: put.ETag })),
    'PreconditionFailed',
    412,
  );
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'cond.txt', IfMatch: second.ETag }));
  assert.equal((await body(got)).toString(), 'two');

  await rejects(() => s3.send(new DeleteBucketCommand({ Bucket: B })), 'BucketNotEmpty', 409);
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'cond.txt' }));
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'cond.txt' })), 'NotFound', 404);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'gone/a', Body: 'a' }));
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'gone/b', Body: 'b' }));
  await s3.send(
    new DeleteObjectsCommand({
      Bucket: B,
      Delete: { Objects: [{ Key: 'gone/a' }, { Key: 'gone/b' }, { Key: 'gone/c' }] },
    }),
  );
  const left = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'gone/' }));
  assert.equal(left.KeyCount, 0);
  // An empty bucket goes, and the backend holds nothing more of it.
  await s3.send(new CreateBucketCommand({ Bucket: 'shortlived' }));
  await s3.send(new PutObjectCommand({ Bucket: 'shortlived', Key: 'x', Body: 'x' }));
  await rejects(() => s3.send(new DeleteBucketCommand({ Bucket: 'shortlived' })), 'BucketNotEmpty', 409);
  await s3.send(new DeleteObjectCommand({ Bucket: 'shortlived', Key: 'x' }));
  await s3.send(new DeleteBucketCommand({ Bucket: 'shortlived' }));
});

test('an object another program put under the prefix is left out of listings and refused on read', async () => {
  await backend.client.send(
    new PutObjectCommand({ Bucket: backend.target.bucket, Key: `coffre/${B}/foreign.txt`, Body: 'not ours' }),
  );
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'foreign' }));
  assert.equal(listed.KeyCount ?? 0, 0);
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: B, Key: 'foreign.txt' })), 'InternalError', 500);
});

test('the plaintext MD5 is never the ETag', async () => {
  const bytes = Buffer.from('same bytes');
  const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: 'md5.txt', Body: bytes }));
  assert.notEqual(put.ETag, `"${createHash('md5').update(bytes).digest('hex')}"`);
});

test('multipart uploads stream part by part, of any sizes S3 allows, and read back by ranges across parts', async () => {
  // Parts that are not whole 64 KiB chunks, then a short last one.
  const parts = [randomBytes(5 * MiB + 3), randomBytes(5 * MiB + 65536), randomBytes(1234)];
  const whole = Buffer.concat(parts);
  const key = customerKey();
  for (const ssec of [{}, sseCParams(key)]) {
    const name = `multi/${Object.keys(ssec).length ? 'ssec' : 'sse-s3'}.bin`;
    const created = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: B, Key: name, ContentType: 'video/x-secret', ...ssec }),
    );
    const UploadId = created.UploadId!;
    const etags: string[] = [];
    for (const [i, data] of parts.entries()) {
      const up = await s3.send(
        new UploadPartCommand({ Bucket: B, Key: name, UploadId, PartNumber: i + 1, Body: data, ...ssec }),
      );
      etags.push(up.ETag!);
    }
    const listed = await s3.send(new ListPartsCommand({ Bucket: B, Key: name, UploadId, ...ssec }));
    assert.deepEqual(
      listed.Parts?.map((p) => [p.PartNumber, p.Size, p.ETag]),
      parts.map((d, i) => [i + 1, d.length, etags[i]]),
    );
    await rejects(
      () =>
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: B,
            Key: name,
            UploadId,
            MultipartUpload: { Parts: [{ PartNumber: 1, ETag: etags[1] }] },
          }),
        ),
      'InvalidPart',
      400,
    );
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: B,
        Key: name,
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: name, ...ssec }));
    assert.equal(head.ContentLength, whole.length);
    assert.equal(head.ETag, done.ETag);
    assert.equal(head.ContentType, 'video/x-secret');
    const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: name, ...ssec }));
    assert.ok((await body(got)).equals(whole));
    const start = parts[0]!.length - 10;
    const end = parts[0]!.length + parts[1]!.length + 100;
    const ranged = await s3.send(
      new GetObjectCommand({ Bucket: B, Key: name, Range: `bytes=${start}-${end - 1}`, ...ssec }),
    );
    assert.ok((await body(ranged)).equals(whole.subarray(start, end)), 'a range across three parts');
    const part2 = await s3.send(new GetObjectCommand({ Bucket: B, Key: name, PartNumber: 2, ...ssec }));
    assert.ok((await body(part2)).equals(parts[1]!), 'GetObject partNumber=2');
  }
  const listing = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'multi/' }));
  assert.deepEqual(
    listing.Contents?.map((o) => [o.Key, o.Size]),
    [
      ['multi/sse-s3.bin', whole.length],
      ['multi/ssec.bin', whole.length],
    ],
  );
});

test('a part too small but the last, and an aborted upload, are refused as S3 does', async () => {
  const name = 'multi/small.bin';
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: name }));
  const etags: (string | undefined)[] = [];
  for (const n of [1, 2])
    etags.push(
      (
        await s3.send(
          new UploadPartCommand({ Bucket: B, Key: name, UploadId, PartNumber: n, Body: randomBytes(1000) }),
        )
      ).ETag,
    );
  await rejects(
    () =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: B,
          Key: name,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
        }),
      ),
    'EntityTooSmall',
    400,
  );
  await s3.send(new AbortMultipartUploadCommand({ Bucket: B, Key: name, UploadId }));
  await rejects(
    () => s3.send(new UploadPartCommand({ Bucket: B, Key: name, UploadId, PartNumber: 3, Body: 'x' })),
    'NoSuchUpload',
    404,
  );
  await rejects(
    () =>
      s3.send(
        new UploadPartCommand({ Bucket: B, Key: name, UploadId: '../../etc', PartNumber: 1, Body: 'x' }),
      ),
    'NoSuchUpload',
    404,
  );
  // Nothing of the upload is left in the backend.
  const left = (await backendContents()).filter((o) => o.key.includes(UploadId!));
  assert.deepEqual(left, []);
});

test("the SDK's managed upload goes through the gateway part by part", async () => {
  const data = randomBytes(17 * MiB + 11);
  await new Upload({
    client: s3,
    params: { Bucket: B, Key: 'managed.bin', Body: data },
    partSize: 5 * MiB,
    queueSize: 3,
  }).done();
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'managed.bin' }));
  assert.equal(got.ContentLength, data.length);
  assert.ok((await body(got)).equals(data));
});
