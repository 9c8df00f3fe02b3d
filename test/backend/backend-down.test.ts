// A backend that goes away: the gateway answers every object request with 503 and Retry-After at once (no
// hang, no partial object), and serves again once the backend is back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startServer } from '../helpers/server.js';
import { startBackend, startGateway } from './gateway-helpers.js';

test('backend down: 503 with Retry-After; back up: served again', async (t) => {
  const backend = await startBackend();
  const gateway = await startGateway(backend.target);
  t.after(async () => {
    await gateway.stop();
    backend.client.destroy();
    backend.server.cleanup();
  });
  const s3 = gateway.client;
  await s3.send(new CreateBucketCommand({ Bucket: 'fragile' }));
  await s3.send(new PutObjectCommand({ Bucket: 'fragile', Key: 'a', Body: 'kept' }));
  await backend.server.kill();
  for (const [method, path, body] of [
    ['GET', '/fragile/a', undefined],
    ['PUT', '/fragile/b', 'lost?'],
  ] as const) {
    // Raw requests signed by the SDK's presigner would do too; the SDK itself retries 503s, so its answer is
    // read from the error it finally gives.
    const err = await s3
      .send(
        method === 'GET'
          ? new GetObjectCommand({ Bucket: 'fragile', Key: 'a' })
          : new PutObjectCommand({ Bucket: 'fragile', Key: 'b', Body: body }),
      )
      .then(
        () => undefined,
        (e: { $metadata?: { httpStatusCode?: number }; $response?: { headers?: Record<string, string> } }) =>
          e,
      );
    assert.ok(err, `${method} ${path} fails while the backend is down`);
    assert.equal(err.$metadata?.httpStatusCode, 503, `${method} ${path}`);
    assert.equal(err.$response?.headers?.['retry-after'], '1', `${method} ${path} says when to retry`);
  }
  // The backend comes back on its own data directory and port: the gateway serves again, and the refused PUT
  // left nothing.
  const again = await startServer({ dir: backend.server.dir });
  t.after(() => again.stop());
  const got = await s3.send(new GetObjectCommand({ Bucket: 'fragile', Key: 'a' }));
  assert.equal(await got.Body!.transformToString(), 'kept');
  await assert.rejects(s3.send(new GetObjectCommand({ Bucket: 'fragile', Key: 'b' })), { name: 'NoSuchKey' });
});
