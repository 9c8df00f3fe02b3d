// Interop: the AWS SDK for JavaScript v3 against a coffre server — bucket operations, CORS with a browser-style
// preflight, and the errors a client meets (NoSuchBucket, AccessDenied for a key without rights, HEAD with no body).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteBucketCorsCommand,
  DeleteObjectCommand,
  GetBucketCorsCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutBucketCorsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { runCoffre, serveForFile, startServerFor, type TestServer } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';

let server: TestServer;
let s3: S3Client;

serveForFile((started) => ({ server, s3 } = started));

/** An S3 client of this server signing with `credentials`. */
function clientAs(credentials: { accessKeyId: string; secretAccessKey: string }): S3Client {
  return new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
}

/** A new access key made with `coffre key create <args…>`: its id, and a client signing with it. */
async function newKeyClient(args: string[]): Promise<{ accessKeyId: string; client: S3Client }> {
  const created = await runCoffre(['key', 'create', ...args, '--json', '--config', server.configPath]);
  assert.equal(created.code, 0, created.stderr);
  const key = JSON.parse(created.stdout) as { accessKeyId: string; secretAccessKey: string };
  return {
    accessKeyId: key.accessKeyId,
    client: clientAs({ accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey }),
  };
}

test('CreateBucket, ListBuckets, HeadBucket, GetBucketLocation, GetBucketVersioning', async () => {
  await s3.send(new CreateBucketCommand({ Bucket: 'alpha' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'beta.with-dots' }));
  // An explicit constraint naming the server's region is accepted.
  await s3.send(
    new CreateBucketCommand({
      Bucket: 'gamma',
      CreateBucketConfiguration: { LocationConstraint: 'us-east-1' as never },
    }),
  );
  const list = await s3.send(new ListBucketsCommand({}));
  const names = (list.Buckets ?? []).map((b) => b.Name);
  for (const n of ['alpha', 'beta.with-dots', 'gamma']) assert.ok(names.includes(n), `${n} listed`);
  for (const b of list.Buckets ?? [])
    assert.ok(b.CreationDate instanceof Date && !isNaN(b.CreationDate.getTime()));
  assert.ok(list.Owner?.ID, 'owner reported');

  const head = await s3.send(new HeadBucketCommand({ Bucket: 'alpha' }));
  assert.equal(head.$metadata.httpStatusCode, 200);
  const loc = await s3.send(new GetBucketLocationCommand({ Bucket: 'alpha' }));
  assert.ok(loc.LocationConstraint === undefined || (loc.LocationConstraint as string) === '');
  const ver = await s3.send(new GetBucketVersioningCommand({ Bucket: 'alpha' }));
  assert.equal(ver.Status, undefined, 'versioning is reported as never enabled');
});

test('CreateBucket of a bucket one owns: 200 in us-east-1 (its legacy rule), BucketAlreadyOwnedByYou elsewhere', async (t) => {
  await s3.send(new CreateBucketCommand({ Bucket: 'owned' }));
  await s3.send(new PutObjectCommand({ Bucket: 'owned', Key: 'kept', Body: 'x' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'owned' }));
  await s3.send(new HeadObjectCommand({ Bucket: 'owned', Key: 'kept' })); // unchanged
  // aws CLI 2 with no region configured sends aws-global: the endpoint's own region.
  await s3.send(
    new CreateBucketCommand({
      Bucket: 'global',
      CreateBucketConfiguration: { LocationConstraint: 'aws-global' as never },
    }),
  );
  const paris = await startServerFor(t, { s3Region: 'eu-west-3' });
  const client = new S3Client({
    endpoint: paris.endpoint,
    region: 'eu-west-3',
    forcePathStyle: true,
    credentials: { accessKeyId: paris.accessKeyId, secretAccessKey: paris.secretAccessKey },
  });
  await client.send(
    new CreateBucketCommand({
      Bucket: 'owned',
      CreateBucketConfiguration: { LocationConstraint: 'eu-west-3' },
    }),
  );
  await rejects(
    () =>
      client.send(
        new CreateBucketCommand({
          Bucket: 'owned',
          CreateBucketConfiguration: { LocationConstraint: 'eu-west-3' },
        }),
      ),
    'BucketAlreadyOwnedByYou',
    409,
  );
});

test('CreateBucket refusals: InvalidBucketName, InvalidLocationConstraint', async () => {
  for (const bad of [
    'ab',
    'Upper-Case',
    'under_score',
    '-leading',
    'trailing-',
    'double..dot',
    '192.168.1.1',
    'x'.repeat(64),
  ]) {
    await rejects(() => s3.send(new CreateBucketCommand({ Bucket: bad })), 'InvalidBucketName', 400);
  }
  await rejects(
    () =>
      s3.send(
        new CreateBucketCommand({
          Bucket: 'elsewhere',
          CreateBucketConfiguration: { LocationConstraint: 'eu-west-3' },
        }),
      ),
    'InvalidLocationConstraint',
    400,
  );
  const names = ((await s3.send(new ListBucketsCommand({}))).Buckets ?? []).map((b) => b.Name);
  assert.ok(!names.includes('elsewhere') && !names.includes('ab'));
});

test('DeleteBucket: a non-empty bucket is refused with BucketNotEmpty, an empty one goes', async () => {
  await s3.send(new CreateBucketCommand({ Bucket: 'to-delete' }));
  await s3.send(new PutObjectCommand({ Bucket: 'to-delete', Key: 'k', Body: 'x' }));
  await rejects(() => s3.send(new DeleteBucketCommand({ Bucket: 'to-delete' })), 'BucketNotEmpty', 409);
  // Still there, object intact.
  await s3.send(new HeadObjectCommand({ Bucket: 'to-delete', Key: 'k' }));
  await s3.send(new DeleteObjectCommand({ Bucket: 'to-delete', Key: 'k' }));
  const del = await s3.send(new DeleteBucketCommand({ Bucket: 'to-delete' }));
  assert.equal(del.$metadata.httpStatusCode, 204);
  await rejects(() => s3.send(new HeadBucketCommand({ Bucket: 'to-delete' })), 'NotFound', 404);
  await rejects(() => s3.send(new DeleteBucketCommand({ Bucket: 'to-delete' })), 'NoSuchBucket', 404);
  // The name can be taken again.
  await s3.send(new CreateBucketCommand({ Bucket: 'to-delete' }));
  await s3.send(new DeleteBucketCommand({ Bucket: 'to-delete' }));
});

test('Put/Get/DeleteBucketCors and a preflight OPTIONS from a browser', async () => {
  await s3.send(new CreateBucketCommand({ Bucket: 'web' }));
  await rejects(() => s3.send(new GetBucketCorsCommand({ Bucket: 'web' })), 'NoSuchCORSConfiguration', 404);
  const preflight = (origin: string, method: string, headers?: string) =>
    fetch(`${server.endpoint}/web/some/key.txt`, {
      method: 'OPTIONS',
      headers: {
        Origin: origin,
        'Access-Control-Request-Method': method,
        ...(headers ? { 'Access-Control-Request-Headers': headers } : {}),
      },
    });
  // No configuration yet: the preflight is refused.
  const before = await preflight('https://app.example', 'PUT');
  assert.equal(before.status, 403);
  await before.arrayBuffer();

  await s3.send(
    new PutBucketCorsCommand({
      Bucket: 'web',
      CORSConfiguration: {
        CORSRules: [
          {
            ID: 'app',
            AllowedOrigins: ['https://app.example'],
            AllowedMethods: ['GET', 'PUT'],
            AllowedHeaders: ['content-type', 'x-amz-*'],
            ExposeHeaders: ['ETag'],
            MaxAgeSeconds: 600,
          },
          { AllowedOrigins: ['*'], AllowedMethods: ['GET'] },
        ],
      },
    }),
  );
  const got = await s3.send(new GetBucketCorsCommand({ Bucket: 'web' }));
  assert.equal(got.CORSRules?.length, 2);
  assert.deepEqual(got.CORSRules?.[0].AllowedMethods, ['GET', 'PUT']);
  assert.deepEqual(got.CORSRules?.[0].AllowedOrigins, ['https://app.example']);
  assert.deepEqual(got.CORSRules?.[0].ExposeHeaders, ['ETag']);
  assert.equal(got.CORSRules?.[0].MaxAgeSeconds, 600);
  assert.equal(got.CORSRules?.[0].ID, 'app');

  const ok = await preflight('https://app.example', 'PUT', 'Content-Type, X-Amz-Meta-Color');
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.match(ok.headers.get('access-control-allow-methods') ?? '', /PUT/);
  assert.match((ok.headers.get('access-control-allow-headers') ?? '').toLowerCase(), /content-type/);
  assert.equal(ok.headers.get('access-control-max-age'), '600');
  await ok.arrayBuffer();

  // Wildcard rule allows GET from anywhere, but not PUT; a header outside the list is refused.
  const anyGet = await preflight('https://other.example', 'GET');
  assert.equal(anyGet.status, 200);
  assert.ok(['*', 'https://other.example'].includes(anyGet.headers.get('access-control-allow-origin') ?? ''));
  await anyGet.arrayBuffer();
  const anyPut = await preflight('https://other.example', 'PUT');
  assert.equal(anyPut.status, 403);
  await anyPut.arrayBuffer();
  const badHeader = await preflight('https://app.example', 'PUT', 'x-not-allowed');
  assert.equal(badHeader.status, 403);
  await badHeader.arrayBuffer();

  // An ordinary signed request with an Origin carries the CORS headers.
  await s3.send(new PutObjectCommand({ Bucket: 'web', Key: 'some/key.txt', Body: 'hello' }));
  const get = new GetObjectCommand({ Bucket: 'web', Key: 'some/key.txt' });
  let seen: Record<string, string> = {};
  get.middlewareStack.add(
    (next) => async (args) => {
      (args.request as { headers: Record<string, string> }).headers.origin = 'https://app.example';
      return next(args);
    },
    { step: 'build', name: 'addOrigin' },
  );
  get.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      seen = (out.response as { headers: Record<string, string> }).headers;
      return out;
    },
    { step: 'deserialize', name: 'captureHeaders' },
  );
  const obj = await s3.send(get);
  assert.equal(await obj.Body!.transformToString(), 'hello');
  assert.equal(seen['access-control-allow-origin'], 'https://app.example');
  assert.match(seen['access-control-expose-headers'] ?? '', /ETag/);

  await s3.send(new DeleteBucketCorsCommand({ Bucket: 'web' }));
  await rejects(() => s3.send(new GetBucketCorsCommand({ Bucket: 'web' })), 'NoSuchCORSConfiguration', 404);
  const gone = await preflight('https://app.example', 'GET');
  assert.equal(gone.status, 403);
  await gone.arrayBuffer();
});

test('errors: NoSuchBucket, NoSuchKey, and HEAD errors carry no body', async () => {
  await rejects(() => s3.send(new ListObjectsV2Command({ Bucket: 'no-such-bucket' })), 'NoSuchBucket', 404);
  await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: 'no-such-bucket', Key: 'k' })),
    'NoSuchBucket',
    404,
  );
  await s3.send(new CreateBucketCommand({ Bucket: 'errs' }));
  const e = await rejects(
    () => s3.send(new GetObjectCommand({ Bucket: 'errs', Key: 'missing' })),
    'NoSuchKey',
    404,
  );
  assert.ok((e as unknown as { RequestId?: string }).RequestId ?? e.$metadata.requestId);

  // Raw HEADs: status only, no body bytes, no XML.
  for (const path of ['/errs/missing', '/no-such-bucket', '/no-such-bucket/k']) {
    const res = await fetch(server.endpoint + path, { method: 'HEAD' });
    assert.ok(res.status >= 400, `${path} → ${res.status}`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body.length, 0, `HEAD ${path} has no body`);
  }
  // The same GET anonymously is an XML AccessDenied, never a listing.
  const anon = await fetch(server.endpoint + '/errs');
  assert.equal(anon.status, 403);
  const text = await anon.text();
  assert.match(text, /<Code>AccessDenied<\/Code>/);
});

test('AccessDenied for a second key without permission, then allowed after bucket allow', async () => {
  await s3.send(new CreateBucketCommand({ Bucket: 'private' }));
  await s3.send(new PutObjectCommand({ Bucket: 'private', Key: 'secret.txt', Body: 'top secret' }));
  const { accessKeyId, client: other } = await newKeyClient(['visitor']);
  try {
    await rejects(
      () => other.send(new GetObjectCommand({ Bucket: 'private', Key: 'secret.txt' })),
      'AccessDenied',
      403,
    );
    await rejects(() => other.send(new ListObjectsV2Command({ Bucket: 'private' })), 'AccessDenied', 403);
    await rejects(
      () => other.send(new PutObjectCommand({ Bucket: 'private', Key: 'x', Body: 'y' })),
      'AccessDenied',
      403,
    );
    await rejects(() => other.send(new DeleteBucketCommand({ Bucket: 'private' })), 'AccessDenied', 403);
    await rejects(() => other.send(new HeadBucketCommand({ Bucket: 'private' })), '', 403);
    // Without --create-bucket the key may not create buckets.
    await rejects(
      () => other.send(new CreateBucketCommand({ Bucket: 'visitor-bucket' })),
      'AccessDenied',
      403,
    );
    const mine = await other.send(new ListBucketsCommand({}));
    assert.deepEqual(mine.Buckets ?? [], [], 'a key sees only buckets it has rights on');

    const allow = await runCoffre([
      'bucket',
      'allow',
      'private',
      '--key',
      accessKeyId,
      '--read',
      '--config',
      server.configPath,
    ]);
    assert.equal(allow.code, 0, allow.stderr);
    const obj = await other.send(new GetObjectCommand({ Bucket: 'private', Key: 'secret.txt' }));
    assert.equal(await obj.Body!.transformToString(), 'top secret');
    // Read does not grant write.
    await rejects(
      () => other.send(new PutObjectCommand({ Bucket: 'private', Key: 'x', Body: 'y' })),
      'AccessDenied',
      403,
    );
  } finally {
    other.destroy();
  }
  // A key id that does not exist, and a wrong secret.
  const ghost = clientAs({ accessKeyId: 'GKnonexistent000000000000', secretAccessKey: 'x'.repeat(40) });
  const wrong = clientAs({ accessKeyId: server.accessKeyId, secretAccessKey: 'x'.repeat(40) });
  try {
    await rejects(() => ghost.send(new ListBucketsCommand({})), 'InvalidAccessKeyId', 403);
    await rejects(() => wrong.send(new ListBucketsCommand({})), 'SignatureDoesNotMatch', 403);
  } finally {
    ghost.destroy();
    wrong.destroy();
  }
});

test('BucketAlreadyExists when another key owns the name; each key lists only its own buckets', async () => {
  await s3.send(new CreateBucketCommand({ Bucket: 'taken-name' }));
  const { client: builder } = await newKeyClient(['builder', '--create-bucket']);
  try {
    await rejects(
      () => builder.send(new CreateBucketCommand({ Bucket: 'taken-name' })),
      'BucketAlreadyExists',
      409,
    );
    await builder.send(new CreateBucketCommand({ Bucket: 'builders-own' }));
    const theirs = (await builder.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name);
    assert.deepEqual(theirs, ['builders-own']);
    const mine = (await s3.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name) ?? [];
    assert.ok(!mine.includes('builders-own'));
    await rejects(() => s3.send(new HeadBucketCommand({ Bucket: 'builders-own' })), '', 403);
  } finally {
    builder.destroy();
  }
});
