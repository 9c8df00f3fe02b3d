// Interop: the errors the AWS SDK for JavaScript v3 meets against a coffre server, as typed exceptions with the
// right code and status — missing buckets for every operation family, permissions per key (read / write /
// owner), operations coffre does not build (NotImplemented), limits, and the XML error body's fields.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteBucketCorsCommand,
  DeleteObjectsCommand,
  GetBucketCorsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  PutBucketCorsCommand,
  PutBucketLoggingCommand,
  PutBucketWebsiteCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { signer } from '../api/s3/sigv4-client.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';

let server: TestServer;
let s3: S3Client;
const B = 'errors';

before(async () => {
  server = await startServer();
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'exists.txt', Body: 'here' }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

async function keyWith(name: string, perms: string[]): Promise<S3Client> {
  const created = await runCoffre(['key', 'create', name, '--json', '--config', server.configPath]);
  assert.equal(created.code, 0, created.stderr);
  const key = JSON.parse(created.stdout) as { accessKeyId: string; secretAccessKey: string };
  if (perms.length) {
    const allow = await runCoffre([
      'bucket',
      'allow',
      B,
      '--key',
      key.accessKeyId,
      ...perms,
      '--config',
      server.configPath,
    ]);
    assert.equal(allow.code, 0, allow.stderr);
  }
  return new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
  });
}

test('NoSuchBucket from every operation family', async () => {
  const nb = 'no-such-bucket';
  const ops: [string, () => Promise<unknown>][] = [
    ['ListObjects', () => s3.send(new ListObjectsCommand({ Bucket: nb }))],
    ['ListObjectsV2', () => s3.send(new ListObjectsV2Command({ Bucket: nb }))],
    ['PutObject', () => s3.send(new PutObjectCommand({ Bucket: nb, Key: 'k', Body: 'x' }))],
    ['GetObject', () => s3.send(new GetObjectCommand({ Bucket: nb, Key: 'k' }))],
    [
      'DeleteObjects',
      () => s3.send(new DeleteObjectsCommand({ Bucket: nb, Delete: { Objects: [{ Key: 'k' }] } })),
    ],
    ['CreateMultipartUpload', () => s3.send(new CreateMultipartUploadCommand({ Bucket: nb, Key: 'k' }))],
    ['ListMultipartUploads', () => s3.send(new ListMultipartUploadsCommand({ Bucket: nb }))],
    ['GetBucketCors', () => s3.send(new GetBucketCorsCommand({ Bucket: nb }))],
    ['GetBucketLocation', () => s3.send(new GetBucketLocationCommand({ Bucket: nb }))],
    ['DeleteBucket', () => s3.send(new DeleteBucketCommand({ Bucket: nb }))],
  ];
  for (const [name, op] of ops) {
    const e = await rejects(op, 'NoSuchBucket', 404).catch((err: Error) => {
      throw new Error(`${name}: ${err.message}`);
    });
    assert.equal((e as unknown as { BucketName?: string }).BucketName, nb, `${name} names the bucket`);
  }
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: nb, Key: 'k' })), '', 404);
});

test('permissions: read-only, write-only and read+write keys, owner-only operations', async () => {
  const reader = await keyWith('reader', ['--read']);
  const writer = await keyWith('writer', ['--write']);
  const both = await keyWith('readwriter', ['--read', '--write']);
  try {
    // Reader: reads, lists; no writes.
    const got = await reader.send(new GetObjectCommand({ Bucket: B, Key: 'exists.txt' }));
    assert.equal(await got.Body!.transformToString(), 'here');
    await reader.send(new ListObjectsV2Command({ Bucket: B }));
    await rejects(
      () => reader.send(new PutObjectCommand({ Bucket: B, Key: 'r', Body: 'x' })),
      'AccessDenied',
      403,
    );
    await rejects(
      () =>
        reader.send(new DeleteObjectsCommand({ Bucket: B, Delete: { Objects: [{ Key: 'exists.txt' }] } })),
      'AccessDenied',
      403,
    );
    await rejects(
      () => reader.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'r' })),
      'AccessDenied',
      403,
    );

    // Writer: writes; no reads.
    await writer.send(new PutObjectCommand({ Bucket: B, Key: 'from-writer', Body: 'w' }));
    await rejects(
      () => writer.send(new GetObjectCommand({ Bucket: B, Key: 'from-writer' })),
      'AccessDenied',
      403,
    );
    await rejects(() => writer.send(new ListObjectsV2Command({ Bucket: B })), 'AccessDenied', 403);
    await rejects(() => writer.send(new HeadObjectCommand({ Bucket: B, Key: 'from-writer' })), '', 403);

    // Read+write but not owner: bucket configuration and deletion are the owner's.
    await rejects(() => both.send(new DeleteBucketCommand({ Bucket: B })), 'AccessDenied', 403);
    await rejects(
      () =>
        both.send(
          new PutBucketCorsCommand({
            Bucket: B,
            CORSConfiguration: { CORSRules: [{ AllowedOrigins: ['*'], AllowedMethods: ['GET'] }] },
          }),
        ),
      'AccessDenied',
      403,
    );
    await rejects(() => both.send(new DeleteBucketCorsCommand({ Bucket: B })), 'AccessDenied', 403);
    const mp = await both.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'both-mp' }));
    // Another key's upload id is still addressed by bucket + key; a key without write can't add parts to it.
    await rejects(
      () =>
        reader.send(
          new UploadPartCommand({
            Bucket: B,
            Key: 'both-mp',
            UploadId: mp.UploadId,
            PartNumber: 1,
            Body: 'x',
          }),
        ),
      'AccessDenied',
      403,
    );
    // The object written by the writer is readable by the owner.
    const own = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'from-writer' }));
    assert.equal(await own.Body!.transformToString(), 'w');
  } finally {
    reader.destroy();
    writer.destroy();
    both.destroy();
  }
});

test('operations coffre does not build are NotImplemented (501), never mistaken for object or bucket calls', async () => {
  await rejects(
    () =>
      s3.send(
        new PutBucketWebsiteCommand({
          Bucket: B,
          WebsiteConfiguration: { IndexDocument: { Suffix: 'index.html' } },
        }),
      ),
    'NotImplemented',
    501,
  );
  await rejects(
    () => s3.send(new PutBucketLoggingCommand({ Bucket: B, BucketLoggingStatus: {} })),
    'NotImplemented',
    501,
  );
  // None of that touched the object.
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'exists.txt' }));
  assert.equal(await got.Body!.transformToString(), 'here');
});

test('limits: key too long, bad max-keys, oversized declared body', async () => {
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: B, Key: 'k'.repeat(1025), Body: 'x' })),
    'KeyTooLongError',
    400,
  );
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'k'.repeat(1024), Body: 'x' }));
  await rejects(() => s3.send(new ListObjectsV2Command({ Bucket: B, MaxKeys: -1 })), 'InvalidArgument', 400);
  // max-keys above 1000 is capped at 1000, not refused.
  const capped = await s3.send(new ListObjectsV2Command({ Bucket: B, MaxKeys: 5000 }));
  assert.equal(capped.MaxKeys, 1000);

  // A PUT declaring more than 5 GiB is refused from its headers, before any byte of body is read.
  const host = `127.0.0.1:${server.s3Port}`;
  const headers: Record<string, string> = {
    host,
    'content-length': String(5 * 1024 ** 3 + 1),
    'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
  };
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign(
    {
      method: 'PUT',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: server.s3Port,
      path: `/${B}/huge`,
      query: {},
      headers,
    },
    { signingDate: new Date() },
  );
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: server.s3Port, method: 'PUT', path: `/${B}/huge`, headers: signed.headers },
      (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => {
          resolve({ status: r.statusCode ?? 0, body });
          req.destroy();
        });
      },
    );
    req.on('error', reject);
    req.write('a few bytes, then we wait for the answer');
    // Do not end: the server must answer without waiting for 5 GiB.
  });
  assert.equal(res.status, 400);
  assert.match(res.body, /<Code>EntityTooLarge<\/Code>/);
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: B, Key: 'huge' })), 'NotFound', 404);
});

test('error bodies carry Code, Message, Resource and a RequestId matching x-amz-request-id', async () => {
  const res = await fetch(`${server.endpoint}/${B}/missing-key`, {
    headers: { Authorization: 'AWS4-HMAC-SHA256 garbage' },
  });
  const text = await res.text();
  assert.equal(res.status, 400);
  assert.match(res.headers.get('content-type') ?? '', /xml/);
  assert.match(text, /^<\?xml version="1.0" encoding="UTF-8"\?>\s*<Error>/);
  assert.match(text, /<Code>AuthorizationHeaderMalformed<\/Code>/);
  assert.match(text, /<Message>[^<]+<\/Message>/);
  const rid = /<RequestId>([^<]+)<\/RequestId>/.exec(text)?.[1];
  assert.ok(rid);
  assert.equal(res.headers.get('x-amz-request-id'), rid);

  const e = await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: B, Key: 'missing key' })),
    'NoSuchKey',
    404,
  );
  assert.equal((e as unknown as { Key?: string }).Key, 'missing key');
  assert.ok(e.$metadata.requestId);
  assert.match(e.message, /does not exist/);
});
