// api/s3/multipart: CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts.
// Each part is stored (and encrypted) as its own segment; completing an upload stitches the chosen parts'
// segments into the object without copying a byte.
import { tagsFromRequest } from './tagging.js';
import { createHash } from 'node:crypto';
import {
  RECORD_VERSION,
  type ObjectRecord,
  type PartRecord,
  type Segment,
  type UploadRecord,
} from '../../model/types.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type BucketContext, type S3Context } from './context.js';
import {
  disposeEncryption,
  encryptionForUpload,
  encryptionForWrite,
  etagIsMd5,
  responseHeaders,
  sealMetadata,
} from './encryption.js';
import { parseIntParam, storedHeaders, userMetadata } from './headers.js';
import { checkDeclaredSize, etagOf, newVersionId, setChecksumHeaders, storeSegment } from './put.js';
import { checkObjectKey } from './router.js';
import { isoDate, sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml } from './xml.js';
import { ownerOf } from './bucket.js';
import { combineChecksums } from './checksum-composite.js';

export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PART_SIZE = 5 * 1024 ** 3;
export const MAX_PARTS = 10000;

export async function uploadFor(ctx: BucketContext): Promise<{ upload: UploadRecord; bucketId: string }> {
  const bucket = ctx.bucket;
  const uploadId = ctx.query.get('uploadId');
  if (!uploadId) throw S3Errors.noSuchUpload('');
  return { upload: await ctx.store.getUpload(bucket.id, requireKey(ctx), uploadId), bucketId: bucket.id };
}

export async function createMultipartUpload(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const key = requireKey(ctx);
  checkObjectKey(key);
  const enc = encryptionForWrite(ctx, bucket);
  try {
    const checksumAlgorithm = header(ctx, 'x-amz-checksum-algorithm')?.toUpperCase();
    if (checksumAlgorithm && !['CRC32', 'CRC32C', 'SHA1', 'SHA256'].includes(checksumAlgorithm)) {
      throw S3Errors.invalidRequest(`Checksum algorithm ${checksumAlgorithm} is not supported`);
    }
    const versionId = newVersionId();
    const { checksums: _none, ...sealed } = sealMetadata(enc, {
      bucketId: bucket.id,
      key,
      versionId,
      headers: storedHeaders(ctx.req.headers),
      userMeta: userMetadata(ctx.req.headers),
    });
    const tags = tagsFromRequest(ctx);
    const upload = await ctx.store.createUpload({
      bucketId: bucket.id,
      key,
      versionId,
      checksumAlgorithm,
      ...sealed,
      ...(tags ? { tags } : {}),
    });
    for (const [k, v] of Object.entries(responseHeaders(enc))) ctx.res.setHeader(k, v);
    if (checksumAlgorithm) ctx.res.setHeader('x-amz-checksum-algorithm', checksumAlgorithm);
    sendXml(ctx.res, 200, 'InitiateMultipartUploadResult', {
      Bucket: bucket.name,
      Key: key,
      UploadId: upload.uploadId,
    });
  } finally {
    disposeEncryption(enc);
  }
}

export function partRecord(
  partNumber: number,
  etag: string,
  segment: Segment,
  checksums: Record<string, string>,
): PartRecord {
  return {
    v: RECORD_VERSION,
    partNumber,
    etag,
    lastModified: Date.now(),
    segment: { ...segment, partNumber, etag },
    checksums,
  };
}

export function partNumberOf(ctx: S3Context): number {
  const n = parseIntParam(ctx.query.get('partNumber'), 'partNumber', 1, MAX_PARTS);
  if (n === undefined)
    throw S3Errors.invalidArgument('Part number must be an integer between 1 and 10000, inclusive', {
      ArgumentName: 'partNumber',
    });
  return n;
}

export async function uploadPart(ctx: BucketContext): Promise<void> {
  const { upload } = await uploadFor(ctx);
  const partNumber = partNumberOf(ctx);
  checkDeclaredSize(ctx, MAX_PART_SIZE);
  const enc = encryptionForUpload(ctx, upload);
  try {
    const body = ctx.body({ md5: etagIsMd5(enc) });
    const segment = await storeSegment(ctx.store, body.stream, enc, upload, partNumber);
    const { md5, checksums } = body.digests();
    // An SSE-C part keeps no digest of its plaintext in the clear (see etagIsMd5).
    const part = partRecord(partNumber, etagOf(enc, md5), segment, etagIsMd5(enc) ? checksums : {});
    const etag = part.etag;
    await ctx.store.putPart(upload, part);
    ctx.res.setHeader('ETag', etag);
    setChecksumHeaders(ctx, checksums);
    for (const [k, v] of Object.entries(responseHeaders(enc))) ctx.res.setHeader(k, v);
    sendEmpty(ctx.res, 200);
  } finally {
    disposeEncryption(enc);
  }
}

export async function completeMultipartUpload(ctx: BucketContext): Promise<void> {
  const { upload } = await uploadFor(ctx);
  const bucket = ctx.bucket;
  const doc = parseXml(
    (await readSmallBody(ctx, 4 * 1024 * 1024)).toString('utf8'),
    'CompleteMultipartUpload',
  );
  const requested = asList(doc.Part).map((p) => {
    if (typeof p !== 'object' || p === null) throw S3Errors.malformedXml();
    const rec = p as Record<string, unknown>;
    const n = asText(rec.PartNumber);
    const etag = asText(rec.ETag);
    if (!n || !/^\d+$/.test(n) || etag === undefined) throw S3Errors.malformedXml();
    return { partNumber: Number(n), etag: etag.replace(/"/g, ''), checksums: rec };
  });
  if (requested.length === 0) {
    throw S3Errors.invalidRequest('You must specify at least one part');
  }
  const stored = new Map((await ctx.store.listParts(upload.uploadId)).map((p) => [p.partNumber, p]));
  const chosen: PartRecord[] = [];
  let previous = 0;
  for (const r of requested) {
    if (r.partNumber <= previous) {
      throw new S3Error(
        'InvalidPartOrder',
        400,
        'The list of parts was not in ascending order. The parts list must be specified in order by part number.',
      );
    }
    previous = r.partNumber;
    const part = stored.get(r.partNumber);
    if (!part || part.etag.replace(/"/g, '') !== r.etag) {
      throw new S3Error(
        'InvalidPart',
        400,
        "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
        { PartNumber: String(r.partNumber), ETag: r.etag },
      );
    }
    chosen.push(part);
  }
  chosen.forEach((part, i) => {
    if (i < chosen.length - 1 && part.segment.plainSize < MIN_PART_SIZE) {
      throw new S3Error(
        'EntityTooSmall',
        400,
        'Your proposed upload is smaller than the minimum allowed object size.',
        {
          PartNumber: String(part.partNumber),
          ProposedSize: String(part.segment.plainSize),
          MinSizeAllowed: String(MIN_PART_SIZE),
        },
      );
    }
  });
  const md5s = Buffer.concat(chosen.map((p) => Buffer.from(p.etag.replace(/"/g, '').slice(0, 32), 'hex')));
  const etag = `"${createHash('md5').update(md5s).digest('hex')}-${chosen.length}"`;
  const checksums = upload.checksumAlgorithm
    ? combineChecksums(
        upload.checksumAlgorithm,
        chosen.map((p) => p.checksums),
      )
    : {};
  const record: ObjectRecord = {
    v: RECORD_VERSION,
    bucketId: upload.bucketId,
    key: upload.key,
    versionId: upload.versionId,
    size: chosen.reduce((n, p) => n + p.segment.plainSize, 0),
    etag,
    lastModified: Date.now(),
    headers: upload.headers,
    userMeta: upload.userMeta,
    sealedMeta: upload.sealedMeta,
    encryption: upload.encryption,
    checksums,
    segments: chosen.map((p) => p.segment),
    ...(upload.tags ? { tags: upload.tags } : {}),
  };
  await ctx.store.completeUpload(upload, record);
  setChecksumHeaders(ctx, checksums);
  sendXml(ctx.res, 200, 'CompleteMultipartUploadResult', {
    Location: `/${bucket.name}/${encodeURIComponent(upload.key)}`,
    Bucket: bucket.name,
    Key: upload.key,
    ETag: etag,
    ...Object.fromEntries(Object.entries(checksums).map(([alg, v]) => [`Checksum${alg}`, v])),
  });
}

export async function abortMultipartUpload(ctx: BucketContext): Promise<void> {
  const { upload } = await uploadFor(ctx);
  await ctx.store.abortUpload(upload);
  sendEmpty(ctx.res, 204);
}

export async function listParts(ctx: BucketContext): Promise<void> {
  const { upload } = await uploadFor(ctx);
  const bucket = ctx.bucket;
  const marker = parseIntParam(ctx.query.get('part-number-marker'), 'part-number-marker', 0, MAX_PARTS) ?? 0;
  const maxParts = Math.min(
    parseIntParam(ctx.query.get('max-parts'), 'max-parts', 0, 2 ** 31 - 1) ?? 1000,
    1000,
  );
  const after = (await ctx.store.listParts(upload.uploadId)).filter((p) => p.partNumber > marker);
  const page = after.slice(0, maxParts);
  const truncated = after.length > page.length;
  sendXml(ctx.res, 200, 'ListPartsResult', {
    Bucket: bucket.name,
    Key: upload.key,
    UploadId: upload.uploadId,
    Initiator: ownerOf(ctx),
    Owner: ownerOf(ctx),
    StorageClass: 'STANDARD',
    PartNumberMarker: marker,
    NextPartNumberMarker: page.length ? page[page.length - 1]!.partNumber : undefined,
    MaxParts: maxParts,
    IsTruncated: truncated,
    ChecksumAlgorithm: upload.checksumAlgorithm,
    Part: page.map((p) => ({
      PartNumber: p.partNumber,
      LastModified: isoDate(p.lastModified),
      ETag: p.etag,
      Size: p.segment.plainSize,
      ...Object.fromEntries(Object.entries(p.checksums).map(([alg, v]) => [`Checksum${alg}`, v])),
    })),
  });
}
