// api/s3/get: GetObject and HeadObject — conditions, ranges, parts, response overrides, streaming with
// every block verified (and decrypted when the object is encrypted).
import { pipeline, type Readable } from 'node:stream';
import { s3VersionId, type ObjectRecord } from '../../model/types.js';
import { lockHeaders } from './object-lock.js';
import { setVersionHeader, versionIdParam } from './versioning.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type BucketContext, type S3Context } from './context.js';
import {
  disposeEncryption,
  encryptionForRead,
  openObjectRange,
  readObjectRange,
  responseHeaders,
} from './encryption.js';
import { openMetadata } from './metadata.js';
import {
  conditionsFrom,
  evaluateConditions,
  httpDateOr,
  parseIntParam,
  parseRange,
  type ByteRange,
} from './headers.js';
import { httpDate, sendEmpty } from './response.js';

/**
 * Bodies up to this size are read whole, then answered in one write with the headers: for a small object the
 * streams, pipeline and writes of a streamed answer cost more than the object itself. Errors reading it are
 * then proper error answers, never a cut connection.
 */
const SMALL_BODY = 64 * 1024;

const RESPONSE_OVERRIDES: Record<string, string> = {
  'response-content-type': 'Content-Type',
  'response-content-language': 'Content-Language',
  'response-expires': 'Expires',
  'response-cache-control': 'Cache-Control',
  'response-content-disposition': 'Content-Disposition',
  'response-content-encoding': 'Content-Encoding',
};

export async function requireObject(ctx: S3Context, bucketId: string, key: string): Promise<ObjectRecord> {
  const record = await ctx.store.getObject(bucketId, key);
  if (!record) throw S3Errors.noSuchKey(key);
  return record;
}

// The plaintext range of the part `partNumber` (1-based) of an object.
function partRange(record: ObjectRecord, partNumber: number): ByteRange {
  if (partNumber > record.segments.length) {
    // S3 answers a part number past the last part as an unsatisfiable range (416), like a Range past the end.
    throw new S3Error('InvalidPartNumber', 416, 'The requested partnumber is not satisfiable', {
      PartNumberRequested: String(partNumber),
      ActualPartCount: String(record.segments.length),
    });
  }
  let start = 0;
  for (let i = 0; i < partNumber - 1; i++) start += record.segments[i]!.plainSize;
  return { start, end: start + record.segments[partNumber - 1]!.plainSize };
}

// Waits until `stream` has data (or ended), so that a failure reading the first block becomes a proper error
// response instead of a cut connection.
function firstData(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      stream.off('readable', done);
      stream.off('end', done);
      stream.off('error', fail);
      resolve();
    };
    const fail = (err: Error) => {
      stream.off('readable', done);
      stream.off('end', done);
      reject(err);
    };
    stream.once('readable', done);
    stream.once('end', done);
    stream.once('error', fail);
  });
}

/**
 * The version a GET or HEAD names (the current one without versionId). A delete marker answers as S3 does: a
 * key whose current version is one is not found; a marker named by its id is not a thing to GET.
 */
async function requestedVersion(ctx: BucketContext, key: string, toRead: boolean): Promise<ObjectRecord> {
  const versionId = versionIdParam(ctx);
  const streams = ctx.store.streams;
  const record =
    toRead && streams
      ? await streams.readVersion(ctx.bucket.id, key, versionId)
      : await ctx.store.getVersion(ctx.bucket.id, key, versionId);
  if (!record)
    throw versionId === undefined ? S3Errors.noSuchKey(key) : S3Errors.noSuchVersion(key, versionId);
  if (record.deleteMarker) {
    ctx.res.setHeader('x-amz-delete-marker', 'true');
    ctx.res.setHeader('x-amz-version-id', s3VersionId(record));
    if (versionId === undefined) throw S3Errors.noSuchKey(key);
    throw new S3Error('MethodNotAllowed', 405, 'The specified method is not allowed against this resource.');
  }
  return record;
}

export async function getObject(ctx: BucketContext, headOnly: boolean): Promise<void> {
  const bucket = ctx.bucket;
  const key = requireKey(ctx);
  const record = await requestedVersion(ctx, key, !headOnly);
  const status = evaluateConditions(conditionsFrom(ctx.req.headers), record.etag, record.lastModified, true);
  if (status === 304) {
    ctx.res.setHeader('ETag', record.etag);
    ctx.res.setHeader('Last-Modified', httpDate(record.lastModified));
    sendEmpty(ctx.res, 304);
    return;
  }
  if (status === 412)
    throw new S3Error(
      'PreconditionFailed',
      412,
      'At least one of the pre-conditions you specified did not hold',
      { Condition: 'If-Match' },
    );

  const enc = encryptionForRead(ctx, record);
  try {
    const { headers, userMeta, checksums } = openMetadata(record, enc);
    const partNumber = parseIntParam(ctx.query.get('partNumber'), 'partNumber', 1, 10000);
    let range: ByteRange | undefined;
    if (partNumber !== undefined) {
      if (header(ctx, 'range'))
        throw S3Errors.invalidRequest('Cannot specify both Range header and partNumber query parameter');
      range = partRange(record, partNumber);
    } else {
      range = parseRange(header(ctx, 'range'), record.size);
    }
    const res = ctx.res;
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Last-Modified', httpDate(record.lastModified));
    res.setHeader('ETag', record.etag);
    res.setHeader('Content-Type', headers['content-type'] ?? 'binary/octet-stream');
    for (const [name, value] of Object.entries(headers))
      if (name !== 'content-type') res.setHeader(name, value);
    for (const [name, value] of Object.entries(userMeta)) res.setHeader(`x-amz-meta-${name}`, value);
    for (const [name, value] of Object.entries(responseHeaders(enc))) res.setHeader(name, value);
    for (const [name, value] of Object.entries(lockHeaders(record))) res.setHeader(name, value);
    setVersionHeader(ctx, bucket, record);
    const tagCount = Object.keys(record.tags ?? {}).length;
    if (tagCount > 0) res.setHeader('x-amz-tagging-count', tagCount);
    if (record.segments.length > 1 || partNumber !== undefined)
      res.setHeader('x-amz-mp-parts-count', record.segments.length);
    if (header(ctx, 'x-amz-checksum-mode')?.toUpperCase() === 'ENABLED' && range === undefined) {
      for (const [alg, value] of Object.entries(checksums ?? {}))
        res.setHeader(`x-amz-checksum-${alg.toLowerCase()}`, value);
    }
    for (const [param, name] of Object.entries(RESPONSE_OVERRIDES)) {
      const v = ctx.query.get(param);
      if (v !== null) res.setHeader(name, param === 'response-expires' ? httpDateOr(v) : v);
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? record.size;
    res.setHeader('Content-Length', end - start);
    if (range) res.setHeader('Content-Range', `bytes ${start}-${end - 1}/${record.size}`);
    res.statusCode = range ? 206 : 200;
    if (headOnly) {
      res.end();
      return;
    }
    if (end - start <= SMALL_BODY) {
      res.end(await readObjectRange(ctx.store, record, enc, start, end));
      return;
    }
    const body = openObjectRange(ctx.store, record, enc, start, end);
    await firstData(body);
    await new Promise<void>((resolve) => {
      pipeline(body, res, (err) => {
        if (err && !res.destroyed) res.destroy(err);
        resolve();
      });
    });
  } finally {
    disposeEncryption(enc);
  }
}
