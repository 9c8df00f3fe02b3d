// Interop: bucket policies driven by the AWS SDK v3 against real coffre nodes — Put/Get/DeleteBucketPolicy and
// GetBucketPolicyStatus, a public-read bucket read anonymously, grants to a key with no permission of its own,
// s3:prefix listings, AWS's "refuse uploads that are not encrypted" and "refuse plain HTTP" recipes as AWS
// documents them (single PUT, copy and multipart), aws:SourceIp behind a trusted proxy, and the attacker's
// side: unsigned requests on private buckets, oversized, nested and hostile documents, wildcard tricks.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketPolicyCommand,
  DeleteObjectsCommand,
  GetBucketPolicyCommand,
  GetBucketPolicyStatusCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutBucketPolicyCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { runCoffre, startServer, startServerFor, type TestServer } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';
import { mustCli, operatorKey } from '../security/sse-s3-helpers.js';
import { httpsClient, startTlsServer } from '../security/ssec-helpers.js';

let server: TestServer;
let s3: S3Client;
let other: { id: string; secret: string; client: S3Client };

const doc = (bucket: string, ...statements: object[]) =>
  JSON.stringify({
    Version: '2012-10-17',
    Statement: statements.map((s) => ({ Resource: `arn:aws:s3:::${bucket}/*`, ...s })),
  });

async function putPolicy(bucket: string, ...statements: object[]) {
  await s3.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy: doc(bucket, ...statements) }));
}

/** An unsigned request, exactly as sent (the path is not normalized). */
function anonymous(
  method: string,
  path: string,
  opts: { body?: Buffer; headers?: Record<string, string>; port?: number } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: opts.port ?? server.s3Port,
        method,
        path,
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const codeOf = (body: string) => /<Code>([^<]*)<\/Code>/.exec(body)?.[1];

before(async () => {
  server = await startServer();
  s3 = server.client();
  const operator = await operatorKey('policies');
  await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  const created = await runCoffre(['key', 'create', 'other', '--json', '--config', server.configPath]);
  assert.equal(created.code, 0, created.stderr);
  const key = JSON.parse(created.stdout) as { accessKeyId: string; secretAccessKey: string };
  other = {
    id: key.accessKeyId,
    secret: key.secretAccessKey,
    client: new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
    }),
  };
});

after(async () => {
  await server?.stop();
  server?.cleanup();
});

test('Put, Get, Delete BucketPolicy and GetBucketPolicyStatus round trip; an absent policy is NoSuchBucketPolicy', async () => {
  const b = 'pol-roundtrip';
  await s3.send(new CreateBucketCommand({ Bucket: b }));
  await rejects(() => s3.send(new GetBucketPolicyCommand({ Bucket: b })), 'NoSuchBucketPolicy', 404);
  await rejects(() => s3.send(new GetBucketPolicyStatusCommand({ Bucket: b })), 'NoSuchBucketPolicy', 404);
  const text = doc(b, { Sid: 'PublicRead', Effect: 'Allow', Principal: '*', Action: 's3:GetObject' });
  await s3.send(new PutBucketPolicyCommand({ Bucket: b, Policy: text }));
  assert.equal((await s3.send(new GetBucketPolicyCommand({ Bucket: b }))).Policy, text);
  assert.equal((await s3.send(new GetBucketPolicyStatusCommand({ Bucket: b }))).PolicyStatus?.IsPublic, true);
  await putPolicy(b, { Effect: 'Allow', Principal: { AWS: [other.id] }, Action: 's3:GetObject' });
  assert.equal(
    (await s3.send(new GetBucketPolicyStatusCommand({ Bucket: b }))).PolicyStatus?.IsPublic,
    false,
  );
  await s3.send(new DeleteBucketPolicyCommand({ Bucket: b }));
  await s3.send(new DeleteBucketPolicyCommand({ Bucket: b })); // deleting what is not there is fine
  await rejects(() => s3.send(new GetBucketPolicyCommand({ Bucket: b })), 'NoSuchBucketPolicy', 404);
});

test('MalformedPolicy as AWS answers it; a principal that is no access key is refused', async () => {
  const b = 'pol-malformed';
  await s3.send(new CreateBucketCommand({ Bucket: b }));
  const put = (Policy: string) => s3.send(new PutBucketPolicyCommand({ Bucket: b, Policy }));
  const cases: [string, string][] = [
    ['not json', "Policies must be valid JSON and the first byte must be '{'"],
    ['{"Statement": [', 'This policy contains invalid Json'],
    [
      doc(b, {
        Effect: 'Allow',
        Principal: '*',
        Action: 's3:GetObject',
        Resource: 'arn:aws:s3:::pol-roundtrip/*',
      }),
      'Policy has invalid resource',
    ],
    [doc(b, { Effect: 'Allow', Principal: '*', Action: 's3:Fly' }), 'Policy has invalid action'],
    [
      doc(b, { Effect: 'Allow', Principal: { AWS: 'GK000000000000000000000000' }, Action: 's3:GetObject' }),
      'Invalid principal in policy',
    ],
    [`{"Statement":${'['.repeat(3000)}${']'.repeat(3000)}}`, 'This policy contains invalid Json'],
    [
      doc(b, { Sid: 'x'.repeat(20 * 1024), Effect: 'Allow', Principal: '*', Action: 's3:GetObject' }),
      'Policies must be no larger than 20480 bytes',
    ],
  ];
  for (const [text, message] of cases) {
    const err = await rejects(() => put(text), 'MalformedPolicy', 400);
    assert.equal(err.message, message, text.slice(0, 100));
  }
  await rejects(() => s3.send(new GetBucketPolicyCommand({ Bucket: b })), 'NoSuchBucketPolicy', 404);
  // A body far beyond any policy is not read at all.
  await rejects(() => put(`{"Id":"${'x'.repeat(100 * 1024)}"}`), 'MaxMessageLengthExceeded', 400);
});

test('a public-read bucket: anonymous GET of objects only; listing, writing and other buckets stay refused', async () => {
  const pub = 'pol-public';
  const priv = 'pol-public-not'; // a name that starts like the public one
  for (const b of [pub, priv]) {
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    await s3.send(new PutObjectCommand({ Bucket: b, Key: 'index.html', Body: `hello from ${b}` }));
    await s3.send(new PutObjectCommand({ Bucket: b, Key: 'secret', Body: 'secret' }));
  }
  await putPolicy(pub, {
    Effect: 'Allow',
    Principal: '*',
    Action: 's3:GetObject',
    Resource: `arn:aws:s3:::${pub}/index.html`,
  });
  const got = await anonymous('GET', `/${pub}/index.html`);
  assert.equal(got.status, 200);
  assert.equal(got.body, `hello from ${pub}`);
  assert.equal((await anonymous('HEAD', `/${pub}/index.html`)).status, 200);
  for (const [method, path] of [
    ['GET', `/${pub}/secret`],
    ['GET', `/${pub}/index.html/../secret`], // taken literally: a key no one granted
    ['GET', `/${pub}/index.htmlx`],
    ['GET', `/${pub}`],
    ['GET', `/${pub}?list-type=2`],
    ['PUT', `/${pub}/index.html`],
    ['DELETE', `/${pub}/index.html`],
    ['GET', `/${pub}?policy`],
    ['PUT', `/${pub}?policy`],
    ['GET', `/${priv}/index.html`],
    ['GET', '/no-such-bucket/index.html'],
    ['GET', '/'],
    ['POST', `/${pub}/index.html?uploads`],
  ]) {
    const r = await anonymous(method!, path!, method === 'PUT' ? { body: Buffer.from('{}') } : {});
    assert.equal(r.status, 403, `${method} ${path}: ${r.body}`);
    if (method !== 'HEAD') assert.equal(codeOf(r.body), 'AccessDenied', `${method} ${path}`);
  }
  assert.equal((await anonymous('GET', `/${pub}/index.html`)).body, `hello from ${pub}`); // nothing changed
  // An unsigned request the node cannot even route is refused as one it is not granted.
  assert.equal((await anonymous('PATCH', `/${pub}`)).status, 403);
  assert.equal((await anonymous('GET', `/${pub}?torrent`)).status, 403);
});

test('a policy grants a key without permissions; s3:prefix bounds its listings; Deny wins over the owner', async () => {
  const b = 'pol-grant';
  await s3.send(new CreateBucketCommand({ Bucket: b }));
  await s3.send(new PutObjectCommand({ Bucket: b, Key: 'home/other/a.txt', Body: 'a' }));
  await s3.send(new PutObjectCommand({ Bucket: b, Key: 'home/owner/b.txt', Body: 'b' }));
  await rejects(
    () => other.client.send(new GetObjectCommand({ Bucket: b, Key: 'home/other/a.txt' })),
    'AccessDenied',
    403,
  );
  await putPolicy(
    b,
    {
      Effect: 'Allow',
      Principal: { AWS: other.id },
      Action: ['s3:GetObject', 's3:PutObject'],
      Resource: `arn:aws:s3:::${b}/home/other/*`,
    },
    {
      Effect: 'Allow',
      Principal: { AWS: [other.id] },
      Action: 's3:ListBucket',
      Resource: `arn:aws:s3:::${b}`,
      Condition: { StringLike: { 's3:prefix': 'home/other/*' } },
    },
    { Effect: 'Deny', Principal: '*', Action: 's3:DeleteObject', Resource: `arn:aws:s3:::${b}/home/owner/*` },
  );
  const a = await other.client.send(new GetObjectCommand({ Bucket: b, Key: 'home/other/a.txt' }));
  assert.equal(await a.Body!.transformToString(), 'a');
  await other.client.send(new PutObjectCommand({ Bucket: b, Key: 'home/other/c.txt', Body: 'c' }));
  await rejects(
    () => other.client.send(new GetObjectCommand({ Bucket: b, Key: 'home/owner/b.txt' })),
    'AccessDenied',
    403,
  );
  const listed = await other.client.send(new ListObjectsV2Command({ Bucket: b, Prefix: 'home/other/' }));
  assert.deepEqual(
    listed.Contents?.map((o) => o.Key),
    ['home/other/a.txt', 'home/other/c.txt'],
  );
  await rejects(() => other.client.send(new ListObjectsV2Command({ Bucket: b })), 'AccessDenied', 403);
  await rejects(
    () => other.client.send(new ListObjectsV2Command({ Bucket: b, Prefix: 'home/' })),
    'AccessDenied',
    403,
  );
  // The explicit Deny binds the owner too, key by key in a batch delete.
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: b, Key: 'nothing' })), 'NoSuchKey', 404);
  const batch = await s3.send(
    new DeleteObjectsCommand({
      Bucket: b,
      Delete: { Objects: [{ Key: 'home/owner/b.txt' }, { Key: 'home/other/c.txt' }] },
    }),
  );
  assert.deepEqual(
    batch.Deleted?.map((d) => d.Key),
    ['home/other/c.txt'],
  );
  assert.deepEqual(
    batch.Errors?.map((e) => [e.Key, e.Code]),
    [['home/owner/b.txt', 'AccessDenied']],
  );
  // … but never locks the owner out of the policy itself.
  await putPolicy(b, {
    Effect: 'Deny',
    Principal: '*',
    Action: 's3:*',
    Resource: [`arn:aws:s3:::${b}`, `arn:aws:s3:::${b}/*`],
  });
  await rejects(() => s3.send(new ListObjectsV2Command({ Bucket: b })), 'AccessDenied', 403);
  await s3.send(new GetBucketPolicyCommand({ Bucket: b }));
  await s3.send(new DeleteBucketPolicyCommand({ Bucket: b }));
  await s3.send(new ListObjectsV2Command({ Bucket: b }));
  // A key without owner cannot write a policy, whatever the policy says.
  await rejects(
    () =>
      other.client.send(
        new PutBucketPolicyCommand({
          Bucket: b,
          Policy: doc(b, { Effect: 'Allow', Principal: '*', Action: 's3:*' }),
        }),
      ),
    'AccessDenied',
    403,
  );
});

// The recipe of AWS's documentation, word for word but for the bucket name.
const denyUnencrypted = (b: string) =>
  JSON.stringify({
    Version: '2012-10-17',
    Id: 'PutObjectPolicy',
    Statement: [
      {
        Sid: 'DenyIncorrectEncryptionHeader',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:PutObject',
        Resource: `arn:aws:s3:::${b}/*`,
        Condition: { StringNotEquals: { 's3:x-amz-server-side-encryption': 'AES256' } },
      },
      {
        Sid: 'DenyUnencryptedObjectUploads',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:PutObject',
        Resource: `arn:aws:s3:::${b}/*`,
        Condition: { Null: { 's3:x-amz-server-side-encryption': 'true' } },
      },
    ],
  });

test('"refuse uploads that are not encrypted": PUT, copy and multipart without SSE refused, with SSE-S3 stored', async () => {
  const b = 'pol-encrypted';
  await s3.send(new CreateBucketCommand({ Bucket: b }));
  await s3.send(new PutObjectCommand({ Bucket: b, Key: 'before', Body: 'plain, written before the policy' }));
  await s3.send(new PutBucketPolicyCommand({ Bucket: b, Policy: denyUnencrypted(b) }));
  await rejects(
    () => s3.send(new PutObjectCommand({ Bucket: b, Key: 'plain', Body: 'x' })),
    'AccessDenied',
    403,
  );
  await rejects(
    () =>
      s3.send(new PutObjectCommand({ Bucket: b, Key: 'kms', Body: 'x', ServerSideEncryption: 'aws:kms' })),
    'AccessDenied',
    403,
  );
  const put = await s3.send(
    new PutObjectCommand({ Bucket: b, Key: 'sealed', Body: 'x', ServerSideEncryption: 'AES256' }),
  );
  assert.equal(put.ServerSideEncryption, 'AES256');
  await rejects(
    () => s3.send(new CopyObjectCommand({ Bucket: b, Key: 'copy', CopySource: `${b}/before` })),
    'AccessDenied',
    403,
  );
  await s3.send(
    new CopyObjectCommand({
      Bucket: b,
      Key: 'copy',
      CopySource: `${b}/before`,
      ServerSideEncryption: 'AES256',
    }),
  );
  await rejects(
    () => s3.send(new CreateMultipartUploadCommand({ Bucket: b, Key: 'mpu' })),
    'AccessDenied',
    403,
  );
  // Parts carry no encryption header: the upload's, checked when it was created, is theirs.
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: b, Key: 'mpu', ServerSideEncryption: 'AES256' }),
  );
  const part = await s3.send(
    new UploadPartCommand({ Bucket: b, Key: 'mpu', UploadId, PartNumber: 1, Body: 'part one' }),
  );
  const done = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: b,
      Key: 'mpu',
      UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
    }),
  );
  assert.ok(done.ETag);
  const read = await s3.send(new GetObjectCommand({ Bucket: b, Key: 'mpu' }));
  assert.equal(read.ServerSideEncryption, 'AES256');
  assert.equal(await read.Body!.transformToString(), 'part one');
});

test('"refuse plain HTTP": aws:SecureTransport false is denied over HTTP, allowed over TLS', async (t) => {
  const denyHttp = (b: string) =>
    JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'AllowSSLRequestsOnly',
          Effect: 'Deny',
          Principal: '*',
          Action: 's3:*',
          Resource: [`arn:aws:s3:::${b}`, `arn:aws:s3:::${b}/*`],
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        },
      ],
    });
  const b = 'pol-https';
  await s3.send(new CreateBucketCommand({ Bucket: b }));
  await s3.send(new PutBucketPolicyCommand({ Bucket: b, Policy: denyHttp(b) }));
  await rejects(() => s3.send(new PutObjectCommand({ Bucket: b, Key: 'k', Body: 'x' })), 'AccessDenied', 403);
  await rejects(() => s3.send(new ListObjectsV2Command({ Bucket: b })), 'AccessDenied', 403);

  const { server: tlsServer, ca } = await startTlsServer();
  t.after(async () => {
    await tlsServer.stop();
    tlsServer.cleanup();
  });
  const secure = httpsClient(tlsServer, ca);
  await secure.send(new CreateBucketCommand({ Bucket: b }));
  await secure.send(new PutBucketPolicyCommand({ Bucket: b, Policy: denyHttp(b) }));
  await secure.send(new PutObjectCommand({ Bucket: b, Key: 'k', Body: 'over TLS' }));
  const got = await secure.send(new GetObjectCommand({ Bucket: b, Key: 'k' }));
  assert.equal(await got.Body!.transformToString(), 'over TLS');
});

test('aws:SourceIp is the client a trusted proxy names, and a forged X-Forwarded-For is not believed', async (t) => {
  const proxied = await startServerFor(t, { extraConfig: 'trusted_proxies = ["127.0.0.1"]' });
  const client = proxied.client();
  const b = 'pol-source-ip';
  await client.send(new CreateBucketCommand({ Bucket: b }));
  await client.send(new PutObjectCommand({ Bucket: b, Key: 'k', Body: 'office only' }));
  const policy = doc(b, {
    Effect: 'Allow',
    Principal: '*',
    Action: 's3:GetObject',
    Condition: { IpAddress: { 'aws:SourceIp': '10.20.0.0/16' } },
  });
  await client.send(new PutBucketPolicyCommand({ Bucket: b, Policy: policy }));
  assert.equal(
    (await client.send(new GetBucketPolicyStatusCommand({ Bucket: b }))).PolicyStatus?.IsPublic,
    false,
  );
  const via = (address: string) =>
    anonymous('GET', `/${b}/k`, { port: proxied.s3Port, headers: { 'x-forwarded-for': address } });
  assert.equal((await via('10.20.3.4')).status, 200);
  assert.equal((await via('192.0.2.1')).status, 403);
  // The same header from a peer that is not a trusted proxy names nobody: the peer itself is the client.
  const direct = await anonymous('GET', `/${b}/k`, { headers: { 'x-forwarded-for': '10.20.3.4' } });
  assert.equal(direct.status, 403);
});

test('unsigned requests with large bodies on a private bucket are refused promptly and the node keeps serving', async () => {
  const b = 'pol-private';
  await s3.send(new CreateBucketCommand({ Bucket: b }));
  const big = Buffer.alloc(8 * 1024 * 1024, 1);
  const answers = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      anonymous('PUT', `/${b}/k${i}`, { body: big }).catch((e: Error) => ({ status: -1, body: e.message })),
    ),
  );
  for (const a of answers) assert.ok(a.status === 403 || a.status === -1, `${a.status} ${a.body}`);
  assert.ok(answers.some((a) => a.status === 403));
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: b }));
  assert.equal(listed.KeyCount, 0);
});
