// Slow and stalled clients cannot hold a node's connections. Before its signature (or POST policy) is checked a
// request has `unauthenticated_timeout_secs`, whatever it sends: 20 PostObject forms that sent their headers and
// one boundary line, and headers that never end, are cut. A connection silent for `idle_timeout_secs` in the
// middle of a body is cut. But an authenticated upload that keeps sending is never cut for taking long.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { signer } from '../api/s3/sigv4-client.js';
import { startServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
const UNAUTHENTICATED_S = 2;
const IDLE_S = 5;
// Far above both bounds, far below what a client left alone would be allowed (no bound at all before).
const CUT_WITHIN_MS = 25_000;

before(async () => {
  server = await startServer({
    s3Extra: `unauthenticated_timeout_secs = ${UNAUTHENTICATED_S}\nidle_timeout_secs = ${IDLE_S}`,
  });
  const s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: 'slow' }));
  s3.destroy();
});

after(async () => {
  await server?.stop();
  server?.cleanup();
});

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(server.s3Port, '127.0.0.1', () => resolve(s));
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

/** Resolves with how long the server took to close `socket` (rejects if it keeps it past CUT_WITHIN_MS). */
function closedWithin(socket: Socket, started: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('the server kept a stalled connection open')),
      CUT_WITHIN_MS,
    );
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
    socket.resume();
  });
}

test('20 unauthenticated PostObject forms stalled after one boundary line are all cut', async () => {
  const started = Date.now();
  const sockets = await Promise.all(Array.from({ length: 20 }, () => open()));
  for (const s of sockets) {
    s.write(
      'POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyz\r\n' +
        'Content-Length: 100000\r\n\r\n--xyz\r\n',
    );
  }
  const took = await Promise.all(sockets.map((s) => closedWithin(s, started)));
  assert.ok(Math.max(...took) >= UNAUTHENTICATED_S * 1000 - 200, 'cut before the bound');
  const health = await fetch(`${server.endpoint}/`, { method: 'GET' });
  assert.equal(health.status, 403); // anonymous ListBuckets: answered, so the node serves
});

test('headers that never end are cut', async () => {
  const s = await open();
  const started = Date.now();
  s.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a');
  await closedWithin(s, started);
});

async function signedPutHead(key: string, length: number): Promise<string> {
  const host = `127.0.0.1:${server.s3Port}`;
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign({
    method: 'PUT',
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: server.s3Port,
    path: `/slow/${key}`,
    query: {},
    headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'content-length': String(length) },
  });
  const lines = Object.entries(signed.headers).map(([k, v]) => `${k}: ${v}`);
  return `PUT /slow/${key} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

test('an authenticated body that stalls is cut after the idle bound, and nothing is stored', async () => {
  const s = await open();
  s.write(await signedPutHead('stalled', 1024 * 1024));
  s.write(Buffer.alloc(1024, 1));
  const started = Date.now();
  const took = await closedWithin(s, started);
  assert.ok(took >= IDLE_S * 1000 - 500, `cut after ${took} ms, before the idle bound`);
  const s3 = server.client();
  await assert.rejects(s3.send(new GetObjectCommand({ Bucket: 'slow', Key: 'stalled' })), /NoSuchKey/);
  s3.destroy();
});

test('an authenticated upload that keeps sending is not cut for taking longer than the bounds', async () => {
  const s = await open();
  const chunks = 16;
  s.write(await signedPutHead('trickled', chunks));
  let answer = '';
  s.on('data', (d: Buffer) => (answer += d.toString()));
  // One byte every 500 ms: 8 s in all, longer than both bounds, never silent for long.
  for (let i = 0; i < chunks; i++) {
    await new Promise((r) => setTimeout(r, 500));
    s.write(Buffer.from([65 + i]));
  }
  await new Promise<void>((resolve) => {
    const done = () => (answer.includes('\r\n\r\n') ? resolve() : undefined);
    s.on('data', done);
    done();
  });
  assert.match(answer, /^HTTP\/1\.1 200/);
  s.destroy();
  const s3 = server.client();
  const got = await s3.send(new GetObjectCommand({ Bucket: 'slow', Key: 'trickled' }));
  assert.equal(await got.Body!.transformToString(), 'ABCDEFGHIJKLMNOP');
  s3.destroy();
});
