// An encrypted object's record is authenticated by the object's key: its size, ETag, and every segment (part
// number, plaintext and stored sizes, stream header, blocks). Objects are written with the AWS SDK (SSE-C and
// SSE-S3, one PUT and multipart), the node is stopped, the metadata store is edited the way someone holding
// `metadata_dir` (or a malicious metadata node) would — the size cut, a cut at a chunk boundary, the last part
// dropped, parts swapped or duplicated, a part's size changed, a part taken from another object — and after a
// restart every GET and ranged GET of an edited object is refused with 500 InternalError before any byte of
// data is sent. Restoring the records makes the objects read whole again. The stored records also hold no
// checksum or part MD5 of an encrypted object's plaintext in the clear.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { open } from 'lmdb';
import { rejects } from '../helpers/s3.js';
import { startServer, type TestServer } from '../helpers/server.js';
import type { ObjectRecord, Segment } from '../../src/model/types.js';
import { mustCli, operatorKey } from './sse-s3-helpers.js';
import {
  customerKey,
  signedFetch,
  sseCHeaders,
  walkFiles,
  type CustomerKey,
  sseCParams,
} from './ssec-helpers.js';

const B = 'trunc';
const KiB = 1024;
const MiB = 1024 * KiB;
/** Plaintext bytes per encrypted chunk (docs/formats-sse.md). */
const CHUNK = 64 * KiB;
/** Stream header and chunk tag sizes. */
const HEADER = 17;
const TAG = 16;

let server: TestServer;
let s3: S3Client;
const key = customerKey();

type Kind = 'sse-c' | 'sse-s3';

const sse = (kind: Kind, k: CustomerKey = key) =>
  kind === 'sse-c' ? sseCParams(k) : { ServerSideEncryption: 'AES256' as const };

before(async () => {
  const operator = await operatorKey('trunc');
  server = await startServer({ extraConfig: '[sse_s3]\nunlock_key_file = "operator.sec.asc"' });
  await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  await server.stop();
  writeFileSync(join(server.dir, 'operator.sec.asc'), readFileSync(operator.privateFile), { mode: 0o600 });
  server = await startServer({ dir: server.dir });
  s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: B }));
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  server?.cleanup();
});

async function putSingle(kind: Kind, name: string, data: Buffer): Promise<void> {
  await s3.send(
    new PutObjectCommand({ Bucket: B, Key: name, Body: data, ChecksumAlgorithm: 'SHA256', ...sse(kind) }),
  );
}

/** A multipart upload of `parts`; Complete carries no key, as many clients send it (rclone, minio-go…). */
async function putMultipart(kind: Kind, name: string, parts: Buffer[]): Promise<string | undefined> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: B, Key: name, ChecksumAlgorithm: 'SHA256', ...sse(kind) }),
  );
  const done = [];
  for (const [i, body] of parts.entries()) {
    const r = await s3.send(
      new UploadPartCommand({
        Bucket: B,
        Key: name,
        UploadId,
        PartNumber: i + 1,
        Body: body,
        ChecksumAlgorithm: 'SHA256',
        ...sse(kind),
      }),
    );
    done.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumSHA256: r.ChecksumSHA256 });
  }
  const completed = await s3.send(
    new CompleteMultipartUploadCommand({ Bucket: B, Key: name, UploadId, MultipartUpload: { Parts: done } }),
  );
  return completed.ChecksumSHA256;
}

const readHeaders = (kind: Kind) => (kind === 'sse-c' ? sseCHeaders(key) : {});

async function assertWhole(kind: Kind, name: string, data: Buffer): Promise<void> {
  const got = await signedFetch(server, 'GET', `/${B}/${name}`, readHeaders(kind));
  assert.equal(got.status, 200, `${name}: ${got.body.subarray(0, 300).toString()}`);
  assert.equal(got.error, undefined);
  assert.ok(got.body.equals(data), `${name} reads back whole`);
}

/** A GET (and ranged GETs at both ends) of an edited object is an error before any byte of data. */
async function assertRefused(kind: Kind, name: string, what: string, size: number): Promise<void> {
  const ranges = [undefined, 'bytes=0-99', `bytes=${Math.max(0, size - 100)}-`];
  for (const range of ranges) {
    const got = await signedFetch(server, 'GET', `/${B}/${name}`, {
      ...readHeaders(kind),
      ...(range ? { range } : {}),
    });
    const where = `${kind} ${what}, ${range ?? 'whole object'}`;
    assert.equal(got.status, 500, `${where}: answered ${got.status} with ${got.body.length} bytes`);
    const text = got.body.toString('utf8');
    assert.match(text, /<Code>InternalError<\/Code>/, `${where}: an S3 error, not data`);
  }
  const head = await signedFetch(server, 'HEAD', `/${B}/${name}`, readHeaders(kind));
  assert.equal(head.status, 500, `${kind} ${what}: HEAD answered ${head.status}`);
}

/**
 * Edits stored object records with the server stopped (as someone holding metadata_dir could), then restarts.
 * Returns every object record as it was before the edits.
 */
async function editRecords(
  edits: Map<string, (r: ObjectRecord, all: Map<string, ObjectRecord>) => void>,
): Promise<Map<string, ObjectRecord>> {
  await server.stop();
  const root = open({ path: join(server.dir, 'meta'), compression: false, maxDbs: 32 });
  try {
    const objects = root.openDB<ObjectRecord, (string | number)[]>({
      name: 'objects',
      keyEncoding: 'ordered-binary',
    });
    const all = new Map<string, ObjectRecord>();
    const keys = new Map<string, (string | number)[]>();
    for (const { key: k, value } of objects.getRange({})) {
      all.set(value.key, structuredClone(value));
      keys.set(value.key, k);
    }
    for (const [name, edit] of edits) {
      const record = all.get(name);
      assert.ok(record, `record of ${name} found in the metadata store`);
      const copy = structuredClone(record);
      edit(copy, all);
      await objects.put(keys.get(name)!, copy);
    }
    return all;
  } finally {
    await root.close();
    server = await startServer({ dir: server.dir });
    s3.destroy();
    s3 = server.client();
  }
}

/** Cuts a one-segment record's data at the chunk boundary `chunks` × 64 KiB: size, stored size and blocks. */
function cutAtChunk(r: ObjectRecord, chunks: number): void {
  const seg = r.segments[0]!;
  const plain = chunks * CHUNK;
  const stored = HEADER + chunks * (CHUNK + TAG);
  let offset = 0;
  const blocks: Segment['blocks'] = [];
  for (const b of seg.blocks) {
    if (offset >= stored) break;
    blocks.push({ hash: b.hash, size: Math.min(b.size, stored - offset) });
    offset += b.size;
  }
  r.segments[0] = { ...seg, plainSize: plain, storedSize: stored, blocks };
  r.size = plain;
}

function sizeOf(r: ObjectRecord): number {
  return r.segments.reduce((n, s) => n + s.plainSize, 0);
}

test('edited size or segments of SSE-C and SSE-S3 objects: GET and ranged GET refused before any byte', async () => {
  const single = randomBytes(3 * MiB + 500_000);
  const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(300_000)];
  const whole = Buffer.concat(parts);
  const donorParts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(300_000)];
  const written = new Map<string, { kind: Kind; data: Buffer }>();
  const edits = new Map<string, (r: ObjectRecord, all: Map<string, ObjectRecord>) => void>();
  const what = new Map<string, string>();
  const edit = (
    kind: Kind,
    name: string,
    description: string,
    fn: (r: ObjectRecord, all: Map<string, ObjectRecord>) => void,
  ) => {
    edits.set(name, fn);
    what.set(name, description);
    written.set(name, { kind, data: name.includes('single') ? single : whole });
  };

  for (const kind of ['sse-c', 'sse-s3'] as const) {
    for (const n of [1, 2, 3]) await putSingle(kind, `${kind}/single-${n}`, single);
    for (const n of [1, 2, 3, 4, 5]) await putMultipart(kind, `${kind}/multi-${n}`, parts);
    await putMultipart(kind, `${kind}/donor`, donorParts);

    edit(kind, `${kind}/single-1`, 'size cut at a chunk boundary', (r) => {
      r.size = 16 * CHUNK;
    });
    edit(kind, `${kind}/single-2`, 'data cut at a chunk boundary', (r) => cutAtChunk(r, 16));
    edit(kind, `${kind}/single-3`, 'segment from another object', (r, all) => {
      const other = all.get(`${kind}/single-1`)!;
      r.segments = other.segments;
    });
    edit(kind, `${kind}/multi-1`, 'last part dropped', (r) => {
      r.segments.pop();
      r.size = sizeOf(r);
    });
    edit(kind, `${kind}/multi-2`, 'parts 1 and 2 swapped', (r) => {
      r.segments = [r.segments[1]!, r.segments[0]!, r.segments[2]!];
    });
    edit(kind, `${kind}/multi-3`, 'part 1 in place of part 2', (r) => {
      r.segments[1] = structuredClone(r.segments[0]!);
    });
    edit(kind, `${kind}/multi-4`, "a part's plain size changed", (r) => {
      const last = r.segments[2]!;
      r.segments[2] = { ...last, plainSize: 4 * CHUNK };
      r.size = sizeOf(r);
    });
    edit(kind, `${kind}/multi-5`, 'part 2 taken from another object', (r, all) => {
      r.segments[1] = all.get(`${kind}/donor`)!.segments[1]!;
    });
  }
  for (const [name, { kind, data }] of written) await assertWhole(kind, name, data);

  const originals = await editRecords(edits);
  for (const [name, { kind }] of written) {
    await assertRefused(kind, name, what.get(name)!, originals.get(name)!.size);
  }

  await editRecords(
    new Map(
      [...originals].map(([name, original]) => [
        name,
        (r: ObjectRecord) => {
          Object.assign(r, original);
        },
      ]),
    ),
  );
  for (const [name, { kind, data }] of written) await assertWhole(kind, name, data);
});

test('no clear checksum or part MD5 of an encrypted object is stored, and checksums still reach clients', async () => {
  const data = randomBytes(700_000);
  const parts = [randomBytes(5 * MiB), randomBytes(123_456)];
  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('base64');
  const md5hex = (b: Buffer) => createHash('md5').update(b).digest('hex');
  const secrets: string[] = [sha256(data), ...parts.map(sha256), ...parts.map(md5hex)];
  let multiSum: string | undefined;
  for (const kind of ['sse-c', 'sse-s3'] as const) {
    await putSingle(kind, `${kind}/sums-single`, data);
    const sum = await putMultipart(kind, `${kind}/sums-multi`, parts);
    if (kind === 'sse-s3') {
      assert.ok(sum, "Complete answers the SSE-S3 object's combined checksum");
      multiSum = sum;
      secrets.push(sum.replace(/-\d+$/, ''));
    }
    // An upload left in progress keeps its parts' records too.
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({
        Bucket: B,
        Key: `${kind}/sums-open`,
        ChecksumAlgorithm: 'SHA256',
        ...sse(kind),
      }),
    );
    const up = await s3.send(
      new UploadPartCommand({
        Bucket: B,
        Key: `${kind}/sums-open`,
        UploadId,
        PartNumber: 1,
        Body: parts[0],
        ChecksumAlgorithm: 'SHA256',
        ...sse(kind),
      }),
    );
    assert.equal(up.ChecksumSHA256, sha256(parts[0]!));
    const listed = await s3.send(
      new ListPartsCommand({ Bucket: B, Key: `${kind}/sums-open`, UploadId, ...sse(kind) }),
    );
    assert.deepEqual(
      listed.Parts!.map((p) => [p.PartNumber, p.ETag, p.Size]),
      [[1, up.ETag, parts[0]!.length]],
    );
    if (kind === 'sse-c') {
      // An SSE-C part's ETag is made from the key: listing the parts needs it.
      const list = () => s3.send(new ListPartsCommand({ Bucket: B, Key: `${kind}/sums-open`, UploadId }));
      await rejects(list, 'InvalidRequest', 400);
      await rejects(
        () =>
          s3.send(
            new ListPartsCommand({
              Bucket: B,
              Key: `${kind}/sums-open`,
              UploadId,
              ...sse(kind, customerKey()),
            }),
          ),
        'AccessDenied',
        403,
      );
    }
  }

  await server.stop();
  try {
    for (const file of walkFiles(join(server.dir, 'meta'))) {
      const bytes = readFileSync(file);
      for (const secret of secrets) {
        assert.ok(!bytes.includes(Buffer.from(secret)), `${file} holds ${secret} in the clear`);
      }
    }
  } finally {
    server = await startServer({ dir: server.dir });
    s3.destroy();
    s3 = server.client();
  }
  // Checksums are still answered where S3 gives them.
  for (const kind of ['sse-c', 'sse-s3'] as const) {
    const got = await s3.send(
      new GetObjectCommand({ Bucket: B, Key: `${kind}/sums-single`, ChecksumMode: 'ENABLED', ...sse(kind) }),
    );
    await got.Body!.transformToByteArray();
    assert.equal(got.ChecksumSHA256, sha256(data), `${kind} single-PUT checksum answered`);
  }
  const multi = await s3.send(
    new GetObjectCommand({ Bucket: B, Key: 'sse-s3/sums-multi', ChecksumMode: 'ENABLED' }),
  );
  await multi.Body!.transformToByteArray();
  assert.equal(multi.ChecksumSHA256, multiSum, 'multipart SSE-S3 checksum answered on GET');
});
