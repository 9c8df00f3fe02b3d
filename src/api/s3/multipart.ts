// api/s3/multipart: CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts.
// Each part is stored (and encrypted) as its own segment; completing an upload stitches the chosen parts'
// segments into the object without copying a byte.
import { tagsFromRequest } from './tagging.js';
import { lockFromHeaders } from './object-lock.js';
import {
  RECORD_VERSION,
  s3VersionId,
  type ObjectRecord,
  type PartRecord,
  type Segment,
  type UploadRecord,
} from '../../model/types.js';
import { newVersionId } from '../../model/model.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type BucketContext, type S3Context } from './context.js';
import {
  customerMultipartEncryption,
  disposeEncryption,
  encryptionForRead,
  encryptionForUpload,
  encryptionForWrite,
  etagIsMd5,
  openPart,
  responseHeaders,
  sealMetadata,
  sealObjectRecord,
  sealPart,
  segmentSealer,
  storedEncryptionOf,
  type RequestEncryption,
} from './encryption.js';
import { multipartEtag, partEtagMatches, type StoredEncryption } from '../../sse/object-crypto.js';
import { parseIntParam, storedHeaders, userMetadata } from './headers.js';
import { checkDeclaredSize, declaredSize, etagOf, setChecksumHeaders, storeSegment } from './put.js';
import { checkObjectKey } from './router.js';
import { isoDate, sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml } from './xml.js';
import { ownerOf } from './bucket.js';
import { combineChecksums } from './checksum-composite.js';
import { openMetadata } from './metadata.js';

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
  const lock = lockFromHeaders(ctx, bucket);
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
      ...lock,
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

// The record of part `partNumber`, and the ETag its client is given. Nothing of an encrypted part's plaintext
// (MD5, checksums) is kept in the clear: see sealPart.
export function partRecord(
  enc: RequestEncryption,
  upload: UploadRecord,
  partNumber: number,
  segment: Segment,
  md5: Buffer,
  checksums: Record<string, string>,
): { etag: string; part: PartRecord } {
  const placed = { ...segment, partNumber };
  const base = { v: RECORD_VERSION, partNumber, lastModified: Date.now() };
  if (enc.kind === 'plaintext') {
    const etag = etagOf(enc, md5);
    return { etag, part: { ...base, etag, segment: { ...placed, etag }, checksums } };
  }
  const { etag, storedEtag, sealed } = sealPart(enc, upload, placed, md5, checksums);
  return {
    etag,
    part: { ...base, etag: storedEtag, segment: placed, checksums: {}, ...(sealed ? { sealed } : {}) },
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
    if (ctx.store.streams) {
      // A store of streams (an S3 backend) takes the part as it comes and names its ETag (docs/gateway.md).
      const sealer = segmentSealer(enc, upload, partNumber);
      if (!sealer) throw S3Errors.internal('a part stored in a backend must be encrypted');
      const body = ctx.body({ md5: false });
      const { etag } = await ctx.store.streams.putPartStream(
        upload,
        partNumber,
        body.stream,
        declaredSize(ctx),
        sealer,
      );
      ctx.res.setHeader('ETag', etag);
      setChecksumHeaders(ctx, body.digests().checksums);
      for (const [k, v] of Object.entries(responseHeaders(enc))) ctx.res.setHeader(k, v);
      sendEmpty(ctx.res, 200);
      return;
    }
    const body = ctx.body({ md5: etagIsMd5(enc) });
    const segment = await storeSegment(ctx.store, body.stream, enc, upload, partNumber);
    const { md5, checksums } = body.digests();
    // An SSE-C part keeps no checksum of its plaintext; an SSE-S3 part keeps them sealed (partRecord).
    const { etag, part } = partRecord(
      enc,
      upload,
      partNumber,
      segment,
      md5,
      enc.kind === 'sse-c' ? {} : checksums,
    );
    await ctx.store.putPart(upload, part);
    ctx.res.setHeader('ETag', etag);
    setChecksumHeaders(ctx, checksums);
    for (const [k, v] of Object.entries(responseHeaders(enc))) ctx.res.setHeader(k, v);
    sendEmpty(ctx.res, 200);
  } finally {
    disposeEncryption(enc);
  }
}

// Stored part `part` as the client completing the upload names it: its ETag and checksums, or undefined when
// `etag` is not its ETag. An SSE-S3 part is opened with the master key (`enc`); an SSE-C part's record keeps only
// a hash of its ETag, which the client's is checked against.
function partAsNamed(
  kind: StoredEncryption['kind'],
  enc: RequestEncryption | undefined,
  upload: UploadRecord,
  part: PartRecord,
  etag: string,
): { etag: string; checksums: Record<string, string> } | undefined {
  if (kind === 'sse-c') return partEtagMatches(etag, part.etag) ? { etag, checksums: {} } : undefined;
  const known = enc ? openPart(enc, upload, part) : { etag: part.etag, checksums: part.checksums };
  return known.etag.replace(/"/g, '') === etag ? known : undefined;
}

interface RequestedPart {
  partNumber: number;
  etag: string;
  checksums: Record<string, unknown>;
}

// The part list of a CompleteMultipartUpload body: at least one part, in ascending order of part number.
async function requestedParts(ctx: BucketContext): Promise<RequestedPart[]> {
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
  }
  return requested;
}

function invalidPart(r: RequestedPart): S3Error {
  return new S3Error(
    'InvalidPart',
    400,
    "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
    { PartNumber: String(r.partNumber), ETag: r.etag },
  );
}

const isNoSuchUpload = (e: unknown): boolean => e instanceof S3Error && e.code === 'NoSuchUpload';

function sendCompleted(
  ctx: BucketContext,
  record: ObjectRecord,
  checksums: Record<string, string>,
  versionId: string | undefined,
): void {
  setChecksumHeaders(ctx, checksums);
  if (versionId !== undefined) ctx.res.setHeader('x-amz-version-id', versionId);
  sendXml(ctx.res, 200, 'CompleteMultipartUploadResult', {
    Location: `/${ctx.bucket.name}/${encodeURIComponent(record.key)}`,
    Bucket: ctx.bucket.name,
    Key: record.key,
    ETag: record.etag,
    ...Object.fromEntries(Object.entries(checksums).map(([alg, v]) => [`Checksum${alg}`, v])),
  });
}

// A Complete of an upload that is no longer in progress: if it completed into the key's current object (the
// client lost the first answer and retries), the same answer again, as S3 gives; a part list other than the
// one that completed is InvalidPart. Otherwise (never started, aborted, or its object since overwritten or
// deleted) NoSuchUpload.
async function repeatCompletion(
  ctx: BucketContext,
  uploadId: string,
  parts: RequestedPart[] | (() => Promise<RequestedPart[]>),
): Promise<void> {
  const record = await ctx.store.getObject(ctx.bucket.id, requireKey(ctx));
  if (!record || record.uploadId !== uploadId) throw S3Errors.noSuchUpload(uploadId);
  const requested = Array.isArray(parts) ? parts : await parts();
  // The object's segments are its parts, in order, and its ETag is S3's MD5 of the parts' ETags however it is
  // encrypted: the list is checked without opening anything.
  const numbers = record.segments.map((s) => s.partNumber);
  const differing = requested.find((r, i) => r.partNumber !== numbers[i]) ?? requested[numbers.length];
  if (differing) throw invalidPart(differing);
  if (ctx.store.streams) {
    // A store of streams names its parts' ETags itself (docs/gateway.md) and keeps them with the object.
    const bare = (etag: string | undefined) => etag?.replace(/"/g, '');
    const wrong = requested.find((r, i) => bare(r.etag) !== bare(record.segments[i]?.etag));
    if (wrong || requested.length !== numbers.length) throw invalidPart(wrong ?? requested[0]!);
    return sendCompleted(ctx, record, {}, ctx.bucket.versioning ? s3VersionId(record) : undefined);
  }
  if (requested.length !== numbers.length || multipartEtag(requested.map((r) => r.etag)) !== record.etag) {
    throw invalidPart(requested[requested.length - 1]!);
  }
  const kind = storedEncryptionOf(record).kind;
  const versionId = ctx.bucket.versioning ? s3VersionId(record) : undefined;
  if (kind === 'plaintext') return sendCompleted(ctx, record, record.checksums, versionId);
  if (kind === 'sse-c') return sendCompleted(ctx, record, {}, versionId);
  const enc = encryptionForRead(ctx, record);
  try {
    sendCompleted(ctx, record, openMetadata(record, enc).checksums ?? {}, versionId);
  } finally {
    disposeEncryption(enc);
  }
}

// An encrypted upload's parts are opened with the node's master key (SSE-S3); an SSE-C upload is completed
// without its key, as S3 allows and most clients do, from the ETags the client kept (see sse/object-crypto.ts).
export async function completeMultipartUpload(ctx: BucketContext): Promise<void> {
  let upload: UploadRecord;
  try {
    ({ upload } = await uploadFor(ctx));
  } catch (e) {
    const uploadId = ctx.query.get('uploadId');
    if (!isNoSuchUpload(e) || !uploadId) throw e;
    return repeatCompletion(ctx, uploadId, () => requestedParts(ctx));
  }
  const requested = await requestedParts(ctx);
  if (ctx.store.streams) {
    const record = await ctx.store.streams.completeUploadStream(upload, requested);
    return sendCompleted(ctx, record, {}, ctx.bucket.versioning ? s3VersionId(record) : undefined);
  }
  const kind = storedEncryptionOf(upload).kind;
  const enc = kind === 'sse-s3' ? encryptionForUpload(ctx, upload) : undefined;
  try {
    const stored = new Map((await ctx.store.listParts(upload.uploadId)).map((p) => [p.partNumber, p]));
    const chosen: { part: PartRecord; etag: string; checksums: Record<string, string> }[] = [];
    for (const r of requested) {
      const part = stored.get(r.partNumber);
      const known = part && partAsNamed(kind, enc, upload, part, r.etag);
      if (!part || !known) throw invalidPart(r);
      chosen.push({ part, ...known });
    }
    chosen.forEach(({ part }, i) => {
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
    const size = chosen.reduce((n, p) => n + p.part.segment.plainSize, 0);
    const checksums = upload.checksumAlgorithm
      ? combineChecksums(
          upload.checksumAlgorithm,
          chosen.map((p) => p.checksums),
        )
      : {};
    const segments = chosen.map((p) => p.part.segment);
    let record: ObjectRecord = {
      v: RECORD_VERSION,
      bucketId: upload.bucketId,
      key: upload.key,
      versionId: upload.versionId,
      size,
      etag: multipartEtag(chosen.map((p) => p.etag)),
      lastModified: Date.now(),
      headers: upload.headers,
      userMeta: upload.userMeta,
      sealedMeta: upload.sealedMeta,
      encryption: upload.encryption,
      checksums,
      segments,
      ...(upload.tags ? { tags: upload.tags } : {}),
      ...(upload.retention ? { retention: upload.retention } : {}),
      ...(upload.legalHold ? { legalHold: upload.legalHold } : {}),
    };
    if (kind === 'sse-c') {
      const bound = customerMultipartEncryption(
        upload,
        chosen.map((p) => p.etag),
        size,
      );
      record = { ...record, etag: bound.etag, encryption: bound.encryption, checksums: {} };
    } else if (enc) {
      record = sealObjectRecord(enc, record, checksums);
    }
    let versionId: string | undefined;
    try {
      versionId = await ctx.store.completeUpload(upload, record);
    } catch (e) {
      // Completed (or aborted) by another request since this one looked: answered as a repeat, or NoSuchUpload.
      if (!isNoSuchUpload(e)) throw e;
      return await repeatCompletion(ctx, upload.uploadId, requested);
    }
    sendCompleted(ctx, record, checksums, versionId);
  } finally {
    disposeEncryption(enc);
  }
}

export async function abortMultipartUpload(ctx: BucketContext): Promise<void> {
  const { upload } = await uploadFor(ctx);
  await ctx.store.abortUpload(upload);
  sendEmpty(ctx.res, 204);
}

// The parts of an encrypted upload are listed with its key: the node's master key for SSE-S3, and for SSE-C
// the customer's, which the request must bring (an SSE-C part's ETag is made from it).
export async function listParts(ctx: BucketContext): Promise<void> {
  const { upload } = await uploadFor(ctx);
  const bucket = ctx.bucket;
  // A store of streams names its parts' ETags itself: they need no key to list.
  const enc =
    storedEncryptionOf(upload).kind === 'plaintext' || ctx.store.streams
      ? undefined
      : encryptionForUpload(ctx, upload);
  try {
    listPartsWith(ctx, upload, bucket.name, enc, await ctx.store.listParts(upload.uploadId));
  } finally {
    disposeEncryption(enc);
  }
}

function listPartsWith(
  ctx: S3Context,
  upload: UploadRecord,
  bucketName: string,
  enc: RequestEncryption | undefined,
  parts: PartRecord[],
): void {
  const marker = parseIntParam(ctx.query.get('part-number-marker'), 'part-number-marker', 0, MAX_PARTS) ?? 0;
  const maxParts = Math.min(
    parseIntParam(ctx.query.get('max-parts'), 'max-parts', 0, 2 ** 31 - 1) ?? 1000,
    1000,
  );
  const after = parts.filter((p) => p.partNumber > marker);
  const page = after.slice(0, maxParts);
  const truncated = after.length > page.length;
  sendXml(ctx.res, 200, 'ListPartsResult', {
    Bucket: bucketName,
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
    Part: page.map((p) => {
      const { etag, checksums } = enc ? openPart(enc, upload, p) : p;
      return {
        PartNumber: p.partNumber,
        LastModified: isoDate(p.lastModified),
        ETag: etag,
        Size: p.segment.plainSize,
        ...Object.fromEntries(Object.entries(checksums).map(([alg, v]) => [`Checksum${alg}`, v])),
      };
    }),
  });
}
