// Interop: the AWS SDK for JavaScript v3 against a coffre server — PutObject (digests, checksums, metadata and
// standard headers), GetObject (ranges, conditions, response overrides), HeadObject, DeleteObject(s), CopyObject.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import {
  type ChecksumAlgorithm,
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { startServer, type TestServer } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';

let server: TestServer;
let s3: S3Client;
const B = 'objects';

before(async () => {
  server = await startServer();
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: B }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

async function getBytes(key: string, extra: Partial<ConstructorParameters<typeof GetObjectCommand>[0]> = {}) {
  const out = await s3.send(new GetObjectCommand({ Bucket: B, Key: key, ...extra }));
  return { out, body: Buffer.from(await out.Body!.transformToByteArray()) };
}

const md5hex = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const md5b64 = (b: Buffer | string) => createHash('md5').update(b).digest('base64');

test('PutObject then GetObject round trips sizes from empty to several blocks, ETag is the MD5', async () => {
  for (const size of [0, 1, 3000, 70_000, 1024 * 1024 + 17, 3 * 1024 * 1024 + 5]) {
    const data = randomBytes(size);
    const key = `sizes/${size}.bin`;
    const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: key, Body: data }));
    assert.equal(put.ETag, `"${md5hex(data)}"`);
    const { out, body } = await getBytes(key);
    assert.equal(out.ContentLength, size);
    assert.equal(out.ETag, put.ETag);
    assert.ok(body.equals(data), `content of ${size} bytes`);
  }
  // Odd keys: unicode, spaces, plus, percent, deep paths.
  for (const key of [
    'é à ü/日本語.txt',
    'a+b=c&d',
    '100% sure',
    'sp ace/../dot',
    'tab\there',
    '~!@$^*()[]{};,',
    // Path-like keys are names, never normalised: dot segments, doubled and leading slashes, query marks.
    'dir/./x',
    'dir/../y',
    'a//b',
    '/lead',
    '.',
    '..',
    'q?x=1#frag',
  ]) {
    await s3.send(new PutObjectCommand({ Bucket: B, Key: key, Body: key }));
    assert.equal((await getBytes(key)).body.toString(), key);
  }
});

test('PutObject: Content-MD5 good is accepted, wrong gives BadDigest, malformed gives InvalidDigest', async () => {
  const data = Buffer.from('digest me');
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'md5/good', Body: data, ContentMD5: md5b64(data) }));
  assert.ok((await getBytes('md5/good')).body.equals(data));
  await rejects(
    () =>
      s3.send(new PutObjectCommand({ Bucket: B, Key: 'md5/bad', Body: data, ContentMD5: md5b64('other') })),
    'BadDigest',
    400,
  );
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: B, Key: 'md5/bad', Body: data, ContentMD5: 'not-base64!' })),
    'InvalidDigest',
    400,
  );
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'md5/bad' })), 'NotFound', 404);
});

test('PutObject with each ChecksumAlgorithm: stored, returned with ChecksumMode, verified by the SDK', async () => {
  const data = randomBytes(200_000);
  const expected: Record<string, string> = {
    SHA1: createHash('sha1').update(data).digest('base64'),
    SHA256: createHash('sha256').update(data).digest('base64'),
  };
  for (const algo of ['CRC32', 'CRC32C', 'SHA1', 'SHA256'] as ChecksumAlgorithm[]) {
    const key = `checksum/${algo}`;
    const put = await s3.send(
      new PutObjectCommand({ Bucket: B, Key: key, Body: data, ChecksumAlgorithm: algo }),
    );
    const field = `Checksum${algo}` as 'ChecksumCRC32';
    assert.ok(put[field], `PutObject returns ${field}`);
    if (expected[algo]) assert.equal(put[field], expected[algo]);
    const { out, body } = await getBytes(key, { ChecksumMode: 'ENABLED' });
    assert.ok(body.equals(data));
    assert.equal(out[field], put[field], `GetObject returns the stored ${algo}`);
    const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: key, ChecksumMode: 'ENABLED' }));
    assert.equal(head[field], put[field]);
  }
  // A checksum that does not match the body is refused, and nothing is stored.
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({
          Bucket: B,
          Key: 'checksum/wrong',
          Body: data,
          ChecksumSHA256: createHash('sha256').update('other bytes').digest('base64'),
        }),
      ),
    'BadDigest',
    400,
  );
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'checksum/wrong' })), 'NotFound', 404);
});

test('PutObject metadata and standard headers come back on Get and Head', async () => {
  const expires = new Date('2030-01-02T03:04:05Z');
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'meta/doc.html',
      Body: '<p>hi</p>',
      ContentType: 'text/html; charset=utf-8',
      ContentEncoding: 'identity',
      ContentDisposition: 'attachment; filename="doc.html"',
      ContentLanguage: 'fr-FR',
      CacheControl: 'max-age=60, public',
      Expires: expires,
      Metadata: { color: 'blue', 'multi-word': 'Hello World', empty: '' },
    }),
  );
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'meta/doc.html' }));
  const { out } = await getBytes('meta/doc.html');
  for (const r of [head, out]) {
    assert.equal(r.ContentType, 'text/html; charset=utf-8');
    assert.equal(r.ContentEncoding, 'identity');
    assert.equal(r.ContentDisposition, 'attachment; filename="doc.html"');
    assert.equal(r.ContentLanguage, 'fr-FR');
    assert.equal(r.CacheControl, 'max-age=60, public');
    assert.equal(new Date(r.ExpiresString ?? String(r.Expires)).getTime(), expires.getTime());
    assert.equal(r.Metadata?.color, 'blue');
    assert.equal(r.Metadata?.['multi-word'], 'Hello World');
    assert.equal(r.ContentLength, 9);
    assert.ok(r.LastModified instanceof Date);
    assert.equal(r.AcceptRanges, 'bytes');
  }
  // A streamed body goes aws-chunked with a trailing checksum: the stored Content-Encoding is the user's only.
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'meta/gz',
      Body: Readable.from([Buffer.from('not really gzip')]),
      ContentLength: 15,
      ContentEncoding: 'gzip',
      ChecksumAlgorithm: 'CRC32',
    }),
  );
  const gz = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'meta/gz' }));
  assert.equal(gz.ContentEncoding, 'gzip');
  assert.equal(gz.ContentLength, 15);
  // User metadata is limited to 2 KiB, as in S3.
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({ Bucket: B, Key: 'meta/big', Body: 'x', Metadata: { a: 'x'.repeat(3000) } }),
      ),
    'MetadataTooLarge',
    400,
  );
  // Default content type.
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'meta/plain', Body: 'x' }));
  const plain = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'meta/plain' }));
  assert.ok(plain.ContentType, 'a content type is always reported');
  assert.deepEqual(plain.Metadata, {});
});

test('GetObject ranges: first bytes, middle, suffix, open-ended, past the end, unsatisfiable', async () => {
  const data = randomBytes(1024 * 1024 + 1000); // crosses a block boundary
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'range/obj', Body: data }));
  const cases: [string, number, number][] = [
    ['bytes=0-0', 0, 0],
    ['bytes=0-99', 0, 99],
    ['bytes=1048570-1048590', 1048570, 1048590],
    ['bytes=-500', data.length - 500, data.length - 1],
    ['bytes=1048000-', 1048000, data.length - 1],
    ['bytes=100-99999999', 100, data.length - 1],
    [`bytes=-${data.length + 10}`, 0, data.length - 1],
  ];
  for (const [range, start, end] of cases) {
    const { out, body } = await getBytes('range/obj', { Range: range });
    assert.equal(out.$metadata.httpStatusCode, 206, range);
    assert.equal(out.ContentRange, `bytes ${start}-${end}/${data.length}`, range);
    assert.equal(out.ContentLength, end - start + 1, range);
    assert.ok(body.equals(data.subarray(start, end + 1)), `bytes of ${range}`);
  }
  for (const range of [`bytes=${data.length}-`, `bytes=${data.length + 5}-${data.length + 10}`]) {
    const e = await rejects(() => getBytes('range/obj', { Range: range }), 'InvalidRange', 416);
    void e;
  }
  // Range on an empty object is unsatisfiable too, except that S3 returns the whole (empty) object for suffixes? We
  // only require a clear answer: either 200 with no bytes or 416.
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'range/empty', Body: '' }));
  try {
    const { body } = await getBytes('range/empty', { Range: 'bytes=0-10' });
    assert.equal(body.length, 0);
  } catch (err) {
    assert.equal((err as S3ServiceException).$metadata.httpStatusCode, 416);
  }
  // A syntactically invalid range is ignored, as S3 does: the whole object.
  const { out, body } = await getBytes('range/obj', { Range: 'bytes=abc' });
  assert.equal(out.$metadata.httpStatusCode, 200);
  assert.equal(body.length, data.length);
});

test('GetObject and HeadObject conditions: If-Match / If-None-Match / If-(Un)Modified-Since → 304 / 412', async () => {
  const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: 'cond/obj', Body: 'conditional' }));
  const etag = put.ETag!;
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'cond/obj' }));
  const lm = head.LastModified!;
  const past = new Date(lm.getTime() - 3600_000);
  const future = new Date(lm.getTime() + 3600_000);

  // Satisfied conditions.
  assert.equal((await getBytes('cond/obj', { IfMatch: etag })).body.toString(), 'conditional');
  assert.equal((await getBytes('cond/obj', { IfMatch: '*' })).body.toString(), 'conditional');
  assert.equal((await getBytes('cond/obj', { IfNoneMatch: '"0123"' })).body.toString(), 'conditional');
  assert.equal((await getBytes('cond/obj', { IfModifiedSince: past })).body.toString(), 'conditional');
  assert.equal((await getBytes('cond/obj', { IfUnmodifiedSince: future })).body.toString(), 'conditional');

  // Failed ones.
  await rejects(() => getBytes('cond/obj', { IfMatch: '"0123"' }), 'PreconditionFailed', 412);
  await rejects(() => getBytes('cond/obj', { IfUnmodifiedSince: past }), 'PreconditionFailed', 412);
  await rejects(() => getBytes('cond/obj', { IfNoneMatch: etag }), '', 304);
  await rejects(() => getBytes('cond/obj', { IfNoneMatch: '*' }), '', 304);
  await rejects(() => getBytes('cond/obj', { IfModifiedSince: future }), '', 304);
  // RFC 7232 precedence: If-Match true overrides If-Unmodified-Since false; If-None-Match false overrides
  // If-Modified-Since true.
  assert.equal(
    (await getBytes('cond/obj', { IfMatch: etag, IfUnmodifiedSince: past })).body.toString(),
    'conditional',
  );
  await rejects(() => getBytes('cond/obj', { IfNoneMatch: etag, IfModifiedSince: past }), '', 304);

  // HEAD follows the same rules.
  await rejects(
    () => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'cond/obj', IfMatch: '"x"' })),
    '',
    412,
  );
  await rejects(
    () => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'cond/obj', IfNoneMatch: etag })),
    '',
    304,
  );
  const okHead = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'cond/obj', IfMatch: etag }));
  assert.equal(okHead.ETag, etag);

  // Conditional PUT (If-None-Match: *) refuses to overwrite.
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: B, Key: 'cond/obj', Body: 'overwrite', IfNoneMatch: '*' })),
    'PreconditionFailed',
    412,
  );
  assert.equal((await getBytes('cond/obj')).body.toString(), 'conditional');
});

test('GetObject response-* overrides replace the stored headers in the answer only', async () => {
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'override/f',
      Body: 'data',
      ContentType: 'text/plain',
      CacheControl: 'no-cache',
    }),
  );
  const { out } = await getBytes('override/f', {
    ResponseContentType: 'application/x-custom',
    ResponseContentDisposition: 'attachment; filename="x.bin"',
    ResponseContentLanguage: 'de',
    ResponseContentEncoding: 'identity',
    ResponseCacheControl: 'max-age=5',
    ResponseExpires: new Date('2031-05-06T07:08:09Z'),
  });
  assert.equal(out.ContentType, 'application/x-custom');
  assert.equal(out.ContentDisposition, 'attachment; filename="x.bin"');
  assert.equal(out.ContentLanguage, 'de');
  assert.equal(out.ContentEncoding, 'identity');
  assert.equal(out.CacheControl, 'max-age=5');
  assert.equal(
    new Date(out.ExpiresString ?? String(out.Expires)).getTime(),
    Date.parse('2031-05-06T07:08:09Z'),
  );
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'override/f' }));
  assert.equal(head.ContentType, 'text/plain');
  assert.equal(head.CacheControl, 'no-cache');
});

test('GetObject partNumber on a single-part object: part 1 is the whole object, part 2 is InvalidPartNumber', async () => {
  const data = randomBytes(5000);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'parts/single', Body: data }));
  const { out, body } = await getBytes('parts/single', { PartNumber: 1 });
  assert.ok(body.equals(data));
  assert.ok([200, 206].includes(out.$metadata.httpStatusCode!));
  await rejects(() => getBytes('parts/single', { PartNumber: 2 }), 'InvalidPartNumber', 416);
});

test('DeleteObject and DeleteObjects (verbose and Quiet)', async () => {
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'del/one', Body: '1' }));
  const d = await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'del/one' }));
  assert.equal(d.$metadata.httpStatusCode, 204);
  await rejects(() => getBytes('del/one'), 'NoSuchKey', 404);
  // Deleting what is not there succeeds, as in S3.
  assert.equal(
    (await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'del/never' }))).$metadata.httpStatusCode,
    204,
  );

  const keys = Array.from({ length: 12 }, (_, i) => `del/many/${i} é&<>`);
  for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: B, Key: k, Body: k }));
  const verbose = await s3.send(
    new DeleteObjectsCommand({
      Bucket: B,
      Delete: { Objects: [...keys.slice(0, 6), 'del/absent'].map((Key) => ({ Key })) },
    }),
  );
  assert.deepEqual(
    (verbose.Deleted ?? []).map((x) => x.Key).sort(),
    [...keys.slice(0, 6), 'del/absent'].sort(),
  );
  assert.equal(verbose.Errors, undefined);
  const quiet = await s3.send(
    new DeleteObjectsCommand({
      Bucket: B,
      Delete: { Quiet: true, Objects: keys.slice(6).map((Key) => ({ Key })) },
    }),
  );
  assert.equal(quiet.Deleted, undefined, 'Quiet reports no successes');
  assert.equal(quiet.Errors, undefined);
  const left = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'del/' }));
  assert.equal(left.KeyCount, 0);
  // Keys that begin or end with whitespace are other keys than their trimmed forms: only the named ones go.
  const spaced = [' lead', 'trail ', '\ttab', 'nl\n'];
  const trimmed = ['lead', 'trail', 'tab', 'nl'];
  for (const k of [...spaced, ...trimmed])
    await s3.send(new PutObjectCommand({ Bucket: B, Key: `ws/${k}`, Body: k }));
  const ws = await s3.send(
    new DeleteObjectsCommand({ Bucket: B, Delete: { Objects: spaced.map((k) => ({ Key: `ws/${k}` })) } }),
  );
  assert.deepEqual((ws.Deleted ?? []).map((x) => x.Key).sort(), spaced.map((k) => `ws/${k}`).sort());
  const wsLeft = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'ws/' }));
  assert.deepEqual((wsLeft.Contents ?? []).map((c) => c.Key).sort(), trimmed.map((k) => `ws/${k}`).sort());
  for (const k of trimmed) await s3.send(new DeleteObjectCommand({ Bucket: B, Key: `ws/${k}` }));

  // An empty Delete is malformed.
  await rejects(
    () => s3.send(new DeleteObjectsCommand({ Bucket: B, Delete: { Objects: [] } })),
    'MalformedXML',
    400,
  );
});

test('CopyObject: COPY and REPLACE directives, conditions, odd source keys, copy onto itself', async () => {
  const data = randomBytes(1024 * 1024 + 3);
  const src = await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'copy/src é+&.bin',
      Body: data,
      ContentType: 'application/x-src',
      CacheControl: 'max-age=1',
      Metadata: { origin: 'source' },
    }),
  );
  const srcHead = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'copy/src é+&.bin' }));
  const source = `${B}/${encodeURIComponent('copy/src é+&.bin')}`;

  const c1 = await s3.send(new CopyObjectCommand({ Bucket: B, Key: 'copy/dst1', CopySource: source }));
  assert.equal(c1.CopyObjectResult?.ETag, src.ETag);
  assert.ok(c1.CopyObjectResult?.LastModified instanceof Date);
  const h1 = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'copy/dst1' }));
  assert.equal(h1.ContentType, 'application/x-src');
  assert.equal(h1.CacheControl, 'max-age=1');
  assert.deepEqual(h1.Metadata, { origin: 'source' });
  assert.ok((await getBytes('copy/dst1')).body.equals(data));

  // REPLACE takes the request's metadata and headers.
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'copy/dst2',
      CopySource: source,
      MetadataDirective: 'REPLACE',
      ContentType: 'text/x-replaced',
      Metadata: { origin: 'replaced', extra: '1' },
    }),
  );
  const h2 = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'copy/dst2' }));
  assert.equal(h2.ContentType, 'text/x-replaced');
  assert.deepEqual(h2.Metadata, { origin: 'replaced', extra: '1' });
  assert.equal(h2.CacheControl, undefined);
  assert.ok((await getBytes('copy/dst2')).body.equals(data));

  // Copy-source conditions.
  const past = new Date(srcHead.LastModified!.getTime() - 3600_000);
  const future = new Date(srcHead.LastModified!.getTime() + 3600_000);
  await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'copy/c-ok', CopySource: source, CopySourceIfMatch: src.ETag }),
  );
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'copy/c-ok',
      CopySource: source,
      CopySourceIfModifiedSince: past,
    }),
  );
  for (const cond of [
    { CopySourceIfMatch: '"abc"' },
    { CopySourceIfNoneMatch: src.ETag },
    { CopySourceIfModifiedSince: future },
    { CopySourceIfUnmodifiedSince: past },
  ]) {
    await rejects(
      () => s3.send(new CopyObjectCommand({ Bucket: B, Key: 'copy/c-fail', CopySource: source, ...cond })),
      'PreconditionFailed',
      412,
    );
  }
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'copy/c-fail' })), 'NotFound', 404);

  // Missing source, missing source bucket.
  await rejects(
    () => s3.send(new CopyObjectCommand({ Bucket: B, Key: 'copy/x', CopySource: `${B}/copy/none` })),
    'NoSuchKey',
    404,
  );
  await rejects(
    () => s3.send(new CopyObjectCommand({ Bucket: B, Key: 'copy/x', CopySource: 'no-such-bucket/k' })),
    'NoSuchBucket',
    404,
  );

  // Onto itself without change is refused; with REPLACE it rewrites the object's own metadata, keeping its bytes.
  await rejects(
    () => s3.send(new CopyObjectCommand({ Bucket: B, Key: 'copy/dst1', CopySource: `${B}/copy/dst1` })),
    'InvalidRequest',
    400,
  );
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'copy/dst1',
      CopySource: `${B}/copy/dst1`,
      MetadataDirective: 'REPLACE',
      ContentType: 'image/png',
      Metadata: { renamed: 'yes' },
    }),
  );
  const self = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'copy/dst1' }));
  assert.equal(self.ContentType, 'image/png');
  assert.deepEqual(self.Metadata, { renamed: 'yes' });
  assert.equal(self.ETag, src.ETag);
  assert.ok((await getBytes('copy/dst1')).body.equals(data));

  // Overwriting the source keeps the copies intact (blocks are shared by reference, not by name).
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'copy/src é+&.bin', Body: 'new' }));
  assert.ok((await getBytes('copy/dst2')).body.equals(data));
  await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'copy/dst2' }));
  assert.ok((await getBytes('copy/dst1')).body.equals(data));
});
