// api/s3/encryption: where an S3 request meets server-side encryption. The encryption decision is read from
// the request once (one RequestEncryption value that every handler asks), segments are encrypted on the way
// in, and only the chunks a range touches are read and decrypted on the way out. Plaintext objects pass
// through untouched. The customer key lives only in this value and is zeroed by disposeEncryption.
import { Readable } from 'node:stream';
import { plaintextRangeToCiphertextRange } from '../../crypto/aead-stream.js';
import type { ObjectStore, SegmentIo } from '../../model/store.js';
import type { BucketRecord, ObjectRecord, PartRecord, Segment, UploadRecord } from '../../model/types.js';
import type { SseS3Keys } from '../../sse/sse-s3-keys.js';
import {
  COPY_SOURCE_SSE_C_PREFIX,
  SSE_C_PREFIX,
  dispose as disposeParams,
  parseSseCHeaders,
  requestedServerSideEncryption,
  requireSecureTransport,
  responseHeaders as paramsResponseHeaders,
  type EncryptionParams,
} from '../../sse/params.js';
import {
  ObjectCrypto,
  checkParamsFitObject,
  decodeStoredEncryption,
  multipartEtag,
  partEtagHash,
  partEtagMatches,
  partsTag,
  segmentsDigest,
  storedEncryptionFor,
  type ObjectSealer,
  type StoredEncryption,
} from '../../sse/object-crypto.js';
import type { S3Context } from './context.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import type { ObjectMetadata } from './metadata.js';

export interface ObjectIdentityRef {
  bucketId: string;
  key: string;
  versionId: string;
}

export interface RequestEncryption {
  readonly kind: EncryptionParams['kind'];
  readonly params: EncryptionParams;
  // Keys of the object version this request writes or reads, derived on first use.
  crypto?: ObjectCrypto;
  // Metadata opened with the request's key (reads of encrypted objects and uploads).
  metadata?: ObjectMetadata;
}

function fromParams(params: EncryptionParams): RequestEncryption {
  return { kind: params.kind, params };
}

export interface Transport {
  secure: boolean;
  fromLoopback: boolean;
  // A node with a [backend] encrypts every object it stores there (docs/gateway.md).
  config: { s3Api: { allowSseCOverHttp: boolean }; backend?: unknown };
  // The node's SSE-S3 master keys (absent where SSE-S3 is not served at all).
  sseS3?: SseS3Keys;
  store?: Pick<ObjectStore, 'streams'>;
}

function sseS3Keys(transport: Transport): SseS3Keys {
  if (!transport.sseS3) throw S3Errors.notImplemented('SSE-S3');
  return transport.sseS3;
}

// A node without a keyring refuses SSE-S3 as not set up (501), except in front of a backend, where every
// object needs it: there it is a state an operator ends, said as one (503) with what to run.
function sseS3ForWrite(transport: Transport): EncryptionParams {
  const keys = sseS3Keys(transport);
  if (transport.config.backend !== undefined && !keys.configured)
    throw new S3Error(
      'ServiceUnavailable',
      503,
      'This gateway stores every object encrypted and has no SSE-S3 keyring yet: an operator must run `coffre sse-s3 init`. Please retry later.',
    );
  return keys.forWrite();
}

function paramsFrom(
  values: Record<string, string | string[] | undefined>,
  transport: Transport,
  prefix: typeof SSE_C_PREFIX | typeof COPY_SOURCE_SSE_C_PREFIX,
): EncryptionParams {
  const params = parseSseCHeaders(values, prefix);
  try {
    requireSecureTransport(params, {
      encrypted: transport.secure,
      loopback: transport.fromLoopback,
      allowInsecure: transport.config.s3Api.allowSseCOverHttp,
    });
  } catch (err) {
    disposeParams(params);
    throw err;
  }
  return params;
}

function requestParams(
  ctx: S3Context,
  prefix: typeof SSE_C_PREFIX | typeof COPY_SOURCE_SSE_C_PREFIX,
): EncryptionParams {
  return paramsFrom(ctx.req.headers, ctx, prefix);
}

// The encryption of a new object: SSE-C when the request brings a key, SSE-S3 when it asks for it (or the
// bucket does by default and the request asks for nothing else), else none. PostObject carries the same
// parameters as form fields. SSE-KMS is refused (501): storing such an object in clear would not be honest.
function writeParams(
  values: Record<string, string | string[] | undefined>,
  transport: Transport,
  bucket: Pick<BucketRecord, 'defaultEncryption'>,
): RequestEncryption {
  const params = paramsFrom(values, transport, SSE_C_PREFIX);
  try {
    const asked = requestedServerSideEncryption(values, params);
    const byDefault =
      params.kind === 'plaintext' &&
      (bucket.defaultEncryption === 'AES256' || transport.config.backend !== undefined);
    if (asked === 'AES256' || byDefault) return fromParams(sseS3ForWrite(transport));
  } catch (err) {
    disposeParams(params);
    throw err;
  }
  return fromParams(params);
}

export function encryptionForForm(
  fields: Record<string, string>,
  transport: Transport,
  bucket: BucketRecord,
): RequestEncryption {
  return writeParams(fields, transport, bucket);
}

export function storedEncryptionOf(record: { encryption?: Record<string, unknown> }): StoredEncryption {
  return record.encryption
    ? decodeStoredEncryption(JSON.stringify(record.encryption))
    : { v: 2, kind: 'plaintext' };
}

function cryptoFor(enc: RequestEncryption, identity: ObjectIdentityRef): ObjectCrypto | undefined {
  if (enc.params.kind === 'plaintext') return undefined;
  enc.crypto ??= ObjectCrypto.open(enc.params, {
    bucketId: identity.bucketId,
    versionId: identity.versionId,
    objectKey: identity.key,
  });
  return enc.crypto;
}

// Checks the request's key against an encrypted record (the authenticated opening of its sealed metadata is the
// wrong-key check) and keeps the opened metadata. An SSE-S3 record is opened with the node's master key when
// the request brings no key of its own (one that does is refused as for a plaintext object). An object record
// (`object` given) is then checked against what its key authenticates — size, ETag, segments — before the
// request reads a byte of it, and its checksums come from there.
function openWith(
  transport: Transport,
  enc: RequestEncryption,
  record: ObjectIdentityRef & { sealedMeta?: Buffer; encryption?: Record<string, unknown> },
  object?: ObjectRecord,
): RequestEncryption {
  try {
    const stored = storedEncryptionOf(record);
    if (stored.kind === 'sse-s3' && enc.params.kind === 'plaintext')
      enc = fromParams(sseS3Keys(transport).forRead(stored));
    checkParamsFitObject(stored, enc.params);
    const crypto = cryptoFor(enc, record);
    if (crypto && record.sealedMeta) enc.metadata = unpackMetadata(crypto.checkKeyMatches(record.sealedMeta));
    if (crypto && object) {
      // An object kept as one stream in a backend has no manifest: its record is rebuilt from the backend on
      // every read, and the stream's chunks authenticate its size and order themselves (docs/gateway.md). Its
      // checksums, when its PUT named them, are in its sealed metadata.
      const checksums = transport.store?.streams
        ? (enc.metadata?.checksums ?? {})
        : crypto.checkObjectRecord(stored, object);
      enc.metadata = { headers: {}, userMeta: {}, ...enc.metadata, checksums };
    }
    return enc;
  } catch (err) {
    disposeEncryption(enc);
    throw err;
  }
}

// The encryption a request asks for when writing (PutObject, CreateMultipartUpload, copy destination …) into
// `bucket`.
export function encryptionForWrite(ctx: S3Context, bucket: BucketRecord): RequestEncryption {
  return writeParams(ctx.req.headers, ctx, bucket);
}

// The key material a request brings for reading `record` (GetObject, HeadObject, or a copy source), checked
// against how the object was stored.
export function encryptionForRead(ctx: S3Context, record: ObjectRecord, source = false): RequestEncryption {
  const enc = fromParams(requestParams(ctx, source ? COPY_SOURCE_SSE_C_PREFIX : SSE_C_PREFIX));
  return openWith(ctx, enc, record, record);
}

// The encryption of a part of a multipart upload: the one chosen at CreateMultipartUpload, whose key every
// UploadPart must bring again (a different key fails the sealed-metadata check).
export function encryptionForUpload(ctx: S3Context, upload: UploadRecord): RequestEncryption {
  const enc = fromParams(requestParams(ctx, SSE_C_PREFIX));
  return openWith(ctx, enc, upload);
}

function packMetadata(meta: ObjectMetadata): Record<string, string> {
  return {
    headers: JSON.stringify(meta.headers),
    userMeta: JSON.stringify(meta.userMeta),
    checksums: JSON.stringify(meta.checksums ?? {}),
  };
}

function unpackMetadata(map: Record<string, string>): ObjectMetadata {
  return {
    headers: JSON.parse(map.headers ?? '{}') as Record<string, string>,
    userMeta: JSON.parse(map.userMeta ?? '{}') as Record<string, string>,
    checksums: JSON.parse(map.checksums ?? '{}') as Record<string, string>,
  };
}

// The fields of a record (object or upload) that carry its metadata: sealed when the object is encrypted, with
// the stored encryption record (never key material) beside it.
export function sealMetadata(
  enc: RequestEncryption,
  record: ObjectIdentityRef & ObjectMetadata,
): {
  headers: Record<string, string>;
  userMeta: Record<string, string>;
  checksums: Record<string, string>;
  sealedMeta?: Buffer;
  encryption?: Record<string, unknown>;
} {
  const crypto = cryptoFor(enc, record);
  if (!crypto) {
    return {
      headers: record.headers,
      userMeta: record.userMeta,
      checksums: record.checksums ?? {},
      sealedMeta: undefined,
      encryption: undefined,
    };
  }
  return {
    headers: {},
    userMeta: {},
    checksums: {},
    sealedMeta: crypto.encryptMetadata(packMetadata(record)),
    encryption: { ...storedEncryptionFor(enc.params) },
  };
}

// The record of a new encrypted object, with its manifest: what its key authenticates (size, ETag, checksums,
// segments). Its checksums live only there. A plaintext record is returned as it is.
export function sealObjectRecord(
  enc: RequestEncryption,
  record: ObjectRecord,
  checksums: Record<string, string>,
): ObjectRecord {
  const crypto = cryptoFor(enc, record);
  if (!crypto) return record;
  const manifest = crypto.sealManifest({
    size: record.size,
    etag: record.etag,
    checksums,
    segments: segmentsDigest(record.segments),
  });
  return { ...record, checksums: {}, encryption: { ...storedEncryptionFor(enc.params), manifest } };
}

// What a part record of an encrypted upload keeps, and the ETag its client is given. An SSE-C part's ETag is a
// MAC of its segment under the object's key, of which the record keeps only a hash; an SSE-S3 part's ETag is
// the MD5 of its plaintext, as S3 gives, kept sealed with its checksums.
export function sealPart(
  enc: RequestEncryption,
  identity: ObjectIdentityRef,
  segment: Segment,
  md5: Buffer,
  checksums: Record<string, string>,
): { etag: string; storedEtag: string; sealed?: Buffer } {
  const crypto = cryptoFor(enc, identity);
  if (!crypto) throw new Error('sealPart needs an encrypted upload');
  if (enc.kind === 'sse-c') {
    const etag = crypto.partEtag(segment);
    return { etag, storedEtag: partEtagHash(etag) };
  }
  const etag = `"${md5.toString('hex')}"`;
  return { etag, storedEtag: '', sealed: crypto.sealPart(etag, checksums, segment) };
}

// A stored part's ETag and checksums as its client knows them, with the upload's key in `enc` (SSE-C parts keep
// no checksums). A part record that does not fit its segment is a 500.
export function openPart(
  enc: RequestEncryption,
  identity: ObjectIdentityRef,
  part: PartRecord,
): { etag: string; checksums: Record<string, string> } {
  const crypto = cryptoFor(enc, identity);
  if (!crypto) return { etag: part.etag, checksums: part.checksums };
  if (enc.kind === 'sse-c') {
    const etag = crypto.partEtag(part.segment);
    if (!partEtagMatches(etag, part.etag))
      throw S3Errors.internal(`stored record of part ${part.partNumber} failed authentication`);
    return { etag, checksums: {} };
  }
  const seal = crypto.openPart(part.sealed, part.segment);
  return { etag: seal.etag, checksums: seal.checksums };
}

// The encryption record of an SSE-C multipart object completed from `partEtags` (the ETags the client sent,
// checked against the parts' records): the parts tag binds their number, order and segments, the size and the
// ETag. Needs no key: see sse/object-crypto.ts.
export function customerMultipartEncryption(
  upload: UploadRecord,
  partEtags: string[],
  size: number,
): { etag: string; encryption: Record<string, unknown> } {
  const stored = storedEncryptionOf(upload);
  if (stored.kind !== 'sse-c' || stored.v !== 2) {
    throw S3Errors.internal('this upload was started in an earlier record format; start it again');
  }
  const quoted = partEtags.map((e) => `"${e.replace(/"/g, '')}"`);
  const etag = multipartEtag(quoted);
  return { etag, encryption: { ...stored, partsTag: partsTag(quoted, size, etag) } };
}

// Seals one segment: the whole object (segmentIndex 0) or multipart part `segmentIndex`.
export function segmentSealer(
  enc: RequestEncryption,
  identity: ObjectIdentityRef,
  segmentIndex: number,
): ObjectSealer | undefined {
  const crypto = cryptoFor(enc, identity);
  if (!crypto) return undefined;
  return crypto.sealer(segmentIndex === 0 ? undefined : { partNumber: segmentIndex });
}

/**
 * Whether the object's ETag is the MD5 of its plaintext (and its checksums are kept): for plaintext and, as
 * S3 does and clients that check uploads expect, for SSE-S3. An SSE-C object's ETag is random, revealing
 * nothing of the plaintext.
 */
export function etagIsMd5(enc: RequestEncryption): boolean {
  return enc.kind !== 'sse-c';
}

export function responseHeaders(enc: RequestEncryption): Record<string, string> {
  return paramsResponseHeaders(enc.params);
}

export function disposeEncryption(enc: RequestEncryption | undefined): void {
  if (!enc) return;
  enc.crypto?.dispose();
  disposeParams(enc.params);
}

// Plaintext bytes [start, end) of an object, across its segments, decrypting only the chunks touched.
export function openObjectRange(
  store: SegmentIo,
  record: ObjectRecord,
  enc: RequestEncryption,
  start: number,
  end: number,
): Readable {
  const crypto = cryptoFor(enc, record);
  return Readable.from(objectChunks(store, record.segments, crypto, start, end), { highWaterMark: 1 });
}

/** The same bytes whole, for a range small enough to answer in one write (get.ts SMALL_BODY). */
export async function readObjectRange(
  store: SegmentIo,
  record: ObjectRecord,
  enc: RequestEncryption,
  start: number,
  end: number,
): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of objectChunks(store, record.segments, cryptoFor(enc, record), start, end))
    pieces.push(piece);
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

// One segment's plaintext bytes [start, end), in pieces consumed one at a time (never joined).
function segmentChunks(
  store: SegmentIo,
  segment: Segment,
  crypto: ObjectCrypto | undefined,
  start: number,
  end: number,
): AsyncIterable<Buffer> {
  if (!crypto) return store.readSegment(segment, start, end);
  if (!segment.cryptoHeader) throw new Error('encrypted segment has no stream header');
  const range = plaintextRangeToCiphertextRange(start, end, segment.plainSize);
  const place = segment.partNumber === undefined ? undefined : { partNumber: segment.partNumber };
  // Every chunk's AES-GCM tag authenticates what the block hash would: one pass over the data, not two. Local
  // blocks come as file slices, read by the thread that decrypts them.
  const cipher = store.segmentSlices(segment, range.cipherStart, range.cipherEnd);
  // Blocks read for this request are its own (segmentSlices); inline bytes belong to the record.
  // A backend store gathers its bytes into buffers of its own (backend-store segmentSlices): given away too.
  return crypto.decryptRange(cipher, segment.cryptoHeader, range, place, !segment.inline);
}

async function* objectChunks(
  store: SegmentIo,
  segments: Segment[],
  crypto: ObjectCrypto | undefined,
  start: number,
  end: number,
): AsyncGenerator<Buffer> {
  let offset = 0;
  for (const segment of segments) {
    const segStart = offset;
    const segEnd = offset + segment.plainSize;
    offset = segEnd;
    if (segEnd <= start || segment.plainSize === 0) continue;
    if (segStart >= end) break;
    yield* segmentChunks(
      store,
      segment,
      crypto,
      Math.max(start, segStart) - segStart,
      Math.min(end, segEnd) - segStart,
    );
  }
}
