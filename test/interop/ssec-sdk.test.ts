// Interop: SSE-C with the AWS SDK for JavaScript v3 against a coffre server, for every operation that takes a
// customer key (PutObject, GetObject with ranges, HeadObject, multipart, copies, presigned URLs, PostObject)
// and every refusal in the SSE-C error table. Requests come from loopback, where SSE-C over HTTP is allowed.
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type ServiceInputTypes,
  type ServiceOutputTypes,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { BuildMiddleware, DeserializeMiddleware } from '@smithy/types';
import { signer } from '../api/s3/sigv4-client.js';
import { rejects } from '../helpers/s3.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { COPY_SSE_C, SSE_C, customerKey, sseCHeaders, type CustomerKey } from '../security/ssec-helpers.js';

let server: TestServer;
let s3: S3Client;
const B = 'ssec';
const KiB = 1024;
const MiB = 1024 * KiB;

// Every response's raw headers, to check that no key ever comes back.
const seenHeaders: Record<string, string>[] = [];
const captureHeaders: DeserializeMiddleware<ServiceInputTypes, ServiceOutputTypes> =
  (next) => async (args) => {
    const out = await next(args);
    const headers = (out.response as { headers?: Record<string, string> }).headers;
    if (headers) seenHeaders.push(headers);
    return out;
  };

before(async () => {
  server = await startServer();
  s3 = server.client();
  s3.middlewareStack.add(captureHeaders, { step: 'deserialize', name: 'captureHeaders' });
  await s3.send(new CreateBucketCommand({ Bucket: B }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

const md5hex = (b: Buffer) => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sse = (k: CustomerKey) => ({ SSECustomerAlgorithm: 'AES256', SSECustomerKey: k.b64 });
const copySse = (k: CustomerKey) => ({
  CopySourceSSECustomerAlgorithm: 'AES256',
  CopySourceSSECustomerKey: k.b64,
});

function assertNoKeyEchoed(...keys: CustomerKey[]): void {
  for (const headers of seenHeaders) {
    for (const [name, value] of Object.entries(headers)) {
      for (const k of keys) {
        assert.ok(!String(value).includes(k.b64), `response header ${name} carries the key`);
        assert.ok(
          !String(value).includes(k.raw.toString('hex')),
          `response header ${name} carries the key (hex)`,
        );
      }
    }
  }
}

async function getBytes(key: string, extra: Partial<ConstructorParameters<typeof GetObjectCommand>[0]> = {}) {
  const out = await s3.send(new GetObjectCommand({ Bucket: B, Key: key, ...extra }));
  return { out, body: Buffer.from(await out.Body!.transformToByteArray()) };
}

/** Sends `cmd` with its headers replaced after serialisation (and before signing): a client sending bad SSE-C. */
function withHeaders<C extends { middlewareStack: unknown }>(
  cmd: C,
  headers: Record<string, string | undefined>,
): C {
  const replace: BuildMiddleware<object, object> = (next) => async (args) => {
    const req = args.request as { headers: Record<string, string> };
    for (const [name, value] of Object.entries(headers)) {
      for (const existing of Object.keys(req.headers)) {
        if (existing.toLowerCase() === name.toLowerCase()) delete req.headers[existing];
      }
      if (value !== undefined) req.headers[name] = value;
    }
    return next(args);
  };
  const stack = cmd.middlewareStack as { add(m: BuildMiddleware<object, object>, o: object): void };
  stack.add(replace, { step: 'build', name: 'replaceHeaders', priority: 'low' });
  return cmd;
}

test('PutObject/GetObject with a customer key: round trip, echoed algorithm and key MD5, opaque ETag, metadata', async () => {
  const key = customerKey();
  for (const size of [0, 1, 65_536, 65_537, 3 * MiB + 5]) {
    const data = randomBytes(size);
    const name = `whole/${size}.bin`;
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: B,
        Key: name,
        Body: data,
        ContentType: 'application/x-secret',
        Metadata: { colour: 'vermilion' },
        ...sse(key),
      }),
    );
    assert.equal(put.SSECustomerAlgorithm, 'AES256');
    assert.equal(put.SSECustomerKeyMD5, key.md5);
    assert.notEqual(put.ETag, `"${md5hex(data)}"`, 'ETag of an SSE-C object is not the MD5 of its plaintext');
    const { out, body } = await getBytes(name, sse(key));
    assert.ok(body.equals(data), `content of ${size} bytes`);
    assert.equal(out.ContentLength, size);
    assert.equal(out.ETag, put.ETag);
    assert.equal(out.SSECustomerAlgorithm, 'AES256');
    assert.equal(out.SSECustomerKeyMD5, key.md5);
    assert.equal(out.ContentType, 'application/x-secret');
    assert.deepEqual(out.Metadata, { colour: 'vermilion' });
  }
  // Content-MD5 is still checked on an SSE-C upload (even though the ETag does not need the MD5).
  const digested = randomBytes(70_000);
  const md5b64 = (b: Buffer) => createHash('md5').update(b).digest('base64');
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'whole/md5',
      Body: digested,
      ContentMD5: md5b64(digested),
      ...sse(key),
    }),
  );
  await rejects(
    () =>
      s3.send(
        new PutObjectCommand({
          Bucket: B,
          Key: 'whole/md5',
          Body: digested,
          ContentMD5: md5b64(Buffer.from('x')),
          ...sse(key),
        }),
      ),
    'BadDigest',
    400,
  );
  assert.ok((await getBytes('whole/md5', sse(key))).body.equals(digested));
  // A plaintext object beside the encrypted ones still works, and its ETag is its MD5.
  const plain = randomBytes(100_000);
  const put = await s3.send(new PutObjectCommand({ Bucket: B, Key: 'whole/plain', Body: plain }));
  assert.equal(put.ETag, `"${md5hex(plain)}"`);
  assert.equal(put.SSECustomerAlgorithm, undefined);
  const { out, body } = await getBytes('whole/plain');
  assert.ok(body.equals(plain));
  assert.equal(out.SSECustomerKeyMD5, undefined);
  assertNoKeyEchoed(key);
});

test('GetObject ranges decrypt exactly the asked bytes: first, last, across 64 KiB chunks and 1 MiB blocks, suffix', async () => {
  const key = customerKey();
  const size = 2 * MiB + 300_000;
  const data = randomBytes(size);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'ranges', Body: data, ...sse(key) }));
  const cases: [string, number, number][] = [
    ['bytes=0-0', 0, 1],
    [`bytes=${size - 1}-${size - 1}`, size - 1, size],
    ['bytes=65530-65545', 65_530, 65_546],
    ['bytes=65536-65536', 65_536, 65_537],
    ['bytes=131071-131072', 131_071, 131_073],
    [`bytes=${MiB - 10}-${MiB + 10}`, MiB - 10, MiB + 11],
    [`bytes=${MiB - 65_536 - 3}-${2 * MiB + 70_000}`, MiB - 65_539, 2 * MiB + 70_001],
    ['bytes=-100', size - 100, size],
    [`bytes=-${size + 50}`, 0, size],
    [`bytes=${size - 70_000}-`, size - 70_000, size],
    [`bytes=100-${size + 1000}`, 100, size],
  ];
  for (const [range, start, end] of cases) {
    const { out, body } = await getBytes('ranges', { Range: range, ...sse(key) });
    assert.equal(out.$metadata.httpStatusCode, 206, range);
    assert.equal(out.ContentRange, `bytes ${start}-${end - 1}/${size}`, range);
    assert.equal(out.ContentLength, end - start, range);
    assert.ok(body.equals(data.subarray(start, end)), `bytes of ${range}`);
    assert.equal(out.SSECustomerKeyMD5, key.md5);
  }
  await rejects(() => getBytes('ranges', { Range: `bytes=${size}-`, ...sse(key) }), 'InvalidRange', 416);
  // A range still needs the key, and the right one.
  await rejects(() => getBytes('ranges', { Range: 'bytes=0-9' }), 'InvalidRequest', 400);
  await rejects(() => getBytes('ranges', { Range: 'bytes=0-9', ...sse(customerKey()) }), 'AccessDenied', 403);
});

test('HeadObject needs the key; errors are a bare status', async () => {
  const key = customerKey();
  await s3.send(
    new PutObjectCommand({ Bucket: B, Key: 'head', Body: 'abc', Metadata: { secret: 'lapis' }, ...sse(key) }),
  );
  const head = await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'head', ...sse(key) }));
  assert.equal(head.ContentLength, 3);
  assert.equal(head.SSECustomerAlgorithm, 'AES256');
  assert.equal(head.SSECustomerKeyMD5, key.md5);
  assert.deepEqual(head.Metadata, { secret: 'lapis' });
  // Conditions still apply with the key.
  await rejects(
    () => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'head', IfNoneMatch: head.ETag, ...sse(key) })),
    '',
    304,
  );

  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'head' })), '', 400);
  await rejects(
    () => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'head', ...sse(customerKey()) })),
    '',
    403,
  );
  // The same over a raw signed request: status only, no body, no metadata.
  for (const [headers, status] of [
    [{}, 400],
    [sseCHeaders(customerKey()), 403],
    [{ ...sseCHeaders(key), [`${SSE_C}key-md5`]: customerKey().md5 }, 400],
  ] as [Record<string, string>, number][]) {
    const res = await rawSigned('HEAD', `/${B}/head`, headers);
    assert.equal(res.status, status);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
    assert.equal(res.headers.get('x-amz-meta-secret'), null);
  }
});

test('multipart: every UploadPart brings the same key; another key or none is refused; UploadPartCopy; Complete', async () => {
  const key = customerKey();
  const name = 'multi/object';
  const create = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: B, Key: name, Metadata: { part: 'yes' }, ...sse(key) }),
  );
  assert.equal(create.SSECustomerAlgorithm, 'AES256');
  assert.equal(create.SSECustomerKeyMD5, key.md5);
  const UploadId = create.UploadId!;
  const part1 = randomBytes(5 * MiB + 3);
  const up1 = await s3.send(
    new UploadPartCommand({ Bucket: B, Key: name, UploadId, PartNumber: 1, Body: part1, ...sse(key) }),
  );
  assert.equal(up1.SSECustomerKeyMD5, key.md5);
  assert.equal(up1.SSECustomerAlgorithm, 'AES256');
  const part2 = randomBytes(1000);
  await rejects(
    () =>
      s3.send(
        new UploadPartCommand({
          Bucket: B,
          Key: name,
          UploadId,
          PartNumber: 2,
          Body: part2,
          ...sse(customerKey()),
        }),
      ),
    'AccessDenied',
    403,
  );
  await rejects(
    () => s3.send(new UploadPartCommand({ Bucket: B, Key: name, UploadId, PartNumber: 2, Body: part2 })),
    'InvalidRequest',
    400,
  );

  // UploadPartCopy: an SSE-C source (its own key) and a plaintext source, each into the SSE-C upload.
  const srcKey = customerKey();
  const src = randomBytes(6 * MiB + 11);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'multi/src', Body: src, ...sse(srcKey) }));
  await rejects(
    () =>
      s3.send(
        new UploadPartCopyCommand({
          Bucket: B,
          Key: name,
          UploadId,
          PartNumber: 2,
          CopySource: `${B}/multi/src`,
          ...sse(key),
        }),
      ),
    'InvalidRequest',
    400,
  );
  await rejects(
    () =>
      s3.send(
        new UploadPartCopyCommand({
          Bucket: B,
          Key: name,
          UploadId,
          PartNumber: 2,
          CopySource: `${B}/multi/src`,
          ...copySse(customerKey()),
          ...sse(key),
        }),
      ),
    'AccessDenied',
    403,
  );
  const copy2 = await s3.send(
    new UploadPartCopyCommand({
      Bucket: B,
      Key: name,
      UploadId,
      PartNumber: 2,
      CopySource: `${B}/multi/src`,
      CopySourceRange: `bytes=${MiB - 7}-${6 * MiB + 5}`,
      ...copySse(srcKey),
      ...sse(key),
    }),
  );
  assert.equal(copy2.SSECustomerKeyMD5, key.md5);
  const plainSrc = randomBytes(300_000);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'multi/plain-src', Body: plainSrc }));
  const copy3 = await s3.send(
    new UploadPartCopyCommand({
      Bucket: B,
      Key: name,
      UploadId,
      PartNumber: 3,
      CopySource: `${B}/multi/plain-src`,
      ...sse(key),
    }),
  );
  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: name,
      UploadId,
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: up1.ETag },
          { PartNumber: 2, ETag: copy2.CopyPartResult!.ETag },
          { PartNumber: 3, ETag: copy3.CopyPartResult!.ETag },
        ],
      },
    }),
  );
  assert.ok(done.ETag);
  const whole = Buffer.concat([part1, src.subarray(MiB - 7, 6 * MiB + 6), plainSrc]);
  const { out, body } = await getBytes(name, sse(key));
  assert.equal(sha256(body), sha256(whole));
  assert.deepEqual(out.Metadata, { part: 'yes' });
  assert.equal(out.SSECustomerKeyMD5, key.md5);
  // A range across the part boundary.
  const a = part1.length - 70_000;
  const r = await getBytes(name, { Range: `bytes=${a}-${a + 200_000}`, ...sse(key) });
  assert.ok(r.body.equals(whole.subarray(a, a + 200_001)));
  await rejects(() => getBytes(name), 'InvalidRequest', 400);
  await rejects(() => getBytes(name, sse(customerKey())), 'AccessDenied', 403);

  // CreateMultipartUpload refuses a malformed key like any other write; a plaintext upload refuses a key.
  await rejects(
    () =>
      s3.send(
        withHeaders(new CreateMultipartUploadCommand({ Bucket: B, Key: 'multi/bad', ...sse(key) }), {
          [`${SSE_C}key-md5`]: customerKey().md5,
        }),
      ),
    'InvalidArgument',
    400,
  );
  const plainUpload = await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'multi/plain' }));
  await rejects(
    () =>
      s3.send(
        new UploadPartCommand({
          Bucket: B,
          Key: 'multi/plain',
          UploadId: plainUpload.UploadId,
          PartNumber: 1,
          Body: 'x',
          ...sse(key),
        }),
      ),
    'InvalidRequest',
    400,
  );
  await s3.send(
    new AbortMultipartUploadCommand({ Bucket: B, Key: 'multi/plain', UploadId: plainUpload.UploadId }),
  );
  assertNoKeyEchoed(key, srcKey);
});

test('CopyObject: source key, destination another key or none, plaintext to SSE-C, and rotation onto itself', async () => {
  const k1 = customerKey();
  const k2 = customerKey();
  const data = randomBytes(MiB + 4321);
  await s3.send(
    new PutObjectCommand({ Bucket: B, Key: 'copy/src', Body: data, Metadata: { m: 'kept' }, ...sse(k1) }),
  );

  // Without the source key, or with a wrong one.
  await rejects(
    () => s3.send(new CopyObjectCommand({ Bucket: B, Key: 'copy/x', CopySource: `${B}/copy/src` })),
    'InvalidRequest',
    400,
  );
  await rejects(
    () =>
      s3.send(
        new CopyObjectCommand({
          Bucket: B,
          Key: 'copy/x',
          CopySource: `${B}/copy/src`,
          ...copySse(customerKey()),
        }),
      ),
    'AccessDenied',
    403,
  );

  // To another key.
  const c2 = await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'copy/k2',
      CopySource: `${B}/copy/src`,
      ...copySse(k1),
      ...sse(k2),
    }),
  );
  assert.equal(c2.SSECustomerKeyMD5, k2.md5);
  assert.equal(c2.SSECustomerAlgorithm, 'AES256');
  assert.ok((await getBytes('copy/k2', sse(k2))).body.equals(data));
  assert.deepEqual((await getBytes('copy/k2', sse(k2))).out.Metadata, { m: 'kept' });
  await rejects(() => getBytes('copy/k2', sse(k1)), 'AccessDenied', 403);

  // To plaintext: readable without a key, and a key for it is refused.
  await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'copy/plain', CopySource: `${B}/copy/src`, ...copySse(k1) }),
  );
  const plain = await getBytes('copy/plain');
  assert.ok(plain.body.equals(data));
  assert.equal(plain.out.ETag, `"${md5hex(data)}"`);
  await rejects(() => getBytes('copy/plain', sse(k1)), 'InvalidRequest', 400);
  // A copy-source key for a plaintext source is refused too.
  await rejects(
    () =>
      s3.send(
        new CopyObjectCommand({ Bucket: B, Key: 'copy/y', CopySource: `${B}/copy/plain`, ...copySse(k1) }),
      ),
    'InvalidRequest',
    400,
  );

  // Plaintext to SSE-C.
  await s3.send(
    new CopyObjectCommand({ Bucket: B, Key: 'copy/enc', CopySource: `${B}/copy/plain`, ...sse(k2) }),
  );
  assert.ok((await getBytes('copy/enc', sse(k2))).body.equals(data));
  await rejects(() => getBytes('copy/enc'), 'InvalidRequest', 400);

  // Onto itself with a new key: the key rotates, the bytes and metadata stay.
  const rot = await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'copy/src',
      CopySource: `${B}/copy/src`,
      ...copySse(k1),
      ...sse(k2),
    }),
  );
  assert.equal(rot.SSECustomerKeyMD5, k2.md5);
  await rejects(() => getBytes('copy/src', sse(k1)), 'AccessDenied', 403);
  const rotated = await getBytes('copy/src', sse(k2));
  assert.ok(rotated.body.equals(data));
  assert.deepEqual(rotated.out.Metadata, { m: 'kept' });
  assertNoKeyEchoed(k1, k2);
});

test('malformed SSE-C headers are 400 InvalidArgument on writes and reads', async () => {
  const key = customerKey();
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'args', Body: 'x', ...sse(key) }));
  const short = customerKey(randomBytes(16));
  const cases: [string, Record<string, string | undefined>][] = [
    ['bad algorithm', { [`${SSE_C}algorithm`]: 'AES128' }],
    ['short key', { [`${SSE_C}key`]: short.b64, [`${SSE_C}key-md5`]: short.md5 }],
    ['MD5 mismatch', { [`${SSE_C}key-md5`]: customerKey().md5 }],
    ['missing MD5', { [`${SSE_C}key-md5`]: undefined }],
    ['missing key', { [`${SSE_C}key`]: undefined }],
    ['missing algorithm', { [`${SSE_C}algorithm`]: undefined }],
    ['key not base64', { [`${SSE_C}key`]: '!'.repeat(44) }],
  ];
  for (const [what, headers] of cases) {
    const put = await rejects(
      () =>
        s3.send(
          withHeaders(new PutObjectCommand({ Bucket: B, Key: 'args-new', Body: 'y', ...sse(key) }), headers),
        ),
      'InvalidArgument',
      400,
    );
    assert.ok(!put.message.includes(key.b64), what);
    await rejects(
      () => s3.send(withHeaders(new GetObjectCommand({ Bucket: B, Key: 'args', ...sse(key) }), headers)),
      'InvalidArgument',
      400,
    );
    await rejects(
      () =>
        s3.send(
          withHeaders(
            new CopyObjectCommand({ Bucket: B, Key: 'args-copy', CopySource: `${B}/args`, ...copySse(key) }),
            Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.replace(SSE_C, COPY_SSE_C), v])),
          ),
        ),
      'InvalidArgument',
      400,
    );
  }
  // Nothing was written by the refused PUTs.
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'args-new' })), '', 404);
});

test('reading: no key → 400 InvalidRequest, key for a plaintext object → 400 InvalidRequest, wrong key → 403', async () => {
  const key = customerKey();
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'read/enc', Body: 'secret', ...sse(key) }));
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'read/plain', Body: 'public' }));
  const noKey = await rejects(() => getBytes('read/enc'), 'InvalidRequest', 400);
  assert.match(noKey.message, /Server Side Encryption/);
  await rejects(() => getBytes('read/plain', sse(key)), 'InvalidRequest', 400);
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'read/plain', ...sse(key) })), '', 400);
  await rejects(() => getBytes('read/enc', sse(customerKey())), 'AccessDenied', 403);
  assert.equal((await getBytes('read/plain')).body.toString(), 'public');
  assert.equal((await getBytes('read/enc', sse(key))).body.toString(), 'secret');
});

// Raw requests signed by the SDK's signer, for presigned URLs and bodiless HEAD checks.
async function rawSigned(method: string, path: string, headers: Record<string, string>): Promise<Response> {
  const host = `127.0.0.1:${server.s3Port}`;
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign({
    method,
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: server.s3Port,
    path,
    query: {},
    headers: { host, 'x-amz-content-sha256': sha256(Buffer.alloc(0)), ...headers },
  });
  const send = { ...signed.headers };
  delete send.host;
  return fetch(`http://${host}${path}`, { method, headers: send });
}

async function presign(method: string, path: string, signedHeaders: Record<string, string>): Promise<string> {
  const host = `127.0.0.1:${server.s3Port}`;
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).presign(
    {
      method,
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: server.s3Port,
      path,
      query: {},
      // As @aws-sdk/s3-request-presigner does: the body is not part of a presigned URL's signature.
      headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...signedHeaders },
    },
    { expiresIn: 600, unhoistableHeaders: new Set(Object.keys(signedHeaders)) },
  );
  const qs = new URLSearchParams(signed.query as Record<string, string>).toString();
  return `http://${host}${path}?${qs}`;
}

test('presigned URLs with SSE-C headers: all three signed, or the algorithm only', async () => {
  const key = customerKey();
  const data = randomBytes(200_000);
  const all = sseCHeaders(key);
  const put = await fetch(await presign('PUT', `/${B}/presigned`, all), {
    method: 'PUT',
    headers: all,
    body: data,
  });
  assert.equal(put.status, 200, await put.text());
  assert.equal(put.headers.get(`${SSE_C}key-md5`), key.md5);
  assert.equal(put.headers.get(`${SSE_C}key`), null);

  const algOnly = { [`${SSE_C}algorithm`]: 'AES256' };
  const getUrl = await presign('GET', `/${B}/presigned`, algOnly);
  const get = await fetch(getUrl, { headers: all });
  assert.equal(get.status, 200);
  assert.ok(Buffer.from(await get.arrayBuffer()).equals(data));
  assert.equal(get.headers.get(`${SSE_C}algorithm`), 'AES256');
  const ranged = await fetch(getUrl, { headers: { ...all, range: 'bytes=70000-70009' } });
  assert.equal(ranged.status, 206);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(70_000, 70_010)));
  // The URL alone does not read the object: without the signed algorithm header the signature fails, with it
  // alone the key is missing; another key is refused.
  assert.equal((await fetch(getUrl)).status, 403);
  const noKey = await fetch(getUrl, { headers: algOnly });
  assert.equal(noKey.status, 400);
  assert.match(await noKey.text(), /InvalidArgument/);
  assert.equal((await fetch(getUrl, { headers: sseCHeaders(customerKey()) })).status, 403);
  // The SDK reads what the presigned PUT wrote.
  assert.ok((await getBytes('presigned', sse(key))).body.equals(data));
});

test('PostObject with SSE-C form fields under a signed policy', async () => {
  const key = customerKey();
  const now = new Date();
  const date = now.toISOString().slice(0, 10).replace(/-/g, '');
  const amzDate = `${date}T000000Z`;
  const credential = `${server.accessKeyId}/${date}/us-east-1/s3/aws4_request`;
  const fields: [string, string][] = [
    ['key', 'posted/${filename}'],
    ['x-amz-meta-origin', 'browser'],
    [`${SSE_C}algorithm`, 'AES256'],
    [`${SSE_C}key`, key.b64],
    [`${SSE_C}key-MD5`, key.md5],
  ];
  const conditions: unknown[] = [
    { bucket: B },
    ['starts-with', '$key', 'posted/'],
    { 'x-amz-meta-origin': 'browser' },
    { [`${SSE_C}algorithm`]: 'AES256' },
    ['starts-with', `$${SSE_C}key`, ''],
    ['starts-with', `$${SSE_C}key-MD5`, ''],
    { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
    { 'x-amz-credential': credential },
    { 'x-amz-date': amzDate },
  ];
  const policy = Buffer.from(
    JSON.stringify({ expiration: new Date(now.getTime() + 3600_000).toISOString(), conditions }),
  ).toString('base64');
  let signingKey: Buffer = Buffer.from(`AWS4${server.secretAccessKey}`);
  for (const part of [date, 'us-east-1', 's3', 'aws4_request'])
    signingKey = createHmac('sha256', signingKey).update(part).digest();
  const signature = createHmac('sha256', signingKey).update(policy).digest('hex');
  const form = (withKey: boolean) => {
    const fd = new FormData();
    for (const [k, v] of fields) if (withKey || !k.startsWith(SSE_C)) fd.append(k, v);
    fd.append('X-Amz-Algorithm', 'AWS4-HMAC-SHA256');
    fd.append('X-Amz-Credential', credential);
    fd.append('X-Amz-Date', amzDate);
    fd.append('Policy', policy);
    fd.append('X-Amz-Signature', signature);
    fd.append('file', new Blob([data]), 'photo.bin');
    return fd;
  };
  const data = randomBytes(150_000);
  const res = await fetch(`http://127.0.0.1:${server.s3Port}/${B}`, { method: 'POST', body: form(true) });
  assert.equal(res.status, 204, await res.text());
  assert.equal(res.headers.get(`${SSE_C}key-md5`), key.md5);
  assert.equal(res.headers.get(`${SSE_C}algorithm`), 'AES256');
  assert.notEqual(res.headers.get('etag'), `"${md5hex(data)}"`);
  const { out, body } = await getBytes('posted/photo.bin', sse(key));
  assert.ok(body.equals(data));
  assert.deepEqual(out.Metadata, { origin: 'browser' });
  await rejects(() => getBytes('posted/photo.bin'), 'InvalidRequest', 400);

  // A malformed key field is InvalidArgument, like the header.
  const bad = form(true);
  bad.set(`${SSE_C}key-MD5`, customerKey().md5);
  const refused = await fetch(`http://127.0.0.1:${server.s3Port}/${B}`, { method: 'POST', body: bad });
  assert.equal(refused.status, 400);
  assert.match(await refused.text(), /InvalidArgument/);
});
