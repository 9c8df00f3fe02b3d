// Per-object encryption for the server: from a request's EncryptionParams and the identity of the object
// version it touches, the keys for that object's data and metadata, the streams that encrypt and decrypt its
// data, the sealing of its user metadata, and the small record stored with the object that says which
// encryption it uses.
//
// The stored record holds no key in clear (an SSE-S3 object's own key only wrapped under a master key,
// sse/keyring.ts) and no key digest. In particular the SSE-C key MD5 is NOT stored:
// MD5 is fast and unsalted, so a stored digest would let anyone holding the disk test guesses of keys derived
// from passwords offline, and would reveal which objects (across buckets and users) share a key. The
// wrong-key check is instead the authenticated decryption of the object's sealed metadata, which every
// encrypted object has (an empty record is sealed when there is no user metadata).
//
// Identity: data and metadata keys are derived from (root key, bucket id, version id, object key). The same
// identity must be used when writing and when reading, so a multipart upload fixes its version id at
// CreateMultipartUpload and the completed object keeps it; every part is its own stream, bound to its part
// number (partContext) so parts cannot be swapped.
//
// Integrity of the record: every chunk authenticates itself, but the record says how many parts there are and
// how long each is, and a stream whose record is cut after one of its parts (or inside a stream, with the size
// cut to match) would decrypt cleanly. So an encrypted object's record carries what its key authenticates:
// either a sealed *manifest* (size, ETag, checksums and a digest of the segment list: part numbers, plaintext
// and stored sizes, stream headers, blocks), written by whoever holds the key when the record is made, or, for
// an SSE-C multipart upload completed without the key (as most clients complete it), a *parts tag*. Each part
// of such an upload has an ETag that is a MAC of its segment under the object's key; the client keeps those
// ETags and sends them back in CompleteMultipartUpload, the server keeps only a hash of each, and the tag is a
// MAC keyed by the ETags in order. Whoever can read and write the metadata knows none of those ETags, so
// cannot make the tag of another list of parts; a reader with the key recomputes every ETag from the record
// and so the tag. Either is checked before any byte of the object is sent.

import { createHash, createHmac, createSecretKey } from 'node:crypto';
import type { Transform } from 'node:stream';
import {
  CHUNK_SIZE,
  RangeOpener,
  StreamSealer,
  createDecryptStream,
  decryptBuffer,
  encryptBuffer,
  openSmall,
  sealRun,
  sealSmall,
  sealedRunSize,
} from '../crypto/aead-stream.js';
import type { CiphertextRange } from '../crypto/aead-stream.js';
import { constantTimeEqual, deriveObjectKey, lengthPrefixed, zeroize } from '../crypto/keys.js';
import type { ObjectIdentity } from '../crypto/keys.js';
import type { BlockSealer } from '../model/segments.js';
import type { Segment } from '../model/types.js';
import { readFileSlice, type FileSlice } from '../util/file-slice.js';
import { S3Errors } from '../util/s3-error.js';
import { decryptOffThread, sealOffThread, storedDataError } from './crypto-pool.js';
import type { EncryptionParams } from './params.js';
import { SSE_C_ALGORITHM } from './params.js';

export type { ObjectIdentity } from '../crypto/keys.js';

// ---- Format constants. DO NOT CHANGE: stored objects depend on them. ----
/**
 * Version of the StoredEncryption record written now. Version 2 adds the authenticated manifest or parts tag
 * of an encrypted object; an encrypted object record of version 1 has neither and is refused (see
 * checkObjectRecord).
 */
export const STORED_ENCRYPTION_VERSION = 2;
/** Associated data of sealed user metadata (ASCII). */
export const METADATA_AAD = 'coffre/object-metadata/v1';
/** Stream context of a multipart part: these ASCII bytes followed by the part number as u32 big-endian. */
export const PART_CONTEXT_LABEL = 'part';
/** Derivation of the manifest key from the data key: HMAC(dataKey, label ‖ 0x00). */
export const MANIFEST_KEY_LABEL = 'coffre/object-manifest-key/v1';
/** Associated data of an object's sealed manifest. */
export const MANIFEST_AAD = 'coffre/object-manifest/v1';
/** Associated data of a multipart part's sealed checksums and MD5 (SSE-S3 parts). */
export const PART_SEAL_AAD = 'coffre/object-part/v1';
/** Label of the digest of an object's segment list. */
export const SEGMENTS_LABEL = 'coffre/object-segments/v1';
/** Label of an SSE-C part's ETag, a MAC of its segment under the manifest key. */
export const PART_ETAG_LABEL = 'coffre/part-etag/v1';
/** Label of the stored hash of an SSE-C part's ETag (what CompleteMultipartUpload compares). */
export const PART_ETAG_HASH_LABEL = 'coffre/part-etag-hash/v1';
/** Labels of the parts tag of an SSE-C multipart object: its key, then its message. */
export const PARTS_KEY_LABEL = 'coffre/object-parts-key/v1';
export const PARTS_TAG_LABEL = 'coffre/object-parts/v1';
/** Bytes of an SSE-C part ETag (32 hex digits, as S3 ETags of parts are). */
const PART_ETAG_SIZE = 16;
// ---- end of format constants ----

type Kind =
  | { kind: 'plaintext' }
  | { kind: 'sse-c'; alg: 'AES256' }
  /**
   * keyId names the keyring's master key. wrappedKey (base64): the object's own key sealed under that master
   * key, which the object's keys derive from; absent in objects written before, whose keys derive from the
   * master key itself (a re-wrap gives those the master key as their wrapped key: sse/keyring.ts rewrapped).
   */
  | { kind: 'sse-s3'; alg: 'AES256'; keyId: string; wrappedKey?: string };

/**
 * What is stored with an object (or a multipart upload) about its encryption. No secrets. An encrypted object
 * record of version 2 has exactly one of `manifest` (base64 of the sealed manifest) or `partsTag` (hex; SSE-C
 * multipart objects); an upload record has neither.
 */
export type StoredEncryption = Kind & { v: 1 | 2; manifest?: string; partsTag?: string };

/** What an object's manifest says, sealed under its manifest key. */
export interface ObjectManifest {
  size: number;
  etag: string;
  checksums: Record<string, string>;
  /** Hex SHA-256 of the segment list (segmentsDigest). */
  segments: string;
}

/** What a part of an SSE-S3 upload keeps sealed: its MD5 ETag and checksums, and the segment they belong to. */
export interface PartSeal {
  etag: string;
  checksums: Record<string, string>;
  /** Hex SHA-256 of the part's segment (segmentsDigest of that one segment). */
  segment: string;
}

/** The part of a segment record the object's key authenticates. */
export type SegmentFacts = Pick<
  Segment,
  'partNumber' | 'plainSize' | 'storedSize' | 'cryptoHeader' | 'inline' | 'blocks'
>;

/** Reads of at least this much plaintext are decrypted off the serving thread (smaller ones: the hop costs more). */
const OFF_THREAD_MIN_BYTES = 256 * 1024;

async function* openRange(
  opener: RangeOpener,
  cipher: AsyncIterable<Buffer | FileSlice>,
): AsyncGenerator<Buffer> {
  for await (const piece of cipher) {
    const plain = opener.write(
      Buffer.isBuffer(piece) ? piece : await readFileSlice(piece).catch(storedDataError),
    );
    if (plain.length > 0) yield plain;
  }
  opener.end();
}

const MESSAGES = {
  needsKey:
    'The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.',
  notApplicable: 'The encryption parameters are not applicable to this object.',
  wrongKey: 'Access Denied',
} as const;

const TAMPERED =
  "The object's stored record failed authentication: its size, parts or checksums are not what was written.";

/** The record to store for an object or upload written with `params` (an object's manifest is added later). */
export function storedEncryptionFor(params: EncryptionParams): StoredEncryption {
  const v = STORED_ENCRYPTION_VERSION;
  switch (params.kind) {
    case 'plaintext':
      return { v, kind: 'plaintext' };
    case 'sse-c':
      return { v, kind: 'sse-c', alg: SSE_C_ALGORITHM };
    case 'sse-s3':
      return {
        v,
        kind: 'sse-s3',
        alg: 'AES256',
        keyId: params.keyId,
        ...(params.wrappedKey !== undefined ? { wrappedKey: params.wrappedKey } : {}),
      };
  }
}

/** Serialises a StoredEncryption record (compact JSON). */
export function encodeStoredEncryption(record: StoredEncryption): string {
  return JSON.stringify(record);
}

/** Parses and validates a stored record; an unknown version or shape is a server fault (500), not a user's. */
export function decodeStoredEncryption(text: string): StoredEncryption {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw S3Errors.internal('stored encryption record is not valid JSON');
  }
  const r = value as Record<string, unknown> | null;
  if (r === null || typeof r !== 'object' || (r.v !== 1 && r.v !== 2)) {
    throw S3Errors.internal(`stored encryption record has unsupported version ${String(r?.v)}`);
  }
  const v = r.v;
  const integrity: { manifest?: string; partsTag?: string } = {};
  if (v === 2 && typeof r.manifest === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(r.manifest))
    integrity.manifest = r.manifest;
  else if (r.manifest !== undefined)
    throw S3Errors.internal('stored encryption record has a malformed manifest');
  if (v === 2 && typeof r.partsTag === 'string' && /^[0-9a-f]{64}$/.test(r.partsTag))
    integrity.partsTag = r.partsTag;
  else if (r.partsTag !== undefined)
    throw S3Errors.internal('stored encryption record has a malformed parts tag');
  if (r.kind === 'plaintext') return { v, kind: 'plaintext' };
  if (r.kind === 'sse-c' && r.alg === SSE_C_ALGORITHM)
    return { v, kind: 'sse-c', alg: 'AES256', ...integrity };
  if (r.kind === 'sse-s3' && r.alg === 'AES256' && typeof r.keyId === 'string') {
    if (r.wrappedKey === undefined) return { v, kind: 'sse-s3', alg: 'AES256', keyId: r.keyId, ...integrity };
    if (typeof r.wrappedKey !== 'string' || !WRAPPED_KEY.test(r.wrappedKey))
      throw S3Errors.internal('stored encryption record has a malformed wrapped key');
    return { v, kind: 'sse-s3', alg: 'AES256', keyId: r.keyId, wrappedKey: r.wrappedKey, ...integrity };
  }
  throw S3Errors.internal('stored encryption record has an unknown kind');
}

// A wrapped SSE-S3 object key: sealSmall of 32 bytes (1 + 12 + 32 + 16 = 61 bytes), in base64.
const WRAPPED_KEY = /^[A-Za-z0-9+/]{80}[A-Za-z0-9+/]{2}==$/;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u64(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw S3Errors.internal(TAMPERED);
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/**
 * The bytes that describe one stored segment: part number (0 for an object written whole), plaintext and
 * stored sizes, stream header, and where its bytes are (a SHA-256 of inline bytes, or the blocks in order).
 */
export function describeSegment(seg: SegmentFacts): Buffer {
  const layout: Buffer[] = [];
  if (seg.inline) {
    layout.push(Buffer.of(1), createHash('sha256').update(seg.inline).digest());
  } else {
    layout.push(Buffer.of(0), u32(seg.blocks.length));
    for (const b of seg.blocks) layout.push(lengthPrefixed(Buffer.from(b.hash, 'utf8')), u64(b.size));
  }
  return Buffer.concat([
    u32(seg.partNumber ?? 0),
    u64(seg.plainSize),
    u64(seg.storedSize),
    lengthPrefixed(seg.cryptoHeader ?? new Uint8Array(0)),
    ...layout,
  ]);
}

/** Hex SHA-256 of an object's segment list: label ‖ 0x00 ‖ u32be(count) ‖ lp(describeSegment(s)) for each. */
export function segmentsDigest(segments: readonly SegmentFacts[]): string {
  const hash = createHash('sha256').update(SEGMENTS_LABEL, 'ascii').update(Buffer.of(0));
  hash.update(u32(segments.length));
  for (const s of segments) hash.update(lengthPrefixed(describeSegment(s)));
  return hash.digest('hex');
}

/** The raw bytes of a part ETag as S3 clients send it back (32 hex digits, quotes optional). */
function partEtagBytes(etag: string): Buffer {
  const hex = etag.replace(/"/g, '');
  if (!/^[0-9a-f]{32}$/.test(hex)) throw S3Errors.internal(TAMPERED);
  return Buffer.from(hex, 'hex');
}

/**
 * What an SSE-C part record keeps of its ETag: a hash, so CompleteMultipartUpload can check the ETags a client
 * sends while the metadata holds nothing that makes the parts tag.
 */
export function partEtagHash(etag: string): string {
  return createHash('sha256')
    .update(PART_ETAG_HASH_LABEL, 'ascii')
    .update(Buffer.of(0))
    .update(partEtagBytes(etag))
    .digest('hex');
}

/** Whether `etag` (as a client sends it) is the one whose hash a part record keeps; constant time. */
export function partEtagMatches(etag: string, storedHash: string): boolean {
  if (!/^"?[0-9a-f]{32}"?$/.test(etag) || !/^[0-9a-f]{64}$/.test(storedHash)) return false;
  return constantTimeEqual(Buffer.from(partEtagHash(etag), 'hex'), Buffer.from(storedHash, 'hex'));
}

/**
 * The parts tag of an SSE-C multipart object: HMAC(K, label ‖ 0x00 ‖ u32be(n) ‖ u64be(size) ‖ lp(etag)) with
 * K = SHA-256(keyLabel ‖ 0x00 ‖ u32be(n) ‖ etag_1 ‖ … ‖ etag_n), the raw 16-byte part ETags in part order.
 */
export function partsTag(partEtags: readonly string[], size: number, objectEtag: string): string {
  const n = u32(partEtags.length);
  const key = createHash('sha256').update(PARTS_KEY_LABEL, 'ascii').update(Buffer.of(0)).update(n);
  for (const e of partEtags) key.update(partEtagBytes(e));
  const k = key.digest();
  const mac = createHmac('sha256', k).update(PARTS_TAG_LABEL, 'ascii').update(Buffer.of(0));
  mac
    .update(n)
    .update(u64(size))
    .update(lengthPrefixed(Buffer.from(objectEtag, 'utf8')));
  k.fill(0);
  return mac.digest('hex');
}

/** S3's multipart ETag: the MD5 of the binary part ETags, a dash, the part count. */
export function multipartEtag(partEtags: readonly string[]): string {
  const md5s = Buffer.concat(partEtags.map((e) => Buffer.from(e.replace(/"/g, '').slice(0, 32), 'hex')));
  return `"${createHash('md5').update(md5s).digest('hex')}-${partEtags.length}"`;
}

/**
 * Refuses a read whose SSE-C parameters do not fit how the object was stored (400 InvalidRequest): an SSE-C
 * object read without a key, or a key sent for an object that is not SSE-C. Whether the key is the right
 * one is checked afterwards by ObjectCrypto.checkKeyMatches.
 */
export function checkParamsFitObject(stored: StoredEncryption, params: EncryptionParams): void {
  if (stored.kind === 'sse-c' && params.kind !== 'sse-c') throw S3Errors.invalidRequest(MESSAGES.needsKey);
  if (stored.kind !== 'sse-c' && params.kind === 'sse-c')
    throw S3Errors.invalidRequest(MESSAGES.notApplicable);
}

/** The stream context binding a multipart part's stream to its part number (1..10000). */
export function partContext(partNumber: number): Buffer {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 0xffffffff) {
    throw new RangeError(`part number must be a positive integer, got ${partNumber}`);
  }
  const out = Buffer.alloc(PART_CONTEXT_LABEL.length + 4);
  out.write(PART_CONTEXT_LABEL, 'ascii');
  out.writeUInt32BE(partNumber, PART_CONTEXT_LABEL.length);
  return out;
}

/** Where a stream sits in the object: the whole object, or one part of a multipart upload. */
export interface StreamPlace {
  /** Part number for a multipart part; absent for a whole object written by one PutObject/CopyObject. */
  partNumber?: number;
}

function contextOf(place: StreamPlace | undefined): Buffer | undefined {
  return place?.partNumber === undefined ? undefined : partContext(place.partNumber);
}

/**
 * The keys of one encrypted object version and the operations on its data and metadata. Create one per request
 * with `ObjectCrypto.open`, and call `dispose()` when the request ends (the streams it created keep working: they
 * hold their own derived stream keys).
 */
export class ObjectCrypto {
  private readonly manifestKey: Buffer;

  private constructor(
    readonly stored: StoredEncryption,
    private readonly dataKey: Buffer,
    private readonly metadataKey: Buffer,
  ) {
    this.manifestKey = createHmac('sha256', dataKey)
      .update(MANIFEST_KEY_LABEL, 'ascii')
      .update(Buffer.of(0))
      .digest();
  }

  /**
   * Derives the object's keys from the request's root key (customer key or SSE-S3 master key). Returns
   * undefined for plaintext params: the caller stores data as is.
   */
  static open(params: EncryptionParams, identity: ObjectIdentity): ObjectCrypto | undefined {
    if (params.kind === 'plaintext') return undefined;
    const root = params.kind === 'sse-c' ? params.key : params.rootKey;
    return new ObjectCrypto(
      storedEncryptionFor(params),
      deriveObjectKey(root, 'data', identity),
      deriveObjectKey(root, 'metadata', identity),
    );
  }

  /** Seals user metadata (and any other per-object secrets the caller chooses) for storage. */
  encryptMetadata(metadata: Record<string, string>): Buffer {
    const plain = Buffer.from(JSON.stringify(metadata), 'utf8');
    try {
      return sealSmall(this.metadataKey, plain, Buffer.from(METADATA_AAD, 'ascii'));
    } finally {
      plain.fill(0);
    }
  }

  /** Opens sealed metadata. A failure means the key is wrong (or the record corrupt): 403 AccessDenied. */
  decryptMetadata(sealed: Uint8Array): Record<string, string> {
    let plain: Buffer;
    try {
      plain = openSmall(this.metadataKey, sealed, Buffer.from(METADATA_AAD, 'ascii'));
    } catch {
      throw S3Errors.accessDenied(MESSAGES.wrongKey);
    }
    try {
      const value: unknown = JSON.parse(plain.toString('utf8'));
      if (value === null || typeof value !== 'object' || Array.isArray(value))
        throw new Error('not an object');
      for (const v of Object.values(value)) if (typeof v !== 'string') throw new Error('not a string map');
      return value as Record<string, string>;
    } catch {
      throw S3Errors.internal('sealed object metadata decrypted but is not a string map');
    } finally {
      plain.fill(0);
    }
  }

  /**
   * The wrong-key check: verifies the request's key against the object's sealed metadata and returns that
   * metadata. Throws 403 AccessDenied on a wrong key (as MinIO does; also for an UploadPart whose key differs
   * from CreateMultipartUpload's, checked against the upload's sealed metadata).
   */
  checkKeyMatches(sealedMetadata: Uint8Array): Record<string, string> {
    return this.decryptMetadata(sealedMetadata);
  }

  /**
   * Seals the data of the object (or of one part) block by block as the model stores it, each block on a
   * worker thread (crypto-pool). The stream's header is known at once, to keep in the segment's record.
   */
  sealer(place?: StreamPlace): ObjectSealer {
    return new ObjectSealer(new StreamSealer(this.dataKey, { context: contextOf(place) }));
  }

  /** Transform: the whole stored ciphertext of the object (or part) → verified plaintext. */
  decryptStream(place?: StreamPlace): Transform {
    return createDecryptStream(this.dataKey, { context: contextOf(place) });
  }

  /**
   * A ciphertext slice from plaintextRangeToCiphertextRange → exactly that plaintext range, verified. Large
   * ranges are decrypted on a worker thread (crypto-pool), which also reads the pieces given as file slices.
   * `cipherOwned` says the memory under every buffer `cipher` yields is the caller's alone, so it can move to
   * that thread without a copy.
   */
  decryptRange(
    cipher: AsyncIterable<Buffer | FileSlice>,
    header: Uint8Array,
    range: CiphertextRange,
    place: StreamPlace | undefined,
    cipherOwned: boolean,
  ): AsyncGenerator<Buffer> {
    const options = { header, range, context: contextOf(place) };
    if (range.length >= OFF_THREAD_MIN_BYTES)
      return decryptOffThread(createSecretKey(this.dataKey), options, cipher, cipherOwned);
    return openRange(new RangeOpener(this.dataKey, options), cipher);
  }

  /** The whole stream format in one buffer, with a fresh header (the bytes a sealer writes for it). */
  encryptBuffer(plaintext: Uint8Array, place?: StreamPlace): Buffer {
    return encryptBuffer(this.dataKey, plaintext, { context: contextOf(place) });
  }

  /** Inverse of encryptBuffer; throws IntegrityError on any tampering. */
  decryptBuffer(sealed: Uint8Array, place?: StreamPlace): Buffer {
    return decryptBuffer(this.dataKey, sealed, { context: contextOf(place) });
  }

  /** Seals an object's manifest; the result is stored (base64) in its encryption record. */
  sealManifest(manifest: ObjectManifest): string {
    const plain = Buffer.from(JSON.stringify(manifest), 'utf8');
    return sealSmall(this.manifestKey, plain, Buffer.from(MANIFEST_AAD, 'ascii')).toString('base64');
  }

  /** The ETag of an SSE-C part: a MAC of its segment (number, sizes, header, blocks) under the manifest key. */
  partEtag(segment: SegmentFacts): string {
    const mac = createHmac('sha256', this.manifestKey).update(PART_ETAG_LABEL, 'ascii').update(Buffer.of(0));
    mac.update(describeSegment(segment));
    return `"${mac.digest().subarray(0, PART_ETAG_SIZE).toString('hex')}"`;
  }

  /** Seals what an SSE-S3 part keeps of its plaintext (MD5 ETag, checksums), bound to its segment. */
  sealPart(etag: string, checksums: Record<string, string>, segment: SegmentFacts): Buffer {
    const seal: PartSeal = { etag, checksums, segment: segmentsDigest([segment]) };
    return sealSmall(
      this.manifestKey,
      Buffer.from(JSON.stringify(seal), 'utf8'),
      Buffer.from(PART_SEAL_AAD, 'ascii'),
    );
  }

  /** Opens a part's seal and checks it belongs to `segment`; anything else is a 500 (the record was changed). */
  openPart(sealed: Uint8Array | undefined, segment: SegmentFacts): PartSeal {
    if (!sealed) throw S3Errors.internal(TAMPERED);
    let seal: PartSeal;
    try {
      const plain = openSmall(this.manifestKey, sealed, Buffer.from(PART_SEAL_AAD, 'ascii'));
      seal = JSON.parse(plain.toString('utf8')) as PartSeal;
    } catch {
      throw S3Errors.internal(TAMPERED);
    }
    if (
      typeof seal.etag !== 'string' ||
      !isStringMap(seal.checksums) ||
      seal.segment !== segmentsDigest([segment])
    ) {
      throw S3Errors.internal(TAMPERED);
    }
    return seal;
  }

  /**
   * Checks an encrypted object record against what its key authenticates, and returns its checksums (sealed
   * in the manifest). Any difference — size, ETag, a segment cut, dropped, moved, repeated or taken from another
   * object — is 500 InternalError, before any byte is read. An encrypted record of version 1 carries nothing
   * to check and is refused the same way: reading it would let whoever can write the metadata strip the
   * manifest from a newer record.
   */
  checkObjectRecord(
    stored: StoredEncryption,
    record: { size: number; etag: string; segments: readonly SegmentFacts[] },
  ): Record<string, string> {
    if (stored.v !== 2) {
      throw S3Errors.internal(
        'This encrypted object was stored in a format without an authenticated size and part list (record version 1); coffre no longer reads it.',
      );
    }
    const plainTotal = record.segments.reduce((n, s) => n + s.plainSize, 0);
    if (plainTotal !== record.size) throw S3Errors.internal(TAMPERED);
    if (stored.manifest !== undefined) {
      const manifest = this.openManifest(stored.manifest);
      if (
        manifest.size !== record.size ||
        manifest.etag !== record.etag ||
        manifest.segments !== segmentsDigest(record.segments)
      ) {
        throw S3Errors.internal(TAMPERED);
      }
      return manifest.checksums;
    }
    if (stored.partsTag !== undefined && stored.kind === 'sse-c') {
      let previous = 0;
      for (const s of record.segments) {
        if (s.partNumber === undefined || s.partNumber <= previous) throw S3Errors.internal(TAMPERED);
        previous = s.partNumber;
      }
      const etags = record.segments.map((s) => this.partEtag(s));
      const expected = partsTag(etags, record.size, multipartEtag(etags));
      if (
        record.etag !== multipartEtag(etags) ||
        !constantTimeEqual(Buffer.from(expected, 'hex'), Buffer.from(stored.partsTag, 'hex'))
      ) {
        throw S3Errors.internal(TAMPERED);
      }
      return {};
    }
    throw S3Errors.internal(TAMPERED);
  }

  private openManifest(sealed: string): ObjectManifest {
    let m: ObjectManifest;
    try {
      const plain = openSmall(
        this.manifestKey,
        Buffer.from(sealed, 'base64'),
        Buffer.from(MANIFEST_AAD, 'ascii'),
      );
      m = JSON.parse(plain.toString('utf8')) as ObjectManifest;
    } catch {
      throw S3Errors.internal(TAMPERED);
    }
    if (
      typeof m !== 'object' ||
      m === null ||
      typeof m.size !== 'number' ||
      typeof m.etag !== 'string' ||
      typeof m.segments !== 'string' ||
      !isStringMap(m.checksums)
    ) {
      throw S3Errors.internal(TAMPERED);
    }
    return m;
  }

  /** Zeroes the derived keys. */
  dispose(): void {
    zeroize(this.dataKey, this.metadataKey, this.manifestKey);
  }
}

function isStringMap(v: unknown): v is Record<string, string> {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.values(v).every((x) => typeof x === 'string')
  );
}

/** An object's data stream sealed block by block (model BlockSealer); blocks hold whole 64 KiB chunks. */
export class ObjectSealer implements BlockSealer {
  readonly unit = CHUNK_SIZE;

  constructor(private readonly stream: StreamSealer) {}

  /** The stream's header (version and salt), which range reads need. */
  get header(): Buffer {
    return this.stream.header;
  }

  sealedSize(plainBytes: number, at: number): number {
    return sealedRunSize(plainBytes, at === 0);
  }

  seal(plain: Buffer, out: Buffer, at: number, last: boolean, named = true) {
    const { streamKey, header } = this.stream;
    return sealOffThread(streamKey, header, plain, out, at / CHUNK_SIZE, last, named);
  }

  sealInline(plain: Buffer): Buffer {
    const out = Buffer.allocUnsafe(sealedRunSize(plain.length, true));
    sealRun(this.stream.streamKey, this.stream.header, plain, 0, true, out);
    return out;
  }
}
