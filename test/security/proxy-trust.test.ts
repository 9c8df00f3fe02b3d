// Trust in loopback and proxies is explicit: a request relayed by a reverse proxy on the same host arrives from
// loopback, but its client may be anywhere. SSE-C over plain HTTP (and SSE-S3 master keys on the admin API)
// is accepted from loopback only when no proxy relayed it, and a proxy is believed about the client's scheme
// (X-Forwarded-Proto) only when it is listed in trusted_proxies.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from '@aws-sdk/client-s3';
import type { BuildMiddleware } from '@smithy/types';
import { rejects } from '../helpers/s3.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { customerKey } from './ssec-helpers.js';

let plain: TestServer;
let proxied: TestServer;

before(async () => {
  [plain, proxied] = await Promise.all([
    startServer(),
    startServer({ extraConfig: 'trusted_proxies = ["127.0.0.1", "::1", "10.20.0.0/16"]' }),
  ]);
  for (const server of [plain, proxied]) {
    const s3 = server.client();
    await s3.send(new CreateBucketCommand({ Bucket: 'relayed' }));
    s3.destroy();
  }
});

after(async () => {
  for (const server of [plain, proxied]) {
    await server?.stop();
    server?.cleanup();
  }
});

// A client whose every request carries `headers`, signed like any other (they are not x-amz-* headers).
function clientWith(server: TestServer, headers: Record<string, string>, endpoint?: string): S3Client {
  const s3 = endpoint
    ? new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      })
    : server.client();
  const add: BuildMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next) => async (args) => {
    Object.assign((args.request as { headers: Record<string, string> }).headers, headers);
    return next(args);
  };
  s3.middlewareStack.add(add, { step: 'build', name: 'forwardingHeaders' });
  return s3;
}

async function putSseC(s3: S3Client, key: string): Promise<void> {
  const k = customerKey();
  await s3.send(
    new PutObjectCommand({
      Bucket: 'relayed',
      Key: key,
      Body: Buffer.from('secret'),
      SSECustomerAlgorithm: 'AES256',
      SSECustomerKey: k.b64,
    }),
  );
}

// SSE-C over plain HTTP from a client that is not local: 400 InvalidRequest, as AWS answers.
const refusedOverHttp = (s3: S3Client, key: string) => rejects(() => putSseC(s3, key), 'InvalidRequest', 400);

test('a plain HTTP relay on the same host (a reverse proxy that adds nothing) no longer makes SSE-C look local', async (t) => {
  // The relay forwards bytes untouched, as a proxy would for a client somewhere on the network; it adds
  // X-Forwarded-For, as proxies do by default.
  const relay = http.createServer((req, res) => {
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port: plain.s3Port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, 'x-forwarded-for': '198.51.100.7' },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => relay.close(() => r())));
  const port = (relay.address() as { port: number }).port;
  const s3 = new S3Client({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: plain.accessKeyId, secretAccessKey: plain.secretAccessKey },
  });
  t.after(() => s3.destroy());
  await refusedOverHttp(s3, 'via-relay');
  // The same node still takes SSE-C from a client on this machine, and plain objects through the relay.
  await s3.send(new PutObjectCommand({ Bucket: 'relayed', Key: 'plain', Body: Buffer.from('x') }));
  const direct = plain.client();
  t.after(() => direct.destroy());
  await putSseC(direct, 'direct');
});

test('an untrusted peer is not believed when it says https or names a client', async (t) => {
  const spoofs: Record<string, string>[] = [
    { 'x-forwarded-proto': 'https' },
    { 'x-forwarded-for': '127.0.0.1' },
    { forwarded: 'for=127.0.0.1;proto=https' },
    { 'x-real-ip': '127.0.0.1' },
  ];
  for (const headers of spoofs) {
    const s3 = clientWith(plain, headers);
    t.after(() => s3.destroy());
    await refusedOverHttp(s3, 'spoofed');
  }
});

test('a trusted proxy is believed: https from its client passes, plain http or no scheme is refused', async (t) => {
  const viaHttps = clientWith(proxied, {
    'x-forwarded-for': '203.0.113.9, 10.20.1.1',
    'x-forwarded-proto': 'https',
  });
  t.after(() => viaHttps.destroy());
  await putSseC(viaHttps, 'ok');
  const refused: Record<string, string>[] = [
    { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'http' },
    { 'x-forwarded-for': '203.0.113.9' },
    // The client wrote "https" itself and the proxy appended the scheme it saw.
    { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https, http' },
  ];
  for (const headers of refused) {
    const s3 = clientWith(proxied, headers);
    t.after(() => s3.destroy());
    await refusedOverHttp(s3, 'refused');
  }
  // A client on the proxy's own host (the chain is all trusted, the client loopback) is local.
  const local = clientWith(proxied, { 'x-forwarded-for': '127.0.0.1' });
  t.after(() => local.destroy());
  await putSseC(local, 'local');
  const s3 = proxied.client();
  t.after(() => s3.destroy());
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: 'relayed', Key: 'refused' })), 'NoSuchKey', 404);
});

test('the admin API takes master keys from a relayed loopback request only when a trusted proxy says https', async () => {
  const unlock = async (server: TestServer, headers: Record<string, string>) => {
    const res = await fetch(`${server.adminEndpoint}/v1/sse-s3/unlock`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${server.adminToken}`,
        'content-type': 'application/json',
        ...headers,
      },
      body: JSON.stringify({ keys: {} }),
    });
    return { status: res.status, text: await res.text() };
  };
  const refused = /only over TLS or from loopback/;
  assert.match((await unlock(plain, { 'x-forwarded-for': '198.51.100.7' })).text, refused);
  assert.match((await unlock(plain, { 'x-forwarded-proto': 'https' })).text, refused);
  assert.doesNotMatch((await unlock(plain, {})).text, refused);
  assert.match((await unlock(proxied, { 'x-forwarded-for': '198.51.100.7' })).text, refused);
  assert.doesNotMatch(
    (await unlock(proxied, { 'x-forwarded-for': '198.51.100.7', 'x-forwarded-proto': 'https' })).text,
    refused,
  );
});

test('a trusted_proxies entry that is not an address or range stops the node with the key named', async () => {
  await assert.rejects(
    startServer({ extraConfig: 'trusted_proxies = ["10.0.0.0/33"]' }),
    /trusted_proxies entry "10\.0\.0\.0\/33"/,
  );
});
