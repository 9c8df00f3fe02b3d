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
import { RECORD_VERSION, type ObjectRecord } from '../model/types.js';
import { decodeStoredEncryption } from '../sse/object-crypto.js';
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
  const size = Object.entries(meta).reduce((n, [k, v]) => n + 'x-amz-meta-'.length + k.length + v.length, 0);
  if (size > MAX_BACKEND_METADATA)
    throw new S3Error(
      'MetadataTooLarge',
      400,
      `Your metadata headers exceed what this gateway can store in its backend once sealed (about ${Math.floor(
        (MAX_BACKEND_METADATA - 200) * 0.7,
      )} bytes of headers and user metadata).`,
    );
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
 * segments: a listing needs none). Undefined for a backend object that is no coffre stream (something else
 * put it there): listings leave it out.
 */
export function listedRecord(
  bucketId: string,
  key: string,
  facts: BackendObjectFacts,
): ObjectRecord | undefined {
  if (facts.size === undefined || !facts.etag || !facts.lastModified) return undefined;
  const size = plainSizeOf(facts.size);
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
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The full record of an object from its backend HEAD, every field checked. */
export function headRecord(bucketId: string, key: string, facts: BackendObjectFacts): ObjectRecord {
  const { size: storedSize, etag, lastModified } = checkedFacts(facts);
  const meta = facts.metadata ?? {};
  if (meta[META_FORMAT] !== OBJECT_FORMAT_VERSION)
    throw notCoffre(facts.key, `its format is ${JSON.stringify(meta[META_FORMAT] ?? 'none')}`);
  const versionId = meta[META_VERSION_ID] ?? '';
  if (!VERSION_ID.test(versionId)) throw notCoffre(facts.key, 'its version id is malformed');
  const fields = [meta[META_ENCRYPTION], meta[META_HEADER], meta[META_SEALED]];
  if (fields.some((f) => f === undefined || !BASE64.test(f)))
    throw notCoffre(facts.key, 'its encryption fields are missing or malformed');
  const [encryptionText, headerText, sealedText] = fields as [string, string, string];
  const stored = decodeStoredEncryption(Buffer.from(encryptionText, 'base64').toString('utf8'));
  if (stored.kind === 'plaintext') throw notCoffre(facts.key, 'it claims to be stored in clear');
  const cryptoHeader = Buffer.from(headerText, 'base64');
  if (cryptoHeader.length !== HEADER_SIZE) throw notCoffre(facts.key, 'its stream header is malformed');
  const plainSize = plainSizeOf(storedSize);
  if (plainSize === undefined) throw notCoffre(facts.key, `no encrypted stream is ${storedSize} bytes long`);
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
    segments: [
      {
        plainSize,
        storedSize,
        blocks: [],
        cryptoHeader,
        backend: { key: facts.key, etag, offset: 0 },
      },
    ],
  };
}
