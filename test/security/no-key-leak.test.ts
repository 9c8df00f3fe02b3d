// The customer key, and what it protects, never reach the disk or the logs. After SSE-C uploads (single PUT,
// multipart, a key-rotating copy, refused requests carrying a key) on a server logging at debug level, the
// whole server directory (data dir, metadata LMDB, everything) and its stdout/stderr are searched for each key's
// bytes, base64 and hex, for a 32-byte run of each plaintext, and for the user metadata values. None may be
// found — while the same search does find a plaintext object's bytes and metadata, so it can fail.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, readSync, closeSync } from 'node:fs';
import { after, before, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { startServer, type TestServer } from '../helpers/server.js';
import { customerKey, signedFetch, sseCHeaders, walkFiles, SSE_C, type CustomerKey } from './ssec-helpers.js';

const B = 'leak';
const MiB = 1024 * 1024;
let server: TestServer;
let s3: S3Client;

before(async () => {
  server = await startServer({ env: { COFFRE_LOG_LEVEL: 'debug' } });
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: B }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

interface Needle {
  what: string;
  bytes: Buffer;
}

function keyNeedles(name: string, k: CustomerKey): Needle[] {
  return [
    { what: `${name} raw`, bytes: k.raw },
    { what: `${name} base64`, bytes: Buffer.from(k.b64) },
    { what: `${name} base64url`, bytes: Buffer.from(k.raw.toString('base64url')) },
    { what: `${name} hex`, bytes: Buffer.from(k.raw.toString('hex')) },
    { what: `${name} HEX`, bytes: Buffer.from(k.raw.toString('hex').toUpperCase()) },
  ];
}

/** Which needles occur in the file, read in pieces that overlap by the longest needle. */
function findInFile(path: string, needles: Needle[]): Set<string> {
  const found = new Set<string>();
  const overlap = Math.max(...needles.map((n) => n.bytes.length)) - 1;
  const piece = Buffer.alloc(4 * MiB + overlap);
  const fd = openSync(path, 'r');
  try {
    let carried = 0;
    for (;;) {
      const n = readSync(fd, piece, carried, piece.length - carried, null);
      if (n === 0) break;
      const view = piece.subarray(0, carried + n);
      for (const needle of needles) if (view.includes(needle.bytes)) found.add(needle.what);
      carried = Math.min(overlap, view.length);
      view.copy(piece, 0, view.length - carried);
    }
  } finally {
    closeSync(fd);
  }
  return found;
}

function search(needles: Needle[]): Map<string, string[]> {
  const where = new Map<string, string[]>();
  const note = (what: string, place: string) => where.set(what, [...(where.get(what) ?? []), place]);
  for (const file of walkFiles(server.dir)) for (const what of findInFile(file, needles)) note(what, file);
  const logs = Buffer.from(server.stdout() + server.stderr());
  for (const needle of needles) if (logs.includes(needle.bytes)) note(needle.what, 'server logs');
  return where;
}

const sse = (k: CustomerKey) => ({ SSECustomerAlgorithm: 'AES256', SSECustomerKey: k.b64 });
const run = (data: Buffer, at: number) => data.subarray(at, at + 32);

test('no SSE-C key, plaintext or metadata value reaches the data dir, the metadata store or the logs', async () => {
  const k1 = customerKey();
  const k2 = customerKey();
  const k3 = customerKey();
  const tag = randomBytes(8).toString('hex');
  const meta1 = `single-secret-${tag}`;
  const meta2 = `multipart-secret-${tag}`;
  const type1 = `application/x-hidden-${tag}`;

  // A single PUT with user metadata and a distinctive content type.
  const single = randomBytes(2 * MiB + 100);
  await s3.send(
    new PutObjectCommand({
      Bucket: B,
      Key: 'single.bin',
      Body: single,
      ContentType: type1,
      Metadata: { note: meta1 },
      ...sse(k1),
    }),
  );
  // A small one, which may be stored inline in the metadata store.
  const small = randomBytes(300);
  await s3.send(
    new PutObjectCommand({ Bucket: B, Key: 'small.bin', Body: small, Metadata: { note: meta1 }, ...sse(k1) }),
  );

  // A multipart upload with metadata.
  const up = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: B, Key: 'multi.bin', Metadata: { note: meta2 }, ...sse(k2) }),
  );
  const p1 = randomBytes(5 * MiB);
  const p2 = randomBytes(700_000);
  const e1 = await s3.send(
    new UploadPartCommand({
      Bucket: B,
      Key: 'multi.bin',
      UploadId: up.UploadId,
      PartNumber: 1,
      Body: p1,
      ...sse(k2),
    }),
  );
  const e2 = await s3.send(
    new UploadPartCommand({
      Bucket: B,
      Key: 'multi.bin',
      UploadId: up.UploadId,
      PartNumber: 2,
      Body: p2,
      ...sse(k2),
    }),
  );
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: B,
      Key: 'multi.bin',
      UploadId: up.UploadId,
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: e1.ETag },
          { PartNumber: 2, ETag: e2.ETag },
        ],
      },
    }),
  );
  // Rotation by copy: reads with k1, writes with k3.
  await s3.send(
    new CopyObjectCommand({
      Bucket: B,
      Key: 'rotated.bin',
      CopySource: `${B}/single.bin`,
      CopySourceSSECustomerAlgorithm: 'AES256',
      CopySourceSSECustomerKey: k1.b64,
      ...sse(k3),
    }),
  );
  // Reads, and refused requests that carry a key (errors and their logs must not echo it).
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'multi.bin', ...sse(k2) }));
  assert.equal(Buffer.from(await got.Body!.transformToByteArray()).length, p1.length + p2.length);
  await s3.send(new HeadObjectCommand({ Bucket: B, Key: 'rotated.bin', ...sse(k3) }));
  assert.equal((await signedFetch(server, 'GET', `/${B}/single.bin`, sseCHeaders(k2))).status, 403);
  const badMd5 = await signedFetch(server, 'GET', `/${B}/single.bin`, {
    ...sseCHeaders(k1),
    [`${SSE_C}key-md5`]: k2.md5,
  });
  assert.equal(badMd5.status, 400);
  const noMd5 = sseCHeaders(k3);
  delete noMd5[`${SSE_C}key-md5`];
  assert.equal((await signedFetch(server, 'PUT', `/${B}/refused.bin`, noMd5)).status, 400);
  for (const body of [badMd5.body]) assert.ok(!body.includes(Buffer.from(k1.b64)));

  // A plaintext object beside, the positive control.
  const plain = randomBytes(1 * MiB + 10);
  const plainMeta = `plain-visible-${tag}`;
  await s3.send(
    new PutObjectCommand({ Bucket: B, Key: 'plain.bin', Body: plain, Metadata: { note: plainMeta } }),
  );

  // Stopped, so everything the server would write is on disk and its logs are complete.
  await server.stop();
  assert.match(server.stdout() + server.stderr(), /CopyObject/, 'requests are logged at debug level');

  const secrets: Needle[] = [
    ...keyNeedles('key 1', k1),
    ...keyNeedles('key 2', k2),
    ...keyNeedles('key 3', k3),
    { what: 'single PUT plaintext', bytes: run(single, 1_500_000) },
    { what: 'single PUT plaintext start', bytes: run(single, 0) },
    { what: 'small PUT plaintext', bytes: run(small, 100) },
    { what: 'part 1 plaintext', bytes: run(p1, 4 * MiB) },
    { what: 'part 2 plaintext', bytes: run(p2, 0) },
    { what: 'single metadata value', bytes: Buffer.from(meta1) },
    { what: 'multipart metadata value', bytes: Buffer.from(meta2) },
    { what: 'content type', bytes: Buffer.from(type1) },
  ];
  const controls: Needle[] = [
    { what: 'plaintext object bytes', bytes: run(plain, 500_000) },
    { what: 'plaintext object metadata', bytes: Buffer.from(plainMeta) },
  ];
  const where = search([...secrets, ...controls]);
  for (const c of controls) assert.ok(where.has(c.what), `control: the search finds the ${c.what}`);
  const leaks = secrets
    .filter((s) => where.has(s.what))
    .map((s) => `${s.what} in ${where.get(s.what)!.join(', ')}`);
  assert.deepEqual(leaks, [], 'nothing secret is stored or logged');
});
