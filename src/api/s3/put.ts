// api/s3/put: PutObject — stream the body through its verifier (and encryption) into blocks, then commit.
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ObjectStreams, SegmentIo, WriteCondition } from '../../model/store.js';
import { RECORD_VERSION, type ObjectRecord, type Segment } from '../../model/types.js';
import { newVersionId } from '../../model/model.js';
import { lockFromHeaders } from './object-lock.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type BucketContext, type S3Context } from './context.js';
import {
  encryptionForWrite,
  etagIsMd5,
  segmentSealer,
  responseHeaders,
  disposeEncryption,
  sealMetadata,
  sealObjectRecord,
  type RequestEncryption,
} from './encryption.js';
import { conditionsFrom, storedHeaders, userMetadata } from './headers.js';
import { tagsFromRequest } from './tagging.js';
import { checkObjectKey } from './router.js';
import { sendEmpty } from './response.js';
import { CHECKSUM_ALGORITHMS, checksumHeaderName } from './checksum.js';
import { setVersionHeader } from './versioning.js';

export const MAX_PUT_SIZE = 5 * 1024 ** 3; // S3's single-PUT limit

export function checkDeclaredSize(ctx: S3Context, max = MAX_PUT_SIZE): void {
  const decoded = header(ctx, 'x-amz-decoded-content-length');
  const length = decoded ?? header(ctx, 'content-length');
  if (length === undefined) {
    if (header(ctx, 'transfer-encoding') === undefined) {
      throw new S3Error('MissingContentLength', 411, 'You must provide the Content-Length HTTP header.');
    }
    return;
  }
  if (!/^\d+$/.test(length)) throw new S3Error('InvalidArgument', 400, 'Content-Length must be a number');
  if (Number(length) > max) {
    throw new S3Error('EntityTooLarge', 400, 'Your proposed upload exceeds the maximum allowed object size.');
  }
}

// Stores `source` (already verified as it flows) as a segment, sealed block by block when encrypted.
export async function storeSegment(
  store: SegmentIo,
  source: Readable,
  enc: RequestEncryption,
  identity: { bucketId: string; key: string; versionId: string },
  segmentIndex: number,
): Promise<Segment> {
  const sealer = segmentSealer(enc, identity, segmentIndex);
  if (!sealer) return store.writeSegment(source);
  const segment = await store.writeSegment(source, sealer);
  return { ...segment, cryptoHeader: sealer.header };
}

// The size of the payload as the request declares it, for a store that must know it before the first byte
// (an S3 backend): a body of unknown length is refused there.
export function declaredSize(ctx: S3Context): number {
  const declared = header(ctx, 'x-amz-decoded-content-length') ?? header(ctx, 'content-length');
  if (declared === undefined || !/^\d+$/.test(declared))
    throw new S3Error('MissingContentLength', 411, 'You must provide the Content-Length HTTP header.');
  return Number(declared);
}

export function etagOf(enc: RequestEncryption, md5: Buffer): string {
  // An SSE-C object's ETag must not reveal the MD5 of its plaintext (see etagIsMd5).
  return etagIsMd5(enc) ? `"${md5.toString('hex')}"` : `"${randomBytes(16).toString('hex')}"`;
}

// The x-amz-checksum-* value a request gives in a header (not as a trailer), which its body must match.
function declaredChecksums(ctx: S3Context): Record<string, string> {
  for (const algorithm of CHECKSUM_ALGORITHMS) {
    const value = header(ctx, checksumHeaderName(algorithm));
    if (value !== undefined) return { [algorithm]: value };
  }
  return {};
}

export function setChecksumHeaders(ctx: S3Context, checksums: Record<string, string>): void {
  for (const [alg, value] of Object.entries(checksums))
    ctx.res.setHeader(`x-amz-checksum-${alg.toLowerCase()}`, value);
}

export async function putObject(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const key = requireKey(ctx);
  checkObjectKey(key);
  checkDeclaredSize(ctx);
  const headers = storedHeaders(ctx.req.headers);
  const userMeta = userMetadata(ctx.req.headers);
  const conditions = conditionsFrom(ctx.req.headers);
  const tags = tagsFromRequest(ctx);
  const lock = lockFromHeaders(ctx, bucket);
  const enc = encryptionForWrite(ctx, bucket);
  try {
    if (ctx.store.streams) {
      await putObjectStream(ctx, ctx.store.streams, enc, { key, headers, userMeta, conditions, tags });
      return;
    }
    const versionId = newVersionId();
    const body = ctx.body({ md5: etagIsMd5(enc) });
    const segment = await storeSegment(
      ctx.store,
      body.stream,
      enc,
      { bucketId: bucket.id, key, versionId },
      0,
    );
    const { md5, checksums } = body.digests();
    const record: ObjectRecord = sealObjectRecord(
      enc,
      {
        v: RECORD_VERSION,
        bucketId: bucket.id,
        key,
        versionId,
        size: segment.plainSize,
        etag: etagOf(enc, md5),
        lastModified: Date.now(),
        ...sealMetadata(enc, { bucketId: bucket.id, key, versionId, headers, userMeta, checksums }),
        segments: [segment],
        ...(tags ? { tags } : {}),
        ...lock,
      },
      checksums,
    );
    const stored = await ctx.store.putObject(record, conditions);
    if (stored !== undefined) ctx.res.setHeader('x-amz-version-id', stored);
    ctx.res.setHeader('ETag', record.etag);
    setChecksumHeaders(ctx, checksums);
    for (const [k, v] of Object.entries(responseHeaders(enc))) ctx.res.setHeader(k, v);
    sendEmpty(ctx.res, 200);
  } finally {
    disposeEncryption(enc);
  }
}

/**
 * Seals `source` (exactly `plainSize` bytes) into a store that keeps objects as streams, as a new version of
 * the object; the record is the store's answer. PutObject's and PostObject's way into an S3 backend.
 */
export async function streamObject(
  streams: ObjectStreams,
  enc: RequestEncryption,
  object: {
    bucketId: string;
    key: string;
    headers: Record<string, string>;
    userMeta: Record<string, string>;
    conditions?: WriteCondition | undefined;
    tags: Record<string, string> | undefined;
    checksums?: Record<string, string>;
  },
  source: AsyncIterable<Buffer>,
  plainSize: number,
): Promise<ObjectRecord> {
  const { bucketId, key, headers, userMeta, conditions, tags, checksums } = object;
  const versionId = newVersionId();
  const sealer = segmentSealer(enc, { bucketId, key, versionId }, 0);
  if (!sealer) throw S3Errors.internal('an object stored in a backend must be encrypted');
  return streams.putObjectStream(
    {
      v: RECORD_VERSION,
      bucketId,
      key,
      versionId,
      ...sealMetadata(enc, {
        bucketId,
        key,
        versionId,
        headers,
        userMeta,
        ...(checksums ? { checksums } : {}),
      }),
      ...(tags ? { tags } : {}),
      cryptoHeader: sealer.header,
    },
    source,
    plainSize,
    sealer,
    conditions,
  );
}

// PutObject into a store that keeps objects as streams (an S3 backend): the body is sealed as it flows through
// to the store, and the record is what the store answers. Its ETag is the store's (not an MD5 of the
// plaintext: docs/gateway.md), so no MD5 is computed unless Content-MD5 asks for one to check.
async function putObjectStream(
  ctx: BucketContext,
  streams: ObjectStreams,
  enc: RequestEncryption,
  object: {
    key: string;
    headers: Record<string, string>;
    userMeta: Record<string, string>;
    conditions: WriteCondition | undefined;
    tags: Record<string, string> | undefined;
  },
): Promise<void> {
  const body = ctx.body({ md5: false });
  // The metadata is sealed before the first byte goes to the store: a checksum the request names in a header
  // is sealed with it (the body is refused, and nothing stored, unless it matches), for GET and HEAD to give.
  const record = await streamObject(
    streams,
    enc,
    { bucketId: ctx.bucket.id, ...object, checksums: declaredChecksums(ctx) },
    body.stream,
    declaredSize(ctx),
  );
  ctx.res.setHeader('ETag', record.etag);
  setVersionHeader(ctx, ctx.bucket, record);
  setChecksumHeaders(ctx, body.digests().checksums);
  for (const [k, v] of Object.entries(responseHeaders(enc))) ctx.res.setHeader(k, v);
  sendEmpty(ctx.res, 200);
}
