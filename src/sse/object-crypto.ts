// Per-object encryption for the server: from a request's EncryptionParams and the identity of the object
// version it touches, the keys for that object's data and metadata, the streams that encrypt and decrypt its
// data, the sealing of its user metadata, and the small record stored with the object that says which
// encryption it uses.
//
// The stored record holds no key material and no key digest. In particular the SSE-C key MD5 is NOT stored:
// MD5 is fast and unsalted, so a stored digest would let anyone holding the disk test guesses of keys derived
// from passwords offline, and would reveal which objects (across buckets and users) share a key. The
// wrong-key check is instead the authenticated decryption of the object's sealed metadata, which every
// encrypted object has (an empty record is sealed when there is no user metadata).
//
// Identity: data and metadata keys are derived from (root key, bucket id, version id, object key). The same
// identity must be used when writing and when reading, so a multipart upload fixes its version id at
// CreateMultipartUpload and the completed object keeps it; every part is its own stream, bound to its part
// number (partContext) so parts cannot be swapped.

import { createSecretKey } from 'node:crypto';
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
import { deriveObjectKey, zeroize } from '../crypto/keys.js';
import type { ObjectIdentity } from '../crypto/keys.js';
import type { BlockSealer } from '../model/segments.js';
import { readFileSlice, type FileSlice } from '../util/file-slice.js';
import { S3Errors } from '../util/s3-error.js';
import { decryptOffThread, sealOffThread, storedDataError } from './crypto-pool.js';
import type { EncryptionParams } from './params.js';
import { SSE_C_ALGORITHM } from './params.js';

export type { ObjectIdentity } from '../crypto/keys.js';

// ---- Format constants. DO NOT CHANGE: stored objects depend on them. ----
/** Version of the StoredEncryption record. */
export const STORED_ENCRYPTION_VERSION = 1;
/** Associated data of sealed user metadata (ASCII). */
export const METADATA_AAD = 'coffre/object-metadata/v1';
/** Stream context of a multipart part: these ASCII bytes followed by the part number as u32 big-endian. */
export const PART_CONTEXT_LABEL = 'part';
// ---- end of format constants ----

/** What is stored with an object (or a multipart upload) about its encryption. No secrets. */
export type StoredEncryption =
  | { v: 1; kind: 'plaintext' }
  | { v: 1; kind: 'sse-c'; alg: 'AES256' }
  /** Slot for SSE-S3: keyId names the keyring's master key that the object's keys derive from. */
  | { v: 1; kind: 'sse-s3'; alg: 'AES256'; keyId: string };

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

/** The record to store for an object written with `params`. */
export function storedEncryptionFor(params: EncryptionParams): StoredEncryption {
  switch (params.kind) {
    case 'plaintext':
      return { v: 1, kind: 'plaintext' };
    case 'sse-c':
      return { v: 1, kind: 'sse-c', alg: SSE_C_ALGORITHM };
    case 'sse-s3':
      return { v: 1, kind: 'sse-s3', alg: 'AES256', keyId: params.keyId };
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
  if (r === null || typeof r !== 'object' || r.v !== STORED_ENCRYPTION_VERSION) {
    throw S3Errors.internal(`stored encryption record has unsupported version ${String(r?.v)}`);
  }
  if (r.kind === 'plaintext') return { v: 1, kind: 'plaintext' };
  if (r.kind === 'sse-c' && r.alg === SSE_C_ALGORITHM) return { v: 1, kind: 'sse-c', alg: 'AES256' };
  if (r.kind === 'sse-s3' && r.alg === 'AES256' && typeof r.keyId === 'string') {
    return { v: 1, kind: 'sse-s3', alg: 'AES256', keyId: r.keyId };
  }
  throw S3Errors.internal('stored encryption record has an unknown kind');
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
  private constructor(
    readonly stored: StoredEncryption,
    private readonly dataKey: Buffer,
    private readonly metadataKey: Buffer,
  ) {}

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

  /** Zeroes the derived keys. */
  dispose(): void {
    zeroize(this.dataKey, this.metadataKey);
  }
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

  seal(plain: Buffer, out: Buffer, at: number, last: boolean) {
    const { streamKey, header } = this.stream;
    return sealOffThread(streamKey, header, plain, out, at / CHUNK_SIZE, last);
  }

  sealInline(plain: Buffer): Buffer {
    const out = Buffer.allocUnsafe(sealedRunSize(plain.length, true));
    sealRun(this.stream.streamKey, this.stream.header, plain, 0, true, out);
    return out;
  }
}
