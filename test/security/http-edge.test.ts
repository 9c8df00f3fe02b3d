// Attacks on the HTTP edge of a running node, over real sockets. One malformed request must never take the
// node down (the admin port once exited on `GET /%ff`), and a header the signature does not cover must never
// change what a request does: a presigned PUT replayed with an added x-amz-copy-source was a CopyObject of
// any object the signer could read.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { signer } from '../api/s3/sigv4-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let s3: S3Client;

before(async () => {
  server = await startServer();
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: 'secret' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'drop' }));
  await s3.send(new PutObjectCommand({ Bucket: 'secret', Key: 'plan', Body: 'the secret plan' }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

/** One raw HTTP/1.1 request; resolves with the status line's code (0 if the connection closed first). */
function raw(port: number, request: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setTimeout(10_000, () => reject(new Error('no answer within 10 s')));
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
    socket.end(request);
  });
}

test('a malformed request path is answered 400 on the S3 and admin ports, and the node lives on', async () => {
  for (const port of [server.adminPort, server.s3Port]) {
    for (const path of ['/%ff', '/%', '/%E0%A4%A', '/v1/keys/%ff', '/b/%c3%28']) {
      const r = await raw(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      assert.ok(r.status >= 400 && r.status < 500, `GET ${path} on ${port}: ${r.status}`);
    }
  }
  assert.equal(server.process.exitCode, null, 'the node exited');
  const health = await fetch(`${server.adminEndpoint}/health`);
  assert.equal(health.status, 200);
  const got = await s3.send(new GetObjectCommand({ Bucket: 'secret', Key: 'plan' }));
  assert.equal(await got.Body!.transformToString(), 'the secret plan');
});

async function presignedPut(bucket: string, key: string): Promise<string> {
  const host = `127.0.0.1:${server.s3Port}`;
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).presign(
    {
      method: 'PUT',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: server.s3Port,
      path: `/${bucket}/${key}`,
      query: {},
      headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    },
    { expiresIn: 600 },
  );
  const q = new URLSearchParams(signed.query as Record<string, string>).toString();
  return `http://${host}/${bucket}/${key}?${q}`;
}

test('a presigned PUT replayed with an unsigned x-amz-copy-source is refused: HeadersNotSigned', async () => {
  const url = await presignedPut('drop', 'stolen');
  const res = await fetch(url, { method: 'PUT', headers: { 'x-amz-copy-source': '/secret/plan' } });
  const body = await res.text();
  assert.equal(res.status, 403, body);
  assert.match(body, /<Code>AccessDenied<\/Code>/);
  assert.match(body, /<HeadersNotSigned>x-amz-copy-source<\/HeadersNotSigned>/);
  await assert.rejects(s3.send(new GetObjectCommand({ Bucket: 'drop', Key: 'stolen' })), /NoSuchKey/);
  // The same URL still does what was signed: a plain PUT of its body.
  const ok = await fetch(url, { method: 'PUT', body: 'uploaded' });
  assert.equal(ok.status, 200, await ok.text());
});

test('a header-signed request carrying an x-amz-* header it did not sign is refused', async () => {
  const host = `127.0.0.1:${server.s3Port}`;
  const body = Buffer.from('data');
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign({
    method: 'PUT',
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: server.s3Port,
    path: '/drop/signed',
    query: {},
    headers: { host, 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') },
  });
  const headers: Record<string, string> = { ...signed.headers };
  delete headers.host;
  for (const extra of <Record<string, string>[]>[
    { 'x-amz-copy-source': '/secret/plan' },
    { 'x-amz-server-side-encryption': 'AES256' },
    { 'x-amz-meta-injected': randomBytes(4).toString('hex') },
  ]) {
    const res = await fetch(`http://${host}/drop/signed`, {
      method: 'PUT',
      headers: { ...headers, ...extra },
      body,
    });
    const text = await res.text();
    assert.equal(res.status, 403, text);
    assert.match(text, new RegExp(`<HeadersNotSigned>${Object.keys(extra)[0]}</HeadersNotSigned>`));
  }
});

test(
  'CONNECT and over-long names are answered 4xx, and the node still stops promptly',
  { timeout: 60_000 },
  async (t) => {
    const node = await startServer();
    t.after(() => node.cleanup());
    for (const port of [node.adminPort, node.s3Port]) {
      const r = await raw(port, 'CONNECT /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}');
      assert.equal(r.status, 405, `CONNECT on ${port}`);
    }
    // No bucket or key can be this long: refused before any lookup (the metadata store cannot even hold it).
    const post = await raw(
      node.s3Port,
      `POST /${'x'.repeat(9000)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n` +
        'Content-Length: 7\r\nConnection: close\r\n\r\n--b\r\n\r\n',
    );
    assert.equal(post.status, 400, post.text);
    assert.match(post.text, /InvalidBucketName/);
    const key = await raw(
      node.s3Port,
      `GET /b/${'k'.repeat(2000)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(key.status, 400, key.text);
    assert.match(key.text, /KeyTooLongError/);
    // A tunnel socket is not the HTTP server's any more: it must not keep the node from shutting down.
    await node.stop();
    assert.equal(node.process.exitCode, 0);
  },
);
