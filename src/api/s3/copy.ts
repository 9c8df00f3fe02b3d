// api/s3/copy: CopyObject and UploadPartCopy. Plaintext to plaintext copies share the source's blocks;
// anything involving encryption is decrypted with the source's key and re-encrypted with the destination's.
import { tagsFromRequest } from './tagging.js';
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Transform } from 'node:stream';
import { RECORD_VERSION, s3VersionId, type BucketRecord, type ObjectRecord } from '../../model/types.js';
import { lockFromHeaders } from './object-lock.js';
import { checkedVersionId, setVersionHeader } from './versioning.js';
import { newVersionId } from '../../model/model.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type CopyContext, type S3Context } from './context.js';
import {
  disposeEncryption,
  encryptionForRead,
  encryptionForUpload,
  encryptionForWrite,
  openObjectRange,
  responseHeaders,
  sealMetadata,
  sealObjectRecord,
  segmentSealer,
  type RequestEncryption,
} from './encryption.js';
import { constantTimeEqual } from '../../crypto/keys.js';
import type { ObjectStreams, StreamedObject } from '../../model/store.js';
import type { ObjectMetadata } from './metadata.js';
import { openMetadata } from './metadata.js';
import {
  conditionsFrom,
  evaluateConditions,
  invalidRange,
  storedHeaders,
  userMetadata,
  type ByteRange,
} from './headers.js';
import { checkObjectKey } from './router.js';
import { etagOf, storeSegment, MAX_PUT_SIZE } from './put.js';
import { isoDate, sendXml } from './response.js';
import { partNumberOf, partRecord, uploadFor, MAX_PART_SIZE } from './multipart.js';

interface CopySource {
  bucket: BucketRecord;
  record: ObjectRecord;
}

/**
 * The bucket and object key an x-amz-copy-source header names ("bucket/key", percent-encoded, optionally
 * "?versionId=…"). Read by the server before the handler runs: the key must hold read on that bucket.
 */
export function copySourceOf(
  headers: IncomingHttpHeaders,
  backendVersionIds = false,
): {
  bucketName: string;
  key: string;
  versionId?: string;
} {
  const value = headers['x-amz-copy-source'];
  let raw = (Array.isArray(value) ? value.join(',') : value) ?? '';
  const q = raw.indexOf('?');
  let versionId: string | undefined;
  if (q >= 0) {
    const asked = new URLSearchParams(raw.slice(q + 1)).get('versionId');
    raw = raw.slice(0, q);
    if (asked !== null) versionId = checkedVersionId(asked, 'x-amz-copy-source', backendVersionIds);
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw S3Errors.invalidArgument(
      'Copy Source must mention the source bucket and key: sourcebucket/sourcekey',
      { ArgumentName: 'x-amz-copy-source' },
    );
  }
  if (decoded.startsWith('/')) decoded = decoded.slice(1);
  const slash = decoded.indexOf('/');
  if (slash <= 0 || slash === decoded.length - 1) {
    throw S3Errors.invalidArgument(
      'Copy Source must mention the source bucket and key: sourcebucket/sourcekey',
      { ArgumentName: 'x-amz-copy-source' },
    );
  }
  const key = decoded.slice(slash + 1);
  checkObjectKey(key);
  return { bucketName: decoded.slice(0, slash), key, ...(versionId !== undefined ? { versionId } : {}) };
}

// The source object (the version named, or the current one), in the bucket the server has already allowed the
// key to read. The answer names the version copied when the source bucket is versioned.
async function sourceObject(ctx: CopyContext): Promise<CopySource> {
  const { bucket, key, versionId } = ctx.source;
  const record = await ctx.store.getVersion(bucket.id, key, versionId);
  if (!record || (record.deleteMarker && versionId === undefined))
    throw versionId === undefined ? S3Errors.noSuchKey(key) : S3Errors.noSuchVersion(key, versionId);
  if (record.deleteMarker)
    throw S3Errors.invalidRequest(
      'The source of a copy request may not specifically refer to a delete marker by version id.',
    );
  if (bucket.versioning || versionId !== undefined)
    ctx.res.setHeader('x-amz-copy-source-version-id', s3VersionId(record));
  const status = evaluateConditions(
    conditionsFrom(ctx.req.headers, 'x-amz-copy-source-'),
    record.etag,
    record.lastModified,
    false,
  );
  if (status)
    throw new S3Error(
      'PreconditionFailed',
      412,
      'At least one of the pre-conditions you specified did not hold',
      { Condition: 'x-amz-copy-source-If-Match' },
    );
  return { bucket, record };
}

// Streams plaintext [start, end) of the source into a new stored segment for the destination, hashing it.
async function copyData(
  ctx: S3Context,
  source: ObjectRecord,
  sourceEnc: RequestEncryption,
  destEnc: RequestEncryption,
  identity: { bucketId: string; key: string; versionId: string },
  segmentIndex: number,
  range: ByteRange,
) {
  const md5 = createHash('md5');
  const hashing = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      md5.update(chunk);
      cb(null, chunk);
    },
  });
  const data = openObjectRange(ctx.store, source, sourceEnc, range.start, range.end);
  data.on('error', (err) => hashing.destroy(err));
  const segment = await storeSegment(ctx.store, data.pipe(hashing), destEnc, identity, segmentIndex);
  return { segment, md5: md5.digest() };
}

export async function copyObject(ctx: CopyContext): Promise<void> {
  const bucket = ctx.bucket;
  const key = requireKey(ctx);
  checkObjectKey(key);
  const source = await sourceObject(ctx);
  if (source.record.size > MAX_PUT_SIZE) {
    throw S3Errors.invalidRequest(
      'The specified copy source is larger than the maximum allowable size for a copy source: 5368709120',
    );
  }
  const directive = (header(ctx, 'x-amz-metadata-directive') ?? 'COPY').toUpperCase();
  if (directive !== 'COPY' && directive !== 'REPLACE') {
    throw S3Errors.invalidArgument('Unknown metadata directive.', {
      ArgumentName: 'x-amz-metadata-directive',
    });
  }
  // Tags are copied from the source unless the request replaces them (x-amz-tagging then gives them).
  const tagging = (header(ctx, 'x-amz-tagging-directive') ?? 'COPY').toUpperCase();
  if (tagging !== 'COPY' && tagging !== 'REPLACE') {
    throw S3Errors.invalidArgument('Unknown tagging directive.', { ArgumentName: 'x-amz-tagging-directive' });
  }
  const lock = lockFromHeaders(ctx, bucket);
  const sourceEnc = encryptionForRead(ctx, source.record, true);
  const destEnc = encryptionForWrite(ctx, bucket);
  try {
    // Copying an older version onto its own key is how a version is restored: only the current one is refused.
    const sameObject =
      source.bucket.id === bucket.id && source.record.key === key && ctx.source.versionId === undefined;
    if (
      sameObject &&
      directive === 'COPY' &&
      sourceEnc.kind === 'plaintext' &&
      destEnc.kind === 'plaintext'
    ) {
      throw S3Errors.invalidRequest(
        "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
      );
    }
    const sourceMeta = openMetadata(source.record, sourceEnc);
    const meta =
      directive === 'COPY'
        ? sourceMeta
        : { headers: storedHeaders(ctx.req.headers), userMeta: userMetadata(ctx.req.headers) };
    if (ctx.store.streams) {
      const tags =
        tagging === 'COPY' ? await ctx.store.streams.objectTags(source.record) : tagsFromRequest(ctx);
      const copied = await copyObjectStream(ctx, ctx.store.streams, {
        source: source.record,
        sourceEnc,
        destEnc,
        key,
        meta,
        tags,
      });
      for (const [k, v] of Object.entries(responseHeaders(destEnc))) ctx.res.setHeader(k, v);
      setVersionHeader(ctx, bucket, copied);
      sendXml(ctx.res, 200, 'CopyObjectResult', {
        ETag: copied.etag,
        LastModified: isoDate(copied.lastModified),
      });
      return;
    }
    const versionId = newVersionId();
    const identity = { bucketId: bucket.id, key, versionId };
    let record: ObjectRecord;
    if (sourceEnc.kind === 'plaintext' && destEnc.kind === 'plaintext') {
      // Same bytes, new record: the blocks are shared and their reference counts say so. The source version's
      // standing (null version, object lock) is its own, not the copy's.
      const {
        nullVersion: _null,
        retention: _retention,
        legalHold: _hold,
        uploadId: _upload,
        ...copied
      } = source.record;
      record = {
        ...copied,
        v: RECORD_VERSION,
        bucketId: bucket.id,
        key,
        versionId,
        lastModified: Date.now(),
        headers: meta.headers,
        userMeta: meta.userMeta,
        sealedMeta: undefined,
      };
      ctx.store.retainSegments(record.segments);
    } else {
      const { segment, md5 } = await copyData(ctx, source.record, sourceEnc, destEnc, identity, 0, {
        start: 0,
        end: source.record.size,
      });
      record = {
        v: RECORD_VERSION,
        bucketId: bucket.id,
        key,
        versionId,
        size: segment.plainSize,
        etag: etagOf(destEnc, md5),
        lastModified: Date.now(),
        headers: meta.headers,
        userMeta: meta.userMeta,
        checksums: {},
        segments: [segment],
      };
    }
    const checksums = meta.checksums ?? record.checksums;
    Object.assign(record, sealMetadata(destEnc, { ...record, checksums }));
    const { tags: _sourceTags, ...untagged } = record;
    const tags = tagging === 'COPY' ? source.record.tags : tagsFromRequest(ctx);
    record = sealObjectRecord(destEnc, { ...untagged, ...(tags ? { tags } : {}), ...lock }, checksums);
    // If-Match / If-None-Match on the destination, checked as the copy commits: a copy onto itself (a gateway
    // re-wrapping an object's key) never undoes a PUT that landed after its source was read.
    const stored = await ctx.store.putObject(record, conditionsFrom(ctx.req.headers));
    if (stored !== undefined) ctx.res.setHeader('x-amz-version-id', stored);
    for (const [k, v] of Object.entries(responseHeaders(destEnc))) ctx.res.setHeader(k, v);
    sendXml(ctx.res, 200, 'CopyObjectResult', {
      ETag: record.etag,
      LastModified: isoDate(record.lastModified),
    });
  } finally {
    disposeEncryption(sourceEnc);
    disposeEncryption(destEnc);
  }
}

function parseCopyRange(value: string | undefined, size: number): ByteRange {
  if (value === undefined) return { start: 0, end: size };
  const m = /^bytes=(\d+)-(\d+)$/.exec(value.trim());
  if (!m)
    throw S3Errors.invalidArgument(
      'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy',
      { ArgumentName: 'x-amz-copy-source-range' },
    );
  const start = Number(m[1]);
  const last = Number(m[2]);
  if (last < start || last >= size) throw invalidRange(size);
  return { start, end: last + 1 };
}

export async function uploadPartCopy(ctx: CopyContext): Promise<void> {
  const { upload } = await uploadFor(ctx);
  const partNumber = partNumberOf(ctx);
  const source = await sourceObject(ctx);
  const range = parseCopyRange(header(ctx, 'x-amz-copy-source-range'), source.record.size);
  if (range.end - range.start > MAX_PART_SIZE)
    throw new S3Error('EntityTooLarge', 400, 'Your proposed upload exceeds the maximum allowed object size.');
  const sourceEnc = encryptionForRead(ctx, source.record, true);
  const destEnc = encryptionForUpload(ctx, upload);
  try {
    if (ctx.store.streams) {
      // Into a store of streams (an S3 backend): the range is decrypted and sealed as the new part.
      const sealer = segmentSealer(destEnc, upload, partNumber);
      if (!sealer) throw S3Errors.internal('a part stored in a backend must be encrypted');
      const data = openObjectRange(ctx.store, source.record, sourceEnc, range.start, range.end);
      const { etag } = await ctx.store.streams.putPartStream(
        upload,
        partNumber,
        data,
        range.end - range.start,
        sealer,
      );
      for (const [k, v] of Object.entries(responseHeaders(destEnc))) ctx.res.setHeader(k, v);
      sendXml(ctx.res, 200, 'CopyPartResult', { ETag: etag, LastModified: isoDate(Date.now()) });
      return;
    }
    const { segment, md5 } = await copyData(
      ctx,
      source.record,
      sourceEnc,
      destEnc,
      upload,
      partNumber,
      range,
    );
    const { etag, part } = partRecord(destEnc, upload, partNumber, segment, md5, {});
    await ctx.store.putPart(upload, part);
    for (const [k, v] of Object.entries(responseHeaders(destEnc))) ctx.res.setHeader(k, v);
    sendXml(ctx.res, 200, 'CopyPartResult', { ETag: etag, LastModified: isoDate(part.lastModified) });
  } finally {
    disposeEncryption(sourceEnc);
    disposeEncryption(destEnc);
  }
}

// Whether two requests' encryptions derive an object's keys from the same root: the same customer key, or
// the same master key of the keyring.
function sameRootKey(a: RequestEncryption, b: RequestEncryption): boolean {
  const p = a.params;
  const q = b.params;
  if (p.kind === 'sse-c' && q.kind === 'sse-c') return constantTimeEqual(p.key, q.key);
  if (p.kind === 'sse-s3' && q.kind === 'sse-s3') return p.keyId === q.keyId;
  return false;
}

// CopyObject into a store of streams (an S3 backend). An object's keys derive from its bucket, key and version
// id (sse/object-crypto.ts), so a copy under another name is decrypted and sealed anew as it flows through
// the gateway. A copy onto itself under the same root key (a metadata change, as `aws s3 cp --metadata`,
// rclone and s3cmd make) keeps its version id and stream: only its sealed metadata is new, and the backend
// copies the bytes itself. A multipart object is always copied through: its copy is one stream.
async function copyObjectStream(
  ctx: CopyContext,
  streams: ObjectStreams,
  copy: {
    source: ObjectRecord;
    sourceEnc: RequestEncryption;
    destEnc: RequestEncryption;
    key: string;
    meta: ObjectMetadata;
    tags: Record<string, string> | undefined;
  },
): Promise<ObjectRecord> {
  const { source, sourceEnc, destEnc, key, meta, tags } = copy;
  const bucketId = ctx.bucket.id;
  const only = source.segments.length === 1 ? source.segments[0] : undefined;
  // In a versioned bucket the copy is a new version, with a version id (and so tags) of its own.
  const inPlace =
    !ctx.bucket.versioning &&
    source.bucketId === bucketId &&
    source.key === key &&
    only?.partNumber === undefined &&
    only?.cryptoHeader !== undefined &&
    sameRootKey(sourceEnc, destEnc);
  const versionId = inPlace ? source.versionId : newVersionId();
  const identity = { bucketId, key, versionId };
  const sealer = inPlace ? undefined : segmentSealer(destEnc, identity, 0);
  const header = inPlace ? only?.cryptoHeader : sealer?.header;
  if (!header) throw S3Errors.internal('an object stored in a backend must be encrypted');
  const object: StreamedObject = {
    v: RECORD_VERSION,
    ...identity,
    // In place, the object keeps its key (an SSE-S3 object's own key, wrapped as it was): sealed with the
    // source's, which is the destination's root key.
    // The copy's plaintext is the source's: so are its checksums, whatever the metadata directive.
    ...sealMetadata(inPlace ? sourceEnc : destEnc, {
      ...identity,
      headers: meta.headers,
      userMeta: meta.userMeta,
      checksums: sourceEnc.metadata?.checksums ?? {},
    }),
    ...(tags ? { tags } : {}),
    cryptoHeader: header,
  };
  if (!sealer) return streams.replaceMetadataStream(object, source);
  const data = openObjectRange(ctx.store, source, sourceEnc, 0, source.size);
  return streams.putObjectStream(object, data, source.size, sealer);
}
