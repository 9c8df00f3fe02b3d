// A backend that answers wrongly — more bytes than a range asked for, a short body, an endless error document,
// a body cut mid-way: the gateway's own requests (backend/object-requests) read no more than they need, answer
// the client with a prompt error, serve nothing it could not check, and go on serving. Between the gateway and
// a real coffre node as backend sits a proxy of this test's that forwards every request unchanged until told
// to answer the object's reads itself.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startBackend, startGateway } from './gateway-helpers.js';

type Mode = 'forward' | 'ignore-range' | 'short-body' | 'endless-error' | 'cut-body';

const VICTIM = 'victim-object';

async function startProxy(target: URL): Promise<{ endpoint: string; mode: Mode; close(): Promise<void> }> {
  const state = { mode: 'forward' as Mode };
  const upstream = new http.Agent({ keepAlive: false });
  const server = http.createServer((req, res) => {
    const tampered = state.mode !== 'forward' && req.method === 'GET' && req.url?.includes(VICTIM);
    if (tampered) {
      req.resume();
      switch (state.mode) {
        case 'ignore-range':
          // 4 MiB where a range of at most 256 KiB was asked for, as if Range were not understood.
          res.writeHead(200, { 'content-length': 4 * 1024 * 1024, etag: '"x"' });
          res.end(Buffer.alloc(4 * 1024 * 1024));
          return;
        case 'short-body':
          // Fewer bytes than the range asked for, of a longer object than was stored.
          res.writeHead(206, { 'content-length': 10, 'content-range': 'bytes 0-9/1000', etag: '"x"' });
          res.end(Buffer.alloc(10));
          return;
        case 'endless-error': {
          res.writeHead(500, { 'content-type': 'application/xml' });
          const chunk = Buffer.alloc(64 * 1024, 'x');
          const more = () => {
            while (!res.destroyed && res.write(chunk));
            if (!res.destroyed) res.once('drain', more);
          };
          more();
          return;
        }
        case 'cut-body':
          res.writeHead(206, {
            'content-length': 100_000,
            'content-range': 'bytes 0-99999/100000',
            etag: '"x"',
          });
          res.write(Buffer.alloc(5000));
          setImmediate(() => res.destroy());
          return;
      }
    }
    const out = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent: upstream,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get mode() {
      return state.mode;
    },
    set mode(m: Mode) {
      state.mode = m;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        upstream.destroy();
        server.close(() => resolve());
      }),
  };
}

test('a backend answering reads wrongly gets the client a prompt error, and the gateway serves on', async (t) => {
  const backend = await startBackend();
  const proxy = await startProxy(new URL(backend.target.endpoint));
  const gateway = await startGateway({ ...backend.target, endpoint: proxy.endpoint });
  t.after(async () => {
    await gateway.stop();
    await proxy.close();
    backend.client.destroy();
    await backend.server.stop();
    backend.server.cleanup();
  });
  const s3 = gateway.client;
  await s3.send(new CreateBucketCommand({ Bucket: 'answers' }));
  const body = Buffer.from('the only true bytes');
  await s3.send(new PutObjectCommand({ Bucket: 'answers', Key: VICTIM, Body: body }));
  const read = async () => {
    const got = await s3.send(new GetObjectCommand({ Bucket: 'answers', Key: VICTIM }));
    return Buffer.from(await got.Body!.transformToByteArray());
  };
  assert.deepEqual(await read(), body);
  for (const mode of ['ignore-range', 'short-body', 'endless-error', 'cut-body'] as const) {
    proxy.mode = mode;
    const started = Date.now();
    const err = await read().then(
      (got) => assert.fail(`${mode}: the gateway served ${got.length} bytes it could not check`),
      (e: { $metadata?: { httpStatusCode?: number } }) => e,
    );
    const status = err.$metadata?.httpStatusCode;
    assert.ok(status === 500 || status === 503, `${mode}: answered ${status}`);
    // Not a timeout: the gateway noticed at once (the socket timeout is a minute).
    assert.ok(Date.now() - started < 30_000, `${mode}: answered after ${Date.now() - started} ms`);
    proxy.mode = 'forward';
    assert.deepEqual(await read(), body, `${mode}: the object reads back once the backend answers right`);
  }
});
