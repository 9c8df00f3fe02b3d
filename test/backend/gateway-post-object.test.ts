// PostObject (a browser form upload) through a gateway: a signed form stores its file encrypted in the backend
// and reads back through the gateway; a form with a bad signature, an expired policy, a file larger than its
// policy allows, or no signature at all is refused with S3's error, and stores nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { signedPostForm, type PostFormSpec } from '../helpers/post-form.js';
import { rejects } from '../helpers/s3.js';
import { bodyOf, gatewayForFile, type Backend, type Gateway } from './gateway-helpers.js';

const BUCKET = 'forms';
let backend: Backend;
let gateway: Gateway;
let s3: S3Client;
gatewayForFile((g) => ({ backend, gateway, s3 } = g), { buckets: [BUCKET] });

function form(key: string, file: Buffer, extra: Partial<PostFormSpec> = {}): FormData {
  const { accessKeyId, secretAccessKey } = gateway.server;
  return signedPostForm({ accessKeyId, secretAccessKey, bucket: BUCKET, key, file, ...extra });
}

async function post(body: FormData): Promise<Response> {
  return fetch(`${gateway.server.endpoint}/${BUCKET}`, { method: 'POST', body });
}

async function refused(body: FormData, status: number, code: string, key: string): Promise<void> {
  const res = await post(body);
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.match(text, new RegExp(`<Code>${code}</Code>`));
  await rejects(() => s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })), 'NotFound', 404);
}

test('a signed form uploads its file through the gateway, sealed in the backend, read back as sent', async () => {
  const marker = Buffer.from('a browser form upload the backend must never see');
  const data = Buffer.concat([marker, randomBytes(200_000)]);
  const res = await post(
    form('posted/photo.bin', data, {
      fields: [['x-amz-meta-origin', 'browser-form-secret']],
      conditions: [['content-length-range', 0, 1_000_000]],
    }),
  );
  assert.equal(res.status, 204, await res.text());
  const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'posted/photo.bin' }));
  assert.ok((await bodyOf(got)).equals(data));
  assert.deepEqual(got.Metadata, { origin: 'browser-form-secret' });
  assert.equal(got.ETag, res.headers.get('etag'));

  const stored = await backend.client.send(
    new ListObjectsV2Command({ Bucket: backend.target.bucket, Prefix: 'coffre/forms/' }),
  );
  assert.equal(stored.Contents?.length, 1);
  const raw = await backend.client.send(
    new GetObjectCommand({ Bucket: backend.target.bucket, Key: stored.Contents![0]!.Key }),
  );
  const bytes = await bodyOf(raw);
  assert.equal(bytes.indexOf(marker), -1, 'no plaintext in the backend');
  assert.ok(!JSON.stringify(raw.Metadata ?? {}).includes('browser-form-secret'), 'no user metadata either');
});

test('a form signed with another secret is SignatureDoesNotMatch and stores nothing', async () => {
  await refused(
    form('attack/bad-signature', Buffer.from('x'), { signWith: 'not-the-secret-of-this-key' }),
    403,
    'SignatureDoesNotMatch',
    'attack/bad-signature',
  );
});

test('a form whose policy has expired is AccessDenied and stores nothing', async () => {
  await refused(
    form('attack/expired', Buffer.from('x'), { expiration: new Date(Date.now() - 60_000) }),
    403,
    'AccessDenied',
    'attack/expired',
  );
});

test("a file larger than the policy's content-length-range is EntityTooLarge and stores nothing", async () => {
  await refused(
    form('attack/oversized', randomBytes(300_000), { conditions: [['content-length-range', 0, 1024]] }),
    400,
    'EntityTooLarge',
    'attack/oversized',
  );
  // Nor did it leave anything in the backend.
  const stored = await backend.client.send(
    new ListObjectsV2Command({ Bucket: backend.target.bucket, Prefix: 'coffre/forms/attack/' }),
  );
  assert.equal(stored.KeyCount ?? 0, 0);
});

test('an unsigned form (no policy) may not write to a private bucket', async () => {
  const fd = new FormData();
  fd.append('key', 'attack/unsigned');
  fd.append('file', new Blob([Buffer.from('x')]), 'f.txt');
  await refused(fd, 403, 'AccessDenied', 'attack/unsigned');
});
