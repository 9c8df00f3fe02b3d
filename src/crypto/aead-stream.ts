// Chunked authenticated encryption for object data at rest (format "coffre aead-stream", version 1).
//
// A ciphertext stream is a 17-byte header (version byte, random salt) followed by chunks. Each chunk is up to
// 64 KiB of plaintext sealed with AES-256-GCM under a per-stream key, followed by its 16-byte tag. The nonce
// carries the chunk index and a final-chunk flag, so a reordered, dropped, duplicated or truncated chunk fails
// authentication, and a stream cut at a chunk boundary is detected because its last chunk was not sealed as
// final. Nothing is ever released from a decrypting stream before its chunk's tag has been verified.
//
// Why a per-stream salt: the caller's key is derived from (root key, bucket, version, object key), but the same
// identity can legitimately be written twice (a retried PUT, a re-uploaded multipart part). A fresh random salt
// mixed into the stream key means a (key, nonce) pair is never reused even then, which GCM requires absolutely.
//
// How this sits on the block store: the server encrypts the plaintext stream and cuts the *ciphertext* into
// ~1 MiB blocks named by hash. Chunk boundaries are at fixed ciphertext offsets (see chunkOffset), so a plaintext
// range maps to a ciphertext range covering only the chunks it touches (plaintextRangeToCiphertextRange); the
// server reads those bytes from whichever blocks hold them and feeds them to createRangeDecryptStream together
// with the stream's 17-byte header (kept in object metadata, or read from the first block).
//
// The byte layout is specified in docs/formats-sse.md for anyone writing a second reader.

import { createCipheriv, createDecipheriv, createHmac, createSecretKey, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { KEY_SIZE, lengthPrefixed } from './keys.js';

// ---- Format constants for stream version 1. DO NOT CHANGE: stored objects depend on every value here. ----
// A different chunk size, tag size or nonce layout is a new format and needs a new version byte.
/** First byte of a version-1 stream. */
export const STREAM_VERSION = 0x01;
/** Plaintext bytes per chunk; every chunk but the last is exactly this long. */
export const CHUNK_SIZE = 64 * 1024;
/** AES-GCM authentication tag appended to each chunk. */
export const TAG_SIZE = 16;
/** Random bytes in the header, mixed into the stream key. */
export const SALT_SIZE = 16;
/** version byte ‖ salt. */
export const HEADER_SIZE = 1 + SALT_SIZE;
/** Bytes of a full (non-final) chunk on disk. */
export const SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE;
/** Label for the stream-key derivation (ASCII, followed by one 0x00 byte). */
export const STREAM_KEY_LABEL = 'coffre/aead-stream/v1';
/** GCM nonce: flags in byte 3, chunk index as u64 big-endian in bytes 4..11, bytes 0..2 zero. */
const NONCE_SIZE = 12;
const NONCE_FLAGS_OFFSET = 3;
const NONCE_INDEX_OFFSET = 4;
/** Set in the nonce's flags byte for the last chunk of a stream, and only for it. */
const FINAL_CHUNK_FLAG = 0x01;
// ---- end of format constants ----

/** Version byte of a sealSmall blob. DO NOT CHANGE: sealed metadata depends on it. */
export const SMALL_VERSION = 0x01;
const SMALL_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE;

const ALGORITHM = 'aes-256-gcm';
const MAX_CHUNK_INDEX = Number.MAX_SAFE_INTEGER;

/** Ciphertext failed authentication or is malformed: wrong key, corruption, truncation or reordering. */
export class IntegrityError extends Error {
  readonly code = 'ERR_COFFRE_INTEGRITY';
  constructor(message: string) {
    super(message);
    this.name = 'IntegrityError';
  }
}

export interface StreamOptions {
  /**
   * Bytes bound to the stream (mixed into the stream key), e.g. a multipart part number, so a stream cannot be
   * moved to another position without failing authentication. Decryption must pass the same bytes.
   */
  context?: Uint8Array;
}

/** An encrypting Transform; `header` is known at construction and is also the first output bytes. */
export interface EncryptStream extends Transform {
  /** The stream's 17-byte header, to keep in object metadata so range reads need not fetch it. */
  readonly header: Buffer;
}

/** The ciphertext slice that holds a plaintext range, and how to cut the plaintext out of it. */
export interface CiphertextRange {
  /** First ciphertext byte to read (a chunk boundary, always ≥ HEADER_SIZE). */
  cipherStart: number;
  /** One past the last ciphertext byte to read (the end of the last chunk touched). */
  cipherEnd: number;
  /** Index of the chunk at cipherStart. */
  firstChunkIndex: number;
  /** Index of the last chunk touched (first - 1 when the range is empty). */
  lastChunkIndex: number;
  /** Index of the stream's final chunk. */
  finalChunkIndex: number;
  /** Plaintext bytes to drop from the start of the first chunk. */
  skipBytes: number;
  /** Plaintext bytes the range yields. */
  length: number;
  /** Plaintext size of the whole stream. */
  plainSize: number;
}

export interface RangeDecryptOptions extends StreamOptions {
  /** The stream's header (first HEADER_SIZE bytes of the ciphertext). */
  header: Uint8Array;
  /** What plaintextRangeToCiphertextRange returned; the input must be exactly cipherStart..cipherEnd. */
  range: CiphertextRange;
}

// ---------------------------------------------------------------------------------------------------------
// Sizes and offsets

function checkSize(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`${name} must be a non-negative integer, got ${n}`);
}

/** Number of chunks in a stream of `plainSize` bytes: an empty stream still has one (empty, final) chunk. */
export function chunkCount(plainSize: number): number {
  checkSize('plainSize', plainSize);
  return plainSize === 0 ? 1 : Math.ceil(plainSize / CHUNK_SIZE);
}

/** Ciphertext size (header included) of a stream of `plainSize` plaintext bytes. */
export function encryptedSize(plainSize: number): number {
  return HEADER_SIZE + plainSize + chunkCount(plainSize) * TAG_SIZE;
}

/** Inverse of encryptedSize; throws IntegrityError if no plaintext size encrypts to `cipherSize`. */
export function plaintextSize(cipherSize: number): number {
  checkSize('cipherSize', cipherSize);
  const body = cipherSize - HEADER_SIZE;
  if (body < TAG_SIZE)
    throw new IntegrityError(`ciphertext of ${cipherSize} bytes is too short to be a stream`);
  const full = Math.floor((body - 1) / SEALED_CHUNK_SIZE);
  const lastSealed = body - full * SEALED_CHUNK_SIZE;
  const plain = full * CHUNK_SIZE + lastSealed - TAG_SIZE;
  if (lastSealed < TAG_SIZE || (full > 0 && lastSealed === TAG_SIZE) || encryptedSize(plain) !== cipherSize) {
    throw new IntegrityError(`no stream has a ciphertext of ${cipherSize} bytes`);
  }
  return plain;
}

/** Ciphertext offset at which chunk `index` starts. */
export function chunkOffset(index: number): number {
  return HEADER_SIZE + index * SEALED_CHUNK_SIZE;
}

/**
 * Maps the plaintext range [start, end) — end exclusive, like Buffer.subarray; an S3 `bytes=a-b` is
 * (a, b + 1) — of a stream of `plainSize` bytes to the ciphertext bytes that hold it.
 */
export function plaintextRangeToCiphertextRange(
  start: number,
  end: number,
  plainSize: number,
): CiphertextRange {
  checkSize('start', start);
  checkSize('end', end);
  checkSize('plainSize', plainSize);
  if (start > end || end > plainSize) {
    throw new RangeError(`range [${start}, ${end}) does not fit in ${plainSize} bytes`);
  }
  const finalChunkIndex = chunkCount(plainSize) - 1;
  const firstChunkIndex = Math.floor(start / CHUNK_SIZE);
  if (start === end) {
    const at = chunkOffset(firstChunkIndex);
    return {
      cipherStart: at,
      cipherEnd: at,
      firstChunkIndex,
      lastChunkIndex: firstChunkIndex - 1,
      finalChunkIndex,
      skipBytes: 0,
      length: 0,
      plainSize,
    };
  }
  const lastChunkIndex = Math.floor((end - 1) / CHUNK_SIZE);
  const lastPlain = lastChunkIndex === finalChunkIndex ? plainSize - lastChunkIndex * CHUNK_SIZE : CHUNK_SIZE;
  return {
    cipherStart: chunkOffset(firstChunkIndex),
    cipherEnd: chunkOffset(lastChunkIndex) + lastPlain + TAG_SIZE,
    firstChunkIndex,
    lastChunkIndex,
    finalChunkIndex,
    skipBytes: start - firstChunkIndex * CHUNK_SIZE,
    length: end - start,
    plainSize,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Keys and nonces

function checkKey(key: Uint8Array | KeyObject): void {
  const size = key instanceof Uint8Array ? key.length : key.symmetricKeySize;
  if (size !== KEY_SIZE) throw new RangeError(`key must be ${KEY_SIZE} bytes, got ${size}`);
}

/**
 * Stream key = HMAC-SHA256(key, "coffre/aead-stream/v1" ‖ 0x00 ‖ version ‖ salt ‖ lp(context)).
 * Returned as a KeyObject: OpenSSL then skips re-importing the key for every chunk (about 30 % faster at 64 KiB),
 * and the intermediate Buffer is zeroed here.
 */
function deriveStreamKey(
  key: Uint8Array | KeyObject,
  header: Uint8Array,
  context: Uint8Array | undefined,
): KeyObject {
  const mac = createHmac('sha256', key);
  mac.update(STREAM_KEY_LABEL, 'ascii');
  mac.update(Buffer.of(0));
  mac.update(header);
  mac.update(lengthPrefixed(context ?? new Uint8Array(0)));
  const raw = mac.digest();
  const keyObject = createSecretKey(raw);
  raw.fill(0);
  return keyObject;
}

/**
 * Checks that `header` starts with a stream header this reader understands (version byte, full length);
 * throws IntegrityError otherwise. Useful to validate a header kept in object metadata.
 */
export function checkStreamHeader(header: Uint8Array): void {
  if (header.length < HEADER_SIZE) throw new IntegrityError('ciphertext ends inside the stream header');
  if (header[0] !== STREAM_VERSION) {
    throw new IntegrityError(
      `unsupported encrypted stream version ${header[0]} (this reader knows ${STREAM_VERSION})`,
    );
  }
}

/** Writes the nonce for chunk `index` into `nonce` (reused across chunks: createCipheriv copies it). */
function setNonce(nonce: Buffer, index: number, final: boolean): Buffer {
  if (index > MAX_CHUNK_INDEX) throw new RangeError('stream has too many chunks');
  nonce[NONCE_FLAGS_OFFSET] = final ? FINAL_CHUNK_FLAG : 0;
  nonce.writeUInt32BE(Math.floor(index / 0x1_0000_0000), NONCE_INDEX_OFFSET);
  nonce.writeUInt32BE(index >>> 0, NONCE_INDEX_OFFSET + 4);
  return nonce;
}

// ---------------------------------------------------------------------------------------------------------
// A byte queue that hands out contiguous slices without copying when a slice lies within one input buffer.

class ByteQueue {
  private bufs: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.bufs.push(b);
    this.length += b.length;
  }

  /** Removes the first `n` bytes (n ≤ length) and returns them as views of the queued buffers, never copied. */
  takeViews(n: number): Buffer[] {
    this.length -= n;
    const out: Buffer[] = [];
    while (n > 0) {
      const b = this.bufs[0]!;
      if (b.length <= n) {
        out.push(b);
        this.bufs.shift();
        n -= b.length;
      } else {
        out.push(b.subarray(0, n));
        this.bufs[0] = b.subarray(n);
        n = 0;
      }
    }
    return out;
  }

  /** Removes and returns the first `n` bytes (n ≤ length), contiguous: copied only if they span buffers. */
  take(n: number): Buffer {
    this.length -= n;
    const first = this.bufs[0];
    if (first === undefined || n === 0) return Buffer.alloc(0);
    if (first.length >= n) {
      if (first.length === n) this.bufs.shift();
      else this.bufs[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const b = this.bufs[0]!;
      const k = Math.min(b.length, n - off);
      b.copy(out, off, 0, k);
      off += k;
      if (k === b.length) this.bufs.shift();
      else this.bufs[0] = b.subarray(k);
    }
    return out;
  }
}

function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('encrypted streams carry bytes only (got a non-Buffer chunk)');
}

// ---------------------------------------------------------------------------------------------------------
// Encryption

/** Sealed chunks an encrypting stream holds for a slow reader (256 KiB). */
const ENCRYPT_CHUNKS_BUFFERED = 4;

class Encryptor extends Transform implements EncryptStream {
  readonly header: Buffer;
  private readonly key: KeyObject;
  private readonly nonce = Buffer.alloc(NONCE_SIZE);
  private readonly pending = new ByteQueue();
  private index = 0;

  constructor(key: Uint8Array, opts: StreamOptions) {
    // Object mode on the output: each chunk leaves as its body and its tag, and a reader takes them one by one
    // instead of having them joined into a copy first (the block writer copies them once, into its block).
    super({ readableObjectMode: true, readableHighWaterMark: 2 * ENCRYPT_CHUNKS_BUFFERED });
    this.header = Buffer.allocUnsafe(HEADER_SIZE);
    this.header[0] = STREAM_VERSION;
    randomBytes(SALT_SIZE).copy(this.header, 1);
    checkKey(key);
    this.key = deriveStreamKey(key, this.header, opts.context);
    this.push(Buffer.from(this.header));
  }

  override _transform(chunk: unknown, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.pending.push(asBuffer(chunk));
      // Hold back the last full chunk until a further byte proves it is not the final one.
      while (this.pending.length > CHUNK_SIZE) this.seal(this.pending.take(CHUNK_SIZE), false);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      this.seal(this.pending.take(this.pending.length), true);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  private seal(plain: Buffer, final: boolean): void {
    const cipher = createCipheriv(ALGORITHM, this.key, setNonce(this.nonce, this.index, final));
    this.index++;
    const body = cipher.update(plain);
    cipher.final(); // GCM emits nothing here; it finishes the tag.
    if (body.length > 0) this.push(body);
    this.push(cipher.getAuthTag());
  }
}

/** Seals one chunk into `out` at `at` (body then tag); returns the offset after it. */
function sealChunkInto(
  key: KeyObject,
  nonce: Buffer,
  index: number,
  final: boolean,
  plain: Uint8Array,
  out: Buffer,
  at: number,
): number {
  const cipher = createCipheriv(ALGORITHM, key, setNonce(nonce, index, final));
  at += cipher.update(plain).copy(out, at);
  cipher.final(); // GCM emits nothing here; it finishes the tag.
  return at + cipher.getAuthTag().copy(out, at);
}

/**
 * Returns a Transform that turns plaintext into a version-1 ciphertext stream (header first). Written buffers
 * are held, not copied, until their chunk is sealed, as Node streams allow: do not modify a buffer after writing it.
 */
export function createEncryptStream(key: Uint8Array, opts: StreamOptions = {}): EncryptStream {
  return new Encryptor(key, opts);
}

// ---------------------------------------------------------------------------------------------------------
// Sealing in runs of whole chunks: the server seals each stored block on its own, on a worker thread, into
// memory it reuses. The bytes are exactly those of an EncryptStream with the same header and key.

/** A stream to be sealed run by run: its header (fresh salt) and stream key, fixed at creation. */
export class StreamSealer {
  readonly header: Buffer;
  /** A KeyObject, so that the key reaches a worker thread without passing through a JavaScript buffer. */
  readonly streamKey: KeyObject;

  constructor(key: Uint8Array, opts: StreamOptions = {}) {
    checkKey(key);
    this.header = Buffer.allocUnsafe(HEADER_SIZE);
    this.header[0] = STREAM_VERSION;
    randomBytes(SALT_SIZE).copy(this.header, 1);
    this.streamKey = deriveStreamKey(key, this.header, opts.context);
  }
}

/** Bytes sealRun writes for `plainBytes` of plaintext (the header included when the run starts the stream). */
export function sealedRunSize(plainBytes: number, startsStream: boolean): number {
  return (startsStream ? HEADER_SIZE : 0) + plainBytes + chunkCount(plainBytes) * TAG_SIZE;
}

/**
 * Seals the plaintext run that starts at chunk `firstChunk` into `out` from offset 0, preceded by the stream's
 * `header` when firstChunk is 0, and returns the bytes written (sealedRunSize). A run that does not end the
 * stream holds whole chunks only; one that does (`endsStream`) seals its last chunk as final, and may be empty
 * only if it is the whole stream.
 */
export function sealRun(
  streamKey: KeyObject,
  header: Uint8Array,
  plain: Uint8Array,
  firstChunk: number,
  endsStream: boolean,
  out: Buffer,
): number {
  if (!endsStream && (plain.length === 0 || plain.length % CHUNK_SIZE !== 0)) {
    throw new RangeError(`a run inside a stream holds whole chunks (got ${plain.length} bytes)`);
  }
  if (plain.length === 0 && firstChunk !== 0)
    throw new RangeError('only an empty stream ends with an empty run');
  const size = sealedRunSize(plain.length, firstChunk === 0);
  if (out.length < size) throw new RangeError(`output holds ${out.length} bytes, the run needs ${size}`);
  let at = 0;
  if (firstChunk === 0) {
    checkStreamHeader(header);
    out.set(header.subarray(0, HEADER_SIZE));
    at = HEADER_SIZE;
  }
  const nonce = Buffer.alloc(NONCE_SIZE);
  const chunks = chunkCount(plain.length);
  for (let i = 0; i < chunks; i++) {
    const body = plain.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE);
    at = sealChunkInto(streamKey, nonce, firstChunk + i, endsStream && i === chunks - 1, body, out, at);
  }
  return at;
}

// ---------------------------------------------------------------------------------------------------------
// Decryption

/**
 * Verifies and decrypts one sealed chunk given as consecutive views (body ‖ tag, possibly split anywhere).
 * Plaintext is returned only after the tag has verified; on failure it is zeroed and an IntegrityError thrown.
 */
function openChunk(key: KeyObject, nonce: Buffer, index: number, final: boolean, sealed: Buffer[]): Buffer[] {
  const decipher = createDecipheriv(ALGORITHM, key, setNonce(nonce, index, final), {
    authTagLength: TAG_SIZE,
  });
  // Split off the tag (the last TAG_SIZE bytes), which may straddle two views.
  let tagLeft = TAG_SIZE;
  let bodyViews = sealed.length;
  const tagParts: Buffer[] = [];
  while (tagLeft > 0) {
    const last = sealed[bodyViews - 1]!;
    if (last.length <= tagLeft) {
      tagParts.unshift(last);
      tagLeft -= last.length;
      bodyViews--;
    } else {
      tagParts.unshift(last.subarray(last.length - tagLeft));
      sealed[bodyViews - 1] = last.subarray(0, last.length - tagLeft);
      tagLeft = 0;
    }
  }
  decipher.setAuthTag(tagParts.length === 1 ? tagParts[0]! : Buffer.concat(tagParts));
  const plain: Buffer[] = [];
  for (let i = 0; i < bodyViews; i++) {
    const p = decipher.update(sealed[i]!);
    if (p.length > 0) plain.push(p);
  }
  try {
    decipher.final();
  } catch {
    for (const p of plain) p.fill(0);
    throw new IntegrityError(
      `encrypted chunk ${index} failed authentication (wrong key, or data corrupted, truncated or reordered)`,
    );
  }
  return plain;
}

function sizeOf(views: Buffer[]): number {
  let n = 0;
  for (const v of views) n += v.length;
  return n;
}

class Decryptor extends Transform {
  private key: KeyObject | undefined;
  private readonly nonce = Buffer.alloc(NONCE_SIZE);
  private readonly pending = new ByteQueue();
  private index = 0;

  // A copy held by OpenSSL, so the caller may zero its buffer before the header (and so the stream key) arrives.
  private readonly rootKey: KeyObject;

  constructor(
    key: Uint8Array,
    private readonly opts: StreamOptions,
  ) {
    super();
    checkKey(key);
    this.rootKey = createSecretKey(key);
  }

  override _transform(chunk: unknown, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.pending.push(asBuffer(chunk));
      if (this.key === undefined) {
        if (this.pending.length < HEADER_SIZE) return done();
        const header = this.pending.take(HEADER_SIZE);
        checkStreamHeader(header);
        this.key = deriveStreamKey(this.rootKey, header, this.opts.context);
      }
      // A full sealed chunk is final only if nothing follows it, so wait for one byte more.
      while (this.pending.length > SEALED_CHUNK_SIZE)
        this.open(this.pending.takeViews(SEALED_CHUNK_SIZE), false);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      if (this.key === undefined) throw new IntegrityError('ciphertext ends inside the stream header');
      if (this.pending.length < TAG_SIZE) {
        throw new IntegrityError(`ciphertext truncated: chunk ${this.index} is missing or incomplete`);
      }
      const plain = this.open(this.pending.takeViews(this.pending.length), true);
      // The encryptor writes an empty final chunk only for an empty stream.
      if (plain === 0 && this.index > 1) throw new IntegrityError('empty final chunk after non-empty chunks');
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  private open(sealed: Buffer[], final: boolean): number {
    const plain = openChunk(this.key!, this.nonce, this.index, final, sealed);
    this.index++;
    for (const p of plain) this.push(p);
    return sizeOf(plain);
  }
}

/**
 * Returns a Transform that verifies and decrypts a whole version-1 stream. Any failure — wrong key, flipped
 * byte, truncation (even at a chunk boundary), reordering, appended bytes — is an IntegrityError; bytes
 * already emitted were each authenticated, but a consumer must treat the whole output as void on error.
 */
export function createDecryptStream(key: Uint8Array, opts: StreamOptions = {}): Transform {
  return new Decryptor(key, opts);
}

/**
 * Range decryption without a stream around it: ciphertext bytes of a slice in (any split), verified plaintext of
 * exactly the requested range out. Used by the RangeDecryptor Transform and by the off-thread decryptor, which
 * cannot carry a stream across threads. `key` may be a KeyObject, so the key can reach a worker thread without
 * passing through a JavaScript buffer.
 */
export class RangeOpener {
  private readonly key: KeyObject;
  private readonly nonce = Buffer.alloc(NONCE_SIZE);
  private readonly pending = new ByteQueue();
  private readonly range: CiphertextRange;
  private index: number;
  private skip: number;
  private remaining: number;

  constructor(key: Uint8Array | KeyObject, opts: RangeDecryptOptions) {
    checkStreamHeader(opts.header);
    const header = opts.header.subarray(0, HEADER_SIZE);
    this.range = opts.range;
    checkKey(key);
    this.key = deriveStreamKey(key, header, opts.context);
    this.index = opts.range.firstChunkIndex;
    this.skip = opts.range.skipBytes;
    this.remaining = opts.range.length;
  }

  private sealedLength(index: number): number {
    if (index !== this.range.finalChunkIndex) return SEALED_CHUNK_SIZE;
    return this.range.plainSize - index * CHUNK_SIZE + TAG_SIZE;
  }

  /**
   * Takes the next ciphertext bytes; returns the plaintext of every chunk they complete (each verified), in
   * one buffer of its own (empty when none completes). Each chunk's plaintext is copied into it as soon as
   * its tag has verified, while it is still in the processor's cache: copying a whole block's worth of chunk
   * buffers afterwards cost as much as the decryption.
   */
  write(data: Buffer): Buffer {
    this.pending.push(data);
    const out = Buffer.allocUnsafe(this.plaintextReady());
    let at = 0;
    try {
      while (this.index <= this.range.lastChunkIndex) {
        const need = this.sealedLength(this.index);
        if (this.pending.length < need) break;
        at = this.openNext(this.pending.takeViews(need), out, at);
      }
      if (this.index > this.range.lastChunkIndex && this.pending.length > 0) {
        throw new IntegrityError('more ciphertext than the requested range covers');
      }
    } catch (err) {
      out.fill(0);
      throw err;
    }
    return out;
  }

  /**
   * As write(), but the plaintext is written over `data` itself, from its start, and returned as a view of it:
   * no output buffer to allocate, for a caller that owns `data` and hands the result on. Bytes of an
   * unfinished chunk at its end are copied aside. When bytes of an earlier piece are still waiting (a chunk
   * straddling two pieces), this is write().
   */
  writeInPlace(data: Buffer): Buffer {
    if (this.pending.length > 0) return this.write(data);
    let pos = 0;
    let at = 0;
    try {
      while (this.index <= this.range.lastChunkIndex) {
        const need = this.sealedLength(this.index);
        if (data.length - pos < need) break;
        // The chunk's plaintext lands at or before where its ciphertext began, never on a later chunk.
        at = this.openNext([data.subarray(pos, pos + need)], data, at);
        pos += need;
      }
      if (pos < data.length) {
        if (this.index > this.range.lastChunkIndex) {
          throw new IntegrityError('more ciphertext than the requested range covers');
        }
        this.pending.push(Buffer.from(data.subarray(pos)));
      }
    } catch (err) {
      data.fill(0, 0, at);
      throw err;
    }
    return data.subarray(0, at);
  }

  /**
   * Opens the next chunk of the range from `sealed` (its whole sealed bytes, in views) and copies the part of
   * its plaintext the range keeps into `out` at `at`; returns the offset after it.
   */
  private openNext(sealed: Buffer[], out: Buffer, at: number): number {
    const final = this.index === this.range.finalChunkIndex;
    const plain = openChunk(this.key, this.nonce, this.index, final, sealed);
    this.index++;
    for (const p of plain) {
      const from = Math.min(this.skip, p.length);
      const to = Math.min(p.length, from + this.remaining);
      this.skip -= from;
      this.remaining -= to - from;
      at += p.copy(out, at, from, to);
    }
    return at;
  }

  /** Plaintext bytes of the range that the chunks now complete in `pending` will yield. */
  private plaintextReady(): number {
    let available = this.pending.length;
    let skip = this.skip;
    let remaining = this.remaining;
    let ready = 0;
    for (let index = this.index; index <= this.range.lastChunkIndex; index++) {
      const need = this.sealedLength(index);
      if (available < need) break;
      available -= need;
      const plain = need - TAG_SIZE;
      const dropped = Math.min(skip, plain);
      skip -= dropped;
      const kept = Math.min(plain - dropped, remaining);
      remaining -= kept;
      ready += kept;
    }
    return ready;
  }

  /** The slice has ended: throws IntegrityError unless every chunk of the range was opened. */
  end(): void {
    if (this.index <= this.range.lastChunkIndex) {
      throw new IntegrityError(`ciphertext range truncated: chunk ${this.index} is missing or incomplete`);
    }
  }
}

class RangeDecryptor extends Transform {
  private readonly opener: RangeOpener;

  constructor(key: Uint8Array, opts: RangeDecryptOptions) {
    super();
    this.opener = new RangeOpener(key, opts);
  }

  override _transform(chunk: unknown, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      const plain = this.opener.write(asBuffer(chunk));
      if (plain.length > 0) this.push(plain);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      this.opener.end();
      done();
    } catch (err) {
      done(err as Error);
    }
  }
}

/**
 * Returns a Transform that decrypts the ciphertext slice [range.cipherStart, range.cipherEnd) — which starts at
 * a chunk boundary — and emits exactly the plaintext range it was computed for. Only the chunks in the slice are
 * authenticated; the final-chunk flag is checked when the slice reaches the stream's end.
 */
export function createRangeDecryptStream(key: Uint8Array, opts: RangeDecryptOptions): Transform {
  return new RangeDecryptor(key, opts);
}

// ---------------------------------------------------------------------------------------------------------
// Whole buffers in the same stream format (small objects stored inline, tests)

/** Encrypts a whole buffer into exactly the bytes createEncryptStream would produce (with a fresh salt). */
export function encryptBuffer(key: Uint8Array, plaintext: Uint8Array, opts: StreamOptions = {}): Buffer {
  const sealer = new StreamSealer(key, opts);
  const out = Buffer.allocUnsafe(encryptedSize(plaintext.length));
  sealRun(sealer.streamKey, sealer.header, plaintext, 0, true, out);
  return out;
}

/** Verifies and decrypts a whole stream held in one buffer; throws IntegrityError like createDecryptStream. */
export function decryptBuffer(key: Uint8Array, sealed: Uint8Array, opts: StreamOptions = {}): Buffer {
  checkKey(key);
  checkStreamHeader(sealed);
  const size = plaintextSize(sealed.length);
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const streamKey = deriveStreamKey(key, bytes.subarray(0, HEADER_SIZE), opts.context);
  const nonce = Buffer.alloc(NONCE_SIZE);
  const out = Buffer.allocUnsafe(size);
  const n = chunkCount(size);
  let at = 0;
  try {
    for (let i = 0; i < n; i++) {
      const start = chunkOffset(i);
      const sealedChunk = bytes.subarray(start, Math.min(start + SEALED_CHUNK_SIZE, bytes.length));
      for (const p of openChunk(streamKey, nonce, i, i === n - 1, [sealedChunk])) at += p.copy(out, at);
    }
  } catch (err) {
    out.fill(0);
    throw err;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// One-shot sealing for small values (user metadata)

/**
 * Seals a small value: `0x01 ‖ nonce(12, random) ‖ AES-256-GCM(key, nonce, plaintext, aad) ‖ tag(16)`.
 * Random nonces are safe here because each key seals only a handful of values (per-object keys).
 */
export function sealSmall(
  key: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array = new Uint8Array(0),
): Buffer {
  checkKey(key);
  const nonce = randomBytes(NONCE_SIZE);
  const cipher = createCipheriv(ALGORITHM, key, nonce);
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([Buffer.of(SMALL_VERSION), nonce, body, cipher.getAuthTag()]);
}

/** Opens a sealSmall blob; throws IntegrityError on a wrong key, wrong aad, corruption or unknown version. */
export function openSmall(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array = new Uint8Array(0)): Buffer {
  checkKey(key);
  if (sealed.length < SMALL_OVERHEAD) throw new IntegrityError('sealed value is too short');
  if (sealed[0] !== SMALL_VERSION) throw new IntegrityError(`unsupported sealed value version ${sealed[0]}`);
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const nonce = buf.subarray(1, 1 + NONCE_SIZE);
  const decipher = createDecipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_SIZE });
  decipher.setAAD(aad);
  decipher.setAuthTag(buf.subarray(buf.length - TAG_SIZE));
  const plain = decipher.update(buf.subarray(1 + NONCE_SIZE, buf.length - TAG_SIZE));
  try {
    decipher.final();
  } catch {
    plain.fill(0);
    throw new IntegrityError('sealed value failed authentication (wrong key or corrupted)');
  }
  return plain;
}
