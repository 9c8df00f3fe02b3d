// Interop: requests signed by the AWS SDK's own SigV4 signer (@smithy/signature-v4) and sent raw — presigned GET
// and PUT URLs (valid, expired, tampered), virtual-hosted-style requests (Host: bucket.s3.localhost), payload
// signing modes, and clock skew.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { signer } from '../api/s3/sigv4-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let s3: S3Client;
const B = 'signed';

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

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Sends a request to the server's port with exactly these headers (including Host). */
function send(
  method: string,
  pathAndQuery: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: server.s3Port, method, path: pathAndQuery, headers, setHost: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const enc = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const encPath = (p: string) => p.split('/').map(enc).join('/');
const queryString = (q: Record<string, string | string[] | null | undefined>) =>
  Object.entries(q)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${enc(k)}=${enc(String(v))}`)
    .join('&');

interface SignOpts {
  method?: string;
  host?: string; // default 127.0.0.1:PORT
  path: string; // unencoded
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer;
  payloadHash?: string; // default: sha256 of body
  date?: Date;
  secret?: string;
}

function hostParts(host: string): { hostname: string; port?: number } {
  const m = /^(.*):(\d+)$/.exec(host);
  return m ? { hostname: m[1]!, port: Number(m[2]) } : { hostname: host };
}

/** Signs with the Authorization header and sends. */
async function signedRequest(o: SignOpts): Promise<Raw> {
  const host = o.host ?? `127.0.0.1:${server.s3Port}`;
  const body = o.body ?? Buffer.alloc(0);
  const headers: Record<string, string> = {
    host,
    'x-amz-content-sha256': o.payloadHash ?? createHash('sha256').update(body).digest('hex'),
    ...o.headers,
  };
  if (body.length) headers['content-length'] = String(body.length);
  const signed = await signer({
    accessKey: server.accessKeyId,
    secret: o.secret ?? server.secretAccessKey,
  }).sign(
    {
      method: o.method ?? 'GET',
      protocol: 'http:',
      ...hostParts(host),
      path: encPath(o.path),
      query: o.query ?? {},
      headers,
    },
    { signingDate: o.date ?? new Date() },
  );
  const qs = queryString(o.query ?? {});
  return send(o.method ?? 'GET', encPath(o.path) + (qs ? '?' + qs : ''), signed.headers, o.body);
}

/** Presigns and returns the path+query to request, and the Host it is valid for. */
async function presignedPath(o: SignOpts & { expiresIn?: number }): Promise<string> {
  const host = o.host ?? `127.0.0.1:${server.s3Port}`;
  const signed = await signer({
    accessKey: server.accessKeyId,
    secret: o.secret ?? server.secretAccessKey,
  }).presign(
    {
      method: o.method ?? 'GET',
      protocol: 'http:',
      ...hostParts(host),
      path: encPath(o.path),
      query: o.query ?? {},
      // As @aws-sdk/s3-request-presigner does: the body is not part of a presigned URL's signature.
      headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...o.headers },
    },
    { signingDate: o.date ?? new Date(), expiresIn: o.expiresIn ?? 600 },
  );
  return encPath(o.path) + '?' + queryString(signed.query as Record<string, string>);
}

const code = (r: Raw) => /<Code>([^<]+)<\/Code>/.exec(r.body.toString())?.[1];

test('presigned GET and PUT URLs work with a plain HTTP client (fetch), without any credentials', async () => {
  const data = randomBytes(100_000);
  const putPath = await presignedPath({ method: 'PUT', path: `/${B}/pre signed/put é.bin` });
  const put = await fetch(server.endpoint + putPath, { method: 'PUT', body: data });
  assert.equal(put.status, 200, await put.clone().text());
  assert.equal(put.headers.get('etag'), `"${createHash('md5').update(data).digest('hex')}"`);
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'pre signed/put é.bin' }));
  assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(data));

  const getPath = await presignedPath({
    path: `/${B}/pre signed/put é.bin`,
    query: { 'response-content-disposition': 'attachment; filename="x.bin"' },
  });
  const get = await fetch(server.endpoint + getPath);
  assert.equal(get.status, 200);
  assert.equal(get.headers.get('content-disposition'), 'attachment; filename="x.bin"');
  assert.ok(Buffer.from(await get.arrayBuffer()).equals(data));
  // A range with a presigned GET (Range is not signed).
  const ranged = await fetch(server.endpoint + getPath, { headers: { Range: 'bytes=10-19' } });
  assert.equal(ranged.status, 206);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(10, 20)));
});

test('presigned URLs: expired, tampered, wrong method, and an expiry above 7 days are refused', async () => {
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'exp', Body: 'x' }));
  // Signed two hours ago for one hour.
  const expired = await presignedPath({
    path: `/${B}/exp`,
    date: new Date(Date.now() - 2 * 3600_000),
    expiresIn: 3600,
  });
  const r1 = await fetch(server.endpoint + expired);
  assert.equal(r1.status, 403);
  const t1 = await r1.text();
  assert.match(t1, /<Code>AccessDenied<\/Code>/);
  assert.match(t1, /expired/i);
  // A one-second URL, used after it lapses.
  const short = await presignedPath({ path: `/${B}/exp`, expiresIn: 1 });
  await new Promise((r) => setTimeout(r, 2100));
  const r2 = await fetch(server.endpoint + short);
  assert.equal(r2.status, 403);
  await r2.arrayBuffer();

  const good = await presignedPath({ path: `/${B}/exp` });
  const tampered = good.replace('/exp?', '/other?');
  const r3 = await fetch(server.endpoint + tampered);
  assert.equal(r3.status, 403);
  assert.match(await r3.text(), /<Code>SignatureDoesNotMatch<\/Code>/);
  const r4 = await fetch(server.endpoint + good, { method: 'DELETE' });
  assert.equal(r4.status, 403);
  await r4.arrayBuffer();
  // The SDK refuses to sign for more than 7 days, so stretch a URL by hand: refused before any signature check.
  const longLived = good.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=700000');
  const r5 = await fetch(server.endpoint + longLived);
  assert.equal(r5.status, 400);
  assert.match(await r5.text(), /<Code>AuthorizationQueryParametersError<\/Code>/);
  // The object is still there.
  const r6 = await fetch(server.endpoint + good);
  assert.equal(await r6.text(), 'x');
});

test('virtual-hosted style: Host bucket.s3.localhost addresses the bucket, path is the key', async () => {
  const host = `${B}.s3.localhost:${server.s3Port}`;
  const data = Buffer.from('hosted by name');
  const put = await signedRequest({
    method: 'PUT',
    host,
    path: '/v/hosted key.txt',
    body: data,
    headers: { 'content-type': 'text/plain' },
  });
  assert.equal(put.status, 200, put.body.toString());
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'v/hosted key.txt' }));
  assert.equal(await got.Body!.transformToString(), 'hosted by name');
  assert.equal(got.ContentType, 'text/plain');

  const get = await signedRequest({ host, path: '/v/hosted key.txt' });
  assert.equal(get.status, 200);
  assert.equal(get.body.toString(), 'hosted by name');

  const list = await signedRequest({ host, path: '/', query: { 'list-type': '2', prefix: 'v/' } });
  assert.equal(list.status, 200);
  assert.match(list.body.toString(), /<Key>v\/hosted key.txt<\/Key>/);
  assert.match(list.body.toString(), new RegExp(`<Name>${B}</Name>`));

  const head = await signedRequest({ method: 'HEAD', host, path: '/' });
  assert.equal(head.status, 200);
  const missing = await signedRequest({ host: `no-such-bucket.s3.localhost:${server.s3Port}`, path: '/k' });
  assert.equal(missing.status, 404);
  assert.equal(code(missing), 'NoSuchBucket');

  // A presigned URL for the virtual host.
  const pre = await presignedPath({ host, path: '/v/hosted key.txt' });
  const viaPre = await send('GET', pre, { host });
  assert.equal(viaPre.status, 200);
  assert.equal(viaPre.body.toString(), 'hosted by name');
  // The same URL on another host is a different request: the signature no longer matches.
  const otherHost = await send('GET', pre, { host: `127.0.0.1:${server.s3Port}` });
  assert.equal(otherHost.status, 403);

  // The root domain itself is path style: ListBuckets.
  const root = await signedRequest({ host: `s3.localhost:${server.s3Port}`, path: '/' });
  assert.equal(root.status, 200);
  assert.match(root.body.toString(), new RegExp(`<Name>${B}</Name>`));
});

test('payload modes: signed SHA-256, UNSIGNED-PAYLOAD, and a wrong declared SHA-256', async () => {
  const data = randomBytes(10_000);
  const signed = await signedRequest({ method: 'PUT', path: `/${B}/modes/signed`, body: data });
  assert.equal(signed.status, 200);
  const unsigned = await signedRequest({
    method: 'PUT',
    path: `/${B}/modes/unsigned`,
    body: data,
    payloadHash: 'UNSIGNED-PAYLOAD',
  });
  assert.equal(unsigned.status, 200);
  for (const k of ['signed', 'unsigned']) {
    const g = await signedRequest({ path: `/${B}/modes/${k}` });
    assert.ok(g.body.equals(data), k);
  }
  const wrong = await signedRequest({
    method: 'PUT',
    path: `/${B}/modes/wrong`,
    body: data,
    payloadHash: createHash('sha256').update('something else').digest('hex'),
  });
  assert.equal(wrong.status, 400);
  assert.equal(code(wrong), 'XAmzContentSHA256Mismatch');
  const after = await signedRequest({ method: 'HEAD', path: `/${B}/modes/wrong` });
  assert.equal(after.status, 404);
});

test('signature errors: wrong secret, clock skew, anonymous, unknown key', async () => {
  const wrongSecret = await signedRequest({ path: `/${B}`, secret: 'x'.repeat(40) });
  assert.equal(wrongSecret.status, 403);
  assert.equal(code(wrongSecret), 'SignatureDoesNotMatch');
  const skewed = await signedRequest({ path: `/${B}`, date: new Date(Date.now() - 3600_000) });
  assert.equal(skewed.status, 403);
  assert.equal(code(skewed), 'RequestTimeTooSkewed');
  const anonymous = await send('GET', `/${B}`, { host: `127.0.0.1:${server.s3Port}` });
  assert.equal(anonymous.status, 403);
  assert.equal(code(anonymous), 'AccessDenied');
  const headSkewed = await signedRequest({
    method: 'HEAD',
    path: `/${B}`,
    date: new Date(Date.now() + 3600_000),
  });
  assert.equal(headSkewed.status, 403);
  assert.equal(headSkewed.body.length, 0, 'HEAD errors have no body');
  // The server kept serving through all of it.
  const ok = await signedRequest({ path: `/${B}`, query: { 'list-type': '2' } });
  assert.equal(ok.status, 200);
});

test('the SDK itself in virtual-hosted style (forcePathStyle false), every name resolved to 127.0.0.1', async () => {
  // *.s3.localhost is not in any resolver: the agent's lookup sends every connection to loopback, so the SDK
  // builds and signs genuine virtual-hosted requests (Host: signed.s3.localhost:PORT).
  const agent = new Agent({
    lookup: ((_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) => {
      if (opts?.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
      else cb(null, '127.0.0.1', 4);
    }) as never,
  });
  const vhost = new S3Client({
    endpoint: `http://s3.localhost:${server.s3Port}`,
    region: 'us-east-1',
    forcePathStyle: false,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestHandler: new NodeHttpHandler({ httpAgent: agent }),
  });
  let hosts: string[] = [];
  vhost.middlewareStack.add(
    (next) => async (args) => {
      hosts.push((args.request as { hostname: string }).hostname);
      return next(args);
    },
    { step: 'finalizeRequest', name: 'recordHost' },
  );
  try {
    await vhost.send(new HeadBucketCommand({ Bucket: B }));
    await vhost.send(
      new PutObjectCommand({
        Bucket: B,
        Key: 'vh/sdk object.txt',
        Body: 'via the vhost SDK',
        ChecksumAlgorithm: 'SHA256',
      }),
    );
    const got = await vhost.send(new GetObjectCommand({ Bucket: B, Key: 'vh/sdk object.txt' }));
    assert.equal(await got.Body!.transformToString(), 'via the vhost SDK');
    const list = await vhost.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'vh/' }));
    assert.deepEqual(
      list.Contents!.map((c) => c.Key),
      ['vh/sdk object.txt'],
    );
    await vhost.send(new DeleteObjectCommand({ Bucket: B, Key: 'vh/sdk object.txt' }));
    assert.ok(hosts.length >= 5);
    for (const h of hosts) assert.equal(h, `${B}.s3.localhost`, 'the bucket is in the host name');
    hosts = [];
    // The same through the path-style client: the object is gone.
    const after = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: 'vh/' }));
    assert.equal(after.KeyCount, 0);
  } finally {
    vhost.destroy();
    agent.destroy();
  }
});
