// backend/object-format: how one coffre object sits in the backend (format "coffre backend object", version 1).
//
// A coffre object is one backend object at `prefix` + bucket name + '/' + key. Its body is the object's
// encrypted stream exactly as crypto/aead-stream writes it (17-byte header, then 64 KiB chunks each with its
// AES-GCM tag), so the plaintext size follows from the backend's size alone (plaintextSize) and a listing
// needs no request per object. Its backend metadata (x-amz-meta-*) carries, in the clear, only what opening
// it needs and reveals nothing of the plaintext: the format version, the version id and stored encryption
// record (kind, algorithm, master key id) that its keys are derived with, the stream header, and the sealed
// metadata (content-type and the other stored headers, user metadata) under the object's metadata key.
// Everything read back is checked here before the API sees it: the backend is outside coffre's trust.
//
// The object's ETag is derived from the backend's ETag of it: the backend's listing gives it, so PUT, HEAD,
// GET and listings agree without a request per object. It is not an MD5 of the plaintext (the gateway would
// need to store that beside the object, and a listing could not give it), so it never looks like one: a
// "-N" suffix, as multipart ETags have, tells rclone, s3cmd and the aws CLI not to compare it with an MD5.
// The layout is described in docs/gateway.md for anyone writing a second reader. DO NOT CHANGE the names and
// labels below: stored objects depend on them.
import { createHash } from 'node:crypto';
import { HEADER_SIZE, IntegrityError, plaintextSize } from '../crypto/aead-stream.js';
import type { StreamedObject } from '../model/store.js';
import { BACKEND_VERSION_ID, RECORD_VERSION, type ObjectRecord, type Segment } from '../model/types.js';
import { decodeStoredEncryption, type StoredEncryption } from '../sse/object-crypto.js';
import { S3Error, S3Errors } from '../util/s3-error.js';

export const OBJECT_FORMAT_VERSION = '1';
/** Backend metadata names (x-amz-meta-…): format version, version id, encryption record, stream header, sealed metadata. */
const META_FORMAT = 'coffre';
const META_VERSION_ID = 'coffre-version';
const META_ENCRYPTION = 'coffre-enc';
const META_HEADER = 'coffre-header';
const META_SEALED = 'coffre-meta';
/** Label of the ETag derivation (ASCII, then one 0x00 byte, then the backend's ETag without quotes). */
const ETAG_LABEL = 'coffre/backend-etag/v1';
/** User metadata the backend must accept: AWS allows 2 KiB of x-amz-meta-* names and values in all. */
export const MAX_BACKEND_METADATA = 2048;

/** Where object `key` of coffre bucket `bucketName` is in the backend bucket. */
export function backendKey(prefix: string, bucketName: string, key: string): string {
  return `${prefix}${bucketName}/${key}`;
}

/** The prefix of every object of coffre bucket `bucketName`. */
export function bucketPrefix(prefix: string, bucketName: string): string {
  return `${prefix}${bucketName}/`;
}

/** The ETag coffre gives an object whose backend ETag is `backendEtag` (quoted, "<32 hex>-<parts>"). */
export function coffreEtag(backendEtag: string): string {
  const bare = backendEtag.replace(/^"|"$/g, '');
  const parts = /-(\d{1,5})$/.exec(bare)?.[1] ?? '1';
  const digest = createHash('sha256').update(ETAG_LABEL, 'ascii').update(Buffer.of(0)).update(bare, 'utf8');
  return `"${digest.digest('hex').slice(0, 32)}-${parts}"`;
}

/** The backend metadata of a new object; refused (400) when it would not fit in what the backend accepts. */
export function backendMetadata(object: StreamedObject): Record<string, string> {
  if (!object.encryption || !object.sealedMeta)
    throw S3Errors.internal('an object stored in a backend must be encrypted');
  const meta: Record<string, string> = {
    [META_FORMAT]: OBJECT_FORMAT_VERSION,
    [META_VERSION_ID]: object.versionId,
    [META_ENCRYPTION]: Buffer.from(JSON.stringify(object.encryption), 'utf8').toString('base64'),
    [META_HEADER]: object.cryptoHeader.toString('base64'),
    [META_SEALED]: object.sealedMeta.toString('base64'),
  };
  checkMetadataFits(meta);
  return meta;
}

/** What the backend says about one of its objects (HEAD, or an entry of a listing, without metadata). */
export interface BackendObjectFacts {
  key: string;
  size: number | undefined;
  etag: string | undefined;
  lastModified: Date | undefined;
  metadata?: Record<string, string>;
}

function checkedFacts(facts: BackendObjectFacts): { size: number; etag: string; lastModified: number } {
  const { size, etag, lastModified } = facts;
  if (size === undefined || !Number.isSafeInteger(size) || size < 0 || !etag || !lastModified)
    throw notCoffre(facts.key, 'the backend did not give its size, ETag and date');
  return { size, etag, lastModified: lastModified.getTime() };
}

function notCoffre(key: string, why: string): S3Error {
  return S3Errors.internal(`The backend object ${key} is not one this gateway wrote: ${why}.`);
}

/** The plaintext size of a stored stream of `size` bytes, or undefined when no stream has that size. */
export function plainSizeOf(size: number): number | undefined {
  try {
    return plaintextSize(size);
  } catch (err) {
    if (err instanceof IntegrityError) return undefined;
    throw err;
  }
}

/**
 * The record of an object as a listing shows it: key, plaintext size, ETag and date (no metadata, no
 * segments: a listing needs none); a multipart object's plaintext size is given (see its part table). Undefined for a backend object that is no coffre stream (something else
 * put it there): listings leave it out.
 */
export function listedRecord(
  bucketId: string,
  key: string,
  facts: BackendObjectFacts,
  plainSize?: number,
): ObjectRecord | undefined {
  if (facts.size === undefined || !facts.etag || !facts.lastModified) return undefined;
  const size = plainSize ?? plainSizeOf(facts.size);
  if (size === undefined) return undefined;
  return {
    v: RECORD_VERSION,
    bucketId,
    key,
    versionId: '',
    size,
    etag: coffreEtag(facts.etag),
    lastModified: facts.lastModified.getTime(),
    headers: {},
    userMeta: {},
    checksums: {},
    segments: [],
  };
}

const VERSION_ID = /^[0-9a-f]{32}$/;

/** A backend's version id as it answered it, checked: undefined when it gave none. */
export function checkedBackendVersion(key: string, versionId: string | undefined): string | undefined {
  if (versionId === undefined || versionId === '') return undefined;
  if (!BACKEND_VERSION_ID.test(versionId)) throw notCoffre(key, 'the backend gave a malformed version id');
  return versionId;
}

/** The same record as the backend's version `versionId` of it: S3 clients see that id, reads name it. */
export function atBackendVersion(record: ObjectRecord, versionId: string | undefined): ObjectRecord {
  if (versionId === undefined) return record;
  return {
    ...record,
    backendVersionId: versionId,
    segments: record.segments.map((s) => (s.backend ? { ...s, backend: { ...s.backend, versionId } } : s)),
  };
}
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The full record of an object from its backend HEAD, every field checked. */
export function headRecord(
  bucketId: string,
  key: string,
  facts: BackendObjectFacts,
  table?: TablePart[],
): ObjectRecord {
  const { size: storedSize, etag, lastModified } = checkedFacts(facts);
  const meta = facts.metadata ?? {};
  if (meta[META_FORMAT] !== OBJECT_FORMAT_VERSION)
    throw notCoffre(facts.key, `its format is ${JSON.stringify(meta[META_FORMAT] ?? 'none')}`);
  const versionId = meta[META_VERSION_ID] ?? '';
  if (!VERSION_ID.test(versionId)) throw notCoffre(facts.key, 'its version id is malformed');
  const multipart = isMultipart(meta);
  if (multipart !== (table !== undefined)) throw notCoffre(facts.key, 'its part table is missing');
  const fields = [meta[META_ENCRYPTION], multipart ? '' : meta[META_HEADER], meta[META_SEALED]];
  if (fields.some((f) => f === undefined || !BASE64.test(f)))
    throw notCoffre(facts.key, 'its encryption fields are missing or malformed');
  const [encryptionText, headerText, sealedText] = fields as [string, string, string];
  const stored = decodeStoredEncryption(Buffer.from(encryptionText, 'base64').toString('utf8'));
  if (stored.kind === 'plaintext') throw notCoffre(facts.key, 'it claims to be stored in clear');
  const segments = table
    ? tableSegments(facts.key, etag, storedSize, table)
    : [wholeSegment(facts.key, etag, storedSize, Buffer.from(headerText, 'base64'))];
  const plainSize = segments.reduce((n, s) => n + s.plainSize, 0);
  return {
    v: RECORD_VERSION,
    bucketId,
    key,
    versionId,
    size: plainSize,
    etag: coffreEtag(etag),
    lastModified,
    headers: {},
    userMeta: {},
    sealedMeta: Buffer.from(sealedText, 'base64'),
    checksums: {},
    encryption: { ...stored },
    segments,
    ...(multipart && typeof meta[META_UPLOAD] === 'string' ? { uploadId: meta[META_UPLOAD] } : {}),
  };
}

function wholeSegment(key: string, etag: string, storedSize: number, cryptoHeader: Buffer): Segment {
  if (cryptoHeader.length !== HEADER_SIZE) throw notCoffre(key, 'its stream header is malformed');
  const plainSize = plainSizeOf(storedSize);
  if (plainSize === undefined) throw notCoffre(key, `no encrypted stream is ${storedSize} bytes long`);
  return { plainSize, storedSize, blocks: [], cryptoHeader, backend: { key, etag, offset: 0 } };
}

function tableSegments(key: string, etag: string, storedSize: number, table: TablePart[]): Segment[] {
  let offset = 0;
  const segments = table.map((p) => {
    const segment: Segment = {
      plainSize: plainSizeOf(p.storedSize)!,
      storedSize: p.storedSize,
      blocks: [],
      cryptoHeader: p.header,
      partNumber: p.partNumber,
      ...(p.etag ? { etag: p.etag } : {}),
      backend: { key, etag, offset },
    };
    offset += p.storedSize;
    return segment;
  });
  if (offset !== storedSize) throw notCoffre(key, 'its part table does not add up to its size');
  return segments;
}

// ---- multipart uploads
//
// An upload is a backend multipart upload on the object's own backend key, so that completing it is the
// backend's atomic step. Beside it, under `prefix` + ".coffre/" (no coffre bucket can be named so), the gateway
// keeps what the backend cannot: the upload's record (what every UploadPart must check its key against),
// one empty marker per uploaded part whose name holds that part's stream header, and, once completed, the
// object's part table (each part's stored size and stream header), which reads need to find a byte.

/** Metadata of an object made by a multipart upload: its layout, and the upload that made it. */
const META_LAYOUT = 'coffre-layout';
const META_UPLOAD = 'coffre-upload';
const LAYOUT_PARTS = 'parts';
const PART_ETAG_LABEL = 'coffre/backend-part-etag/v1';
const UPLOAD_FORMAT = 'coffre-backend-upload';
const TABLE_FORMAT = 'coffre-backend-parts';

export const UPLOAD_ID = /^[0-9a-f]{32}$/;

export function stateKey(prefix: string, ...names: string[]): string {
  return `${prefix}.coffre/${names.join('/')}`;
}

export function uploadRecordKey(prefix: string, uploadId: string): string {
  return stateKey(prefix, 'uploads', uploadId);
}

export function partMarkersPrefix(prefix: string, uploadId: string): string {
  return stateKey(prefix, 'uploads', `${uploadId}.parts`) + '/';
}

export function partMarkerKey(
  prefix: string,
  uploadId: string,
  partNumber: number,
  backendEtag: string,
  header: Buffer,
): string {
  return `${partMarkersPrefix(prefix, uploadId)}${partNumber}/${partEtagDigest(backendEtag)}/${header.toString('hex')}`;
}

export function partTableKey(prefix: string, versionId: string): string {
  return stateKey(prefix, 'parts', versionId);
}

function partEtagDigest(backendEtag: string): string {
  const bare = backendEtag.replace(/^"|"$/g, '');
  return createHash('sha256')
    .update(PART_ETAG_LABEL, 'ascii')
    .update(Buffer.of(0))
    .update(bare, 'utf8')
    .digest('hex')
    .slice(0, 32);
}

/** The ETag a client is given for a part whose backend ETag is `backendEtag` (not an MD5: see coffreEtag). */
export function coffrePartEtag(backendEtag: string): string {
  return `"${partEtagDigest(backendEtag)}-1"`;
}

/** A part marker's name, read back: undefined for anything that is not one. */
export function parsePartMarker(
  name: string,
): { partNumber: number; etagDigest: string; header: Buffer } | undefined {
  const m = /^(\d{1,5})\/([0-9a-f]{32})\/([0-9a-f]{34})$/.exec(name);
  if (!m) return undefined;
  const partNumber = Number(m[1]);
  if (partNumber < 1 || partNumber > 10000) return undefined;
  return { partNumber, etagDigest: m[2]!, header: Buffer.from(m[3]!, 'hex') };
}

/** Whether the client's `etag` for a part names the part whose backend ETag is `backendEtag`. */
export function partEtagNames(etag: string, backendEtag: string): boolean {
  return etag.replace(/"/g, '') === coffrePartEtag(backendEtag).replace(/"/g, '');
}

export function markerDigestOf(backendEtag: string): string {
  return partEtagDigest(backendEtag);
}

/** The stored record of an upload in progress. */
export interface BackendUpload {
  uploadId: string;
  bucketId: string;
  key: string;
  versionId: string;
  initiated: number;
  backendUploadId: string;
  encryption: Record<string, unknown>;
  sealedMeta: string;
  checksumAlgorithm?: string;
}

export function encodeUpload(upload: BackendUpload): string {
  return JSON.stringify({ format: UPLOAD_FORMAT, v: 1, ...upload });
}

export function decodeUpload(text: string): BackendUpload {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw S3Errors.internal('an upload record in the backend is not valid JSON');
  }
  const ok =
    r !== null &&
    typeof r === 'object' &&
    r.format === UPLOAD_FORMAT &&
    r.v === 1 &&
    typeof r.uploadId === 'string' &&
    UPLOAD_ID.test(r.uploadId) &&
    typeof r.bucketId === 'string' &&
    typeof r.key === 'string' &&
    typeof r.versionId === 'string' &&
    VERSION_ID.test(r.versionId) &&
    typeof r.initiated === 'number' &&
    typeof r.backendUploadId === 'string' &&
    r.backendUploadId.length > 0 &&
    typeof r.encryption === 'object' &&
    r.encryption !== null &&
    typeof r.sealedMeta === 'string' &&
    BASE64.test(r.sealedMeta) &&
    (r.checksumAlgorithm === undefined || typeof r.checksumAlgorithm === 'string');
  if (!ok) throw S3Errors.internal('an upload record in the backend is malformed');
  decodeStoredEncryption(JSON.stringify(r.encryption));
  return r as unknown as BackendUpload;
}

/** The backend metadata of the object an upload makes. */
export function uploadMetadata(upload: BackendUpload): Record<string, string> {
  return {
    [META_FORMAT]: OBJECT_FORMAT_VERSION,
    [META_VERSION_ID]: upload.versionId,
    [META_ENCRYPTION]: Buffer.from(JSON.stringify(upload.encryption), 'utf8').toString('base64'),
    [META_SEALED]: upload.sealedMeta,
    [META_LAYOUT]: LAYOUT_PARTS,
    [META_UPLOAD]: upload.uploadId,
  };
}

export function checkMetadataFits(meta: Record<string, string>): void {
  const size = Object.entries(meta).reduce((n, [k, v]) => n + 'x-amz-meta-'.length + k.length + v.length, 0);
  if (size > MAX_BACKEND_METADATA) throw metadataTooLarge();
}

function metadataTooLarge(): S3Error {
  return new S3Error(
    'MetadataTooLarge',
    400,
    `Your metadata headers exceed what this gateway can store in its backend once sealed (about ${Math.floor(
      (MAX_BACKEND_METADATA - 200) * 0.7,
    )} bytes of headers and user metadata).`,
  );
}

/** Whether a HEAD's metadata says the object is made of parts (its table is then needed to read it). */
export function isMultipart(meta: Record<string, string> | undefined): boolean {
  return meta?.[META_LAYOUT] === LAYOUT_PARTS;
}

export function versionIdOf(meta: Record<string, string> | undefined): string | undefined {
  const v = meta?.[META_VERSION_ID];
  return v !== undefined && VERSION_ID.test(v) ? v : undefined;
}

/** One part of a completed object: its number, stored size and stream header. */
export interface TablePart {
  partNumber: number;
  storedSize: number;
  header: Buffer;
  /** The ETag its client was given (coffrePartEtag), which a repeated CompleteMultipartUpload names again. */
  etag?: string;
}

export function encodePartTable(parts: TablePart[]): string {
  return JSON.stringify({
    format: TABLE_FORMAT,
    v: 1,
    // A fourth field, the part's ETag (32 hex digits), was added within version 1: tables without it read.
    parts: parts.map((p) => [
      p.partNumber,
      p.storedSize,
      p.header.toString('hex'),
      ...(p.etag ? [p.etag.replace(/"/g, '').replace(/-1$/, '')] : []),
    ]),
  });
}

export function decodePartTable(text: string, key: string): TablePart[] {
  let r: { format?: unknown; v?: unknown; parts?: unknown };
  try {
    r = JSON.parse(text) as typeof r;
  } catch {
    throw notCoffre(key, 'its part table is not valid JSON');
  }
  if (r?.format !== TABLE_FORMAT || r.v !== 1 || !Array.isArray(r.parts) || r.parts.length === 0)
    throw notCoffre(key, 'its part table is malformed');
  let previous = 0;
  return r.parts.map((p: unknown) => {
    if (!Array.isArray(p) || (p.length !== 3 && p.length !== 4))
      throw notCoffre(key, 'its part table is malformed');
    const [n, size, header, etag] = p as unknown[];
    if (etag !== undefined && (typeof etag !== 'string' || !/^[0-9a-f]{32}$/.test(etag)))
      throw notCoffre(key, 'its part table is malformed');
    if (
      typeof n !== 'number' ||
      !Number.isInteger(n) ||
      n <= previous ||
      n > 10000 ||
      typeof size !== 'number' ||
      plainSizeOf(size) === undefined ||
      typeof header !== 'string' ||
      !/^[0-9a-f]{34}$/.test(header)
    )
      throw notCoffre(key, 'its part table is malformed');
    previous = n;
    return {
      partNumber: n,
      storedSize: size,
      header: Buffer.from(header, 'hex'),
      ...(etag !== undefined ? { etag: `"${etag as string}-1"` } : {}),
    };
  });
}

/** The encryption record in a backend object's metadata; undefined for an object that is not coffre's. */
export function encryptionOfMetadata(meta: Record<string, string> | undefined): StoredEncryption | undefined {
  const text = meta?.[META_ENCRYPTION];
  if (meta?.[META_FORMAT] !== OBJECT_FORMAT_VERSION || text === undefined || !BASE64.test(text))
    return undefined;
  return decodeStoredEncryption(Buffer.from(text, 'base64').toString('utf8'));
}

/** The same metadata with another encryption record (an object key re-wrapped: backend/rewrap.ts). */
export function withEncryption(
  meta: Record<string, string>,
  stored: StoredEncryption,
): Record<string, string> {
  const out = {
    ...meta,
    [META_ENCRYPTION]: Buffer.from(JSON.stringify(stored), 'utf8').toString('base64'),
  };
  checkMetadataFits(out);
  return out;
}
