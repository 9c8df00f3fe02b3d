// Body integrity for S3 uploads: Content-MD5, x-amz-content-sha256 and the x-amz-checksum-* family, computed
// while the body streams through and checked when it ends. The digests computed on the way are kept so the
// handler can answer with an ETag and x-amz-checksum-* headers without hashing the data a second time.

import { createHash, type Hash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import * as os from 'node:os';
import * as zlib from 'node:zlib';
import { S3Error, S3Errors } from '../../util/s3-error.js';

export const CHECKSUM_ALGORITHMS = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

// Digest sizes in bytes; a checksum header's value is the base64 of exactly this many big-endian bytes.
const DIGEST_BYTES: Record<ChecksumAlgorithm, number> = {
  CRC32: 4,
  CRC32C: 4,
  CRC64NVME: 8,
  SHA1: 20,
  SHA256: 32,
};

/** `x-amz-checksum-crc32` for `CRC32`, and so on. */
export function checksumHeaderName(algorithm: ChecksumAlgorithm): string {
  return `x-amz-checksum-${algorithm.toLowerCase()}`;
}

/** Reads an algorithm from `CRC32`, `crc32` or `x-amz-checksum-crc32`; undefined when it is none of ours. */
export function parseChecksumAlgorithm(name: string): ChecksumAlgorithm | undefined {
  const bare = name
    .toLowerCase()
    .replace(/^x-amz-checksum-/, '')
    .toUpperCase();
  return (CHECKSUM_ALGORITHMS as readonly string[]).includes(bare) ? (bare as ChecksumAlgorithm) : undefined;
}

/** An incremental digest; `digest()` returns the big-endian bytes that S3 base64-encodes. */
export interface Digester {
  update(data: Uint8Array): void;
  digest(): Buffer;
}

// ---- CRC-32 (IEEE): zlib's native implementation when this Node has it, a table otherwise.

const nativeCrc32: ((data: Uint8Array, value?: number) => number) | undefined =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? zlib.crc32 : undefined;

const CRC32_TABLE = reflectedTable32(0xedb88320);
const CRC32C_TABLES = slicingTables32(0x82f63b78);

function reflectedTable32(poly: number): Int32Array {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    table[n] = c;
  }
  return table;
}

// Slicing-by-8: eight tables of 256 entries, table k giving the CRC of a byte followed by k zero bytes, so eight
// input bytes are folded per step instead of one.
function slicingTables32(poly: number): Int32Array {
  const tables = new Int32Array(8 * 256);
  tables.set(reflectedTable32(poly));
  for (let k = 1; k < 8; k++) {
    for (let n = 0; n < 256; n++) {
      const prev = tables[(k - 1) * 256 + n];
      tables[k * 256 + n] = (prev >>> 8) ^ tables[prev & 0xff];
    }
  }
  return tables;
}

/** CRC-32 (IEEE 802.3, as zlib) of `data`, continuing from `crc` (0 to start). */
export function crc32(data: Uint8Array, crc = 0): number {
  if (nativeCrc32) return nativeCrc32(data, crc);
  let c = ~crc;
  for (let i = 0; i < data.length; i++) c = (c >>> 8) ^ CRC32_TABLE[(c ^ data[i]) & 0xff];
  return ~c >>> 0;
}

// Reading the input as 32-bit words halves the loads of the inner loop; Int32Array uses the platform's byte
// order, so the word path is taken only on little-endian machines (all Node targets in practice).
const LITTLE_ENDIAN = os.endianness() === 'LE';
const T0 = CRC32C_TABLES.subarray(0, 256);
const T1 = CRC32C_TABLES.subarray(256, 512);
const T2 = CRC32C_TABLES.subarray(512, 768);
const T3 = CRC32C_TABLES.subarray(768, 1024);
const T4 = CRC32C_TABLES.subarray(1024, 1280);
const T5 = CRC32C_TABLES.subarray(1280, 1536);
const T6 = CRC32C_TABLES.subarray(1536, 1792);
const T7 = CRC32C_TABLES.subarray(1792, 2048);

/** CRC-32C (Castagnoli) of `data`, continuing from `crc` (0 to start). */
export function crc32c(data: Uint8Array, crc = 0): number {
  let c = ~crc;
  let i = 0;
  const n = data.length;
  if (LITTLE_ENDIAN && n >= 64) {
    while (((data.byteOffset + i) & 3) !== 0) c = (c >>> 8) ^ T0[(c ^ data[i++]) & 0xff];
    const pairs = (n - i) >>> 3;
    const words = new Int32Array(data.buffer, data.byteOffset + i, pairs * 2);
    for (let j = 0; j < words.length; j += 2) {
      const a = c ^ words[j];
      const b = words[j + 1];
      c =
        T7[a & 0xff] ^
        T6[(a >>> 8) & 0xff] ^
        T5[(a >>> 16) & 0xff] ^
        T4[a >>> 24] ^
        T3[b & 0xff] ^
        T2[(b >>> 8) & 0xff] ^
        T1[(b >>> 16) & 0xff] ^
        T0[b >>> 24];
    }
    i += pairs * 8;
  }
  for (; i < n; i++) c = (c >>> 8) ^ T0[(c ^ data[i]) & 0xff];
  return ~c >>> 0;
}

// ---- CRC-64/NVME: reflected polynomial 0x9a6c9329ac4bc9b5, all-ones init and final xor. The 64-bit state is
// kept as two 32-bit halves because BigInt arithmetic per byte would be far slower.

const CRC64_POLY_HI = 0x9a6c9329;
const CRC64_POLY_LO = 0xac4bc9b5;
// Slicing-by-8 again: table k (halves at k * 256) gives the CRC of a byte followed by k zero bytes.
const C64_HI = new Int32Array(8 * 256);
const C64_LO = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let hi = 0;
  let lo = n;
  for (let k = 0; k < 8; k++) {
    const carry = lo & 1;
    lo = (lo >>> 1) | ((hi & 1) << 31);
    hi = hi >>> 1;
    if (carry) {
      hi ^= CRC64_POLY_HI;
      lo ^= CRC64_POLY_LO;
    }
  }
  C64_HI[n] = hi;
  C64_LO[n] = lo;
}
for (let k = 1; k < 8; k++) {
  for (let n = 0; n < 256; n++) {
    const ph = C64_HI[(k - 1) * 256 + n];
    const pl = C64_LO[(k - 1) * 256 + n];
    const idx = pl & 0xff;
    C64_HI[k * 256 + n] = (ph >>> 8) ^ C64_HI[idx];
    C64_LO[k * 256 + n] = ((pl >>> 8) | (ph << 24)) ^ C64_LO[idx];
  }
}

class Crc64NvmeDigester implements Digester {
  private hi = -1;
  private lo = -1;
  update(data: Uint8Array): void {
    const H = C64_HI;
    const L = C64_LO;
    let hi = this.hi;
    let lo = this.lo;
    let i = 0;
    const n = data.length;
    if (LITTLE_ENDIAN && n >= 64) {
      while (((data.byteOffset + i) & 3) !== 0) {
        const idx = (lo ^ data[i++]) & 0xff;
        lo = ((lo >>> 8) | (hi << 24)) ^ L[idx];
        hi = (hi >>> 8) ^ H[idx];
      }
      const pairs = (n - i) >>> 3;
      const words = new Int32Array(data.buffer, data.byteOffset + i, pairs * 2);
      for (let j = 0; j < words.length; j += 2) {
        const a = lo ^ words[j];
        const b = hi ^ words[j + 1];
        const i7 = 1792 + (a & 0xff);
        const i6 = 1536 + ((a >>> 8) & 0xff);
        const i5 = 1280 + ((a >>> 16) & 0xff);
        const i4 = 1024 + (a >>> 24);
        const i3 = 768 + (b & 0xff);
        const i2 = 512 + ((b >>> 8) & 0xff);
        const i1 = 256 + ((b >>> 16) & 0xff);
        const i0 = b >>> 24;
        lo = L[i7] ^ L[i6] ^ L[i5] ^ L[i4] ^ L[i3] ^ L[i2] ^ L[i1] ^ L[i0];
        hi = H[i7] ^ H[i6] ^ H[i5] ^ H[i4] ^ H[i3] ^ H[i2] ^ H[i1] ^ H[i0];
      }
      i += pairs * 8;
    }
    for (; i < n; i++) {
      const idx = (lo ^ data[i]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ L[idx];
      hi = (hi >>> 8) ^ H[idx];
    }
    this.hi = hi;
    this.lo = lo;
  }
  digest(): Buffer {
    const out = Buffer.alloc(8);
    out.writeUInt32BE(~this.hi >>> 0, 0);
    out.writeUInt32BE(~this.lo >>> 0, 4);
    return out;
  }
}

class Crc32Digester implements Digester {
  private crc = 0;
  constructor(private readonly fn: (data: Uint8Array, crc: number) => number) {}
  update(data: Uint8Array): void {
    this.crc = this.fn(data, this.crc);
  }
  digest(): Buffer {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.crc >>> 0, 0);
    return out;
  }
}

class NodeHashDigester implements Digester {
  private readonly hash: Hash;
  constructor(name: string) {
    this.hash = createHash(name);
  }
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  digest(): Buffer {
    return this.hash.digest();
  }
}

export function createDigester(algorithm: ChecksumAlgorithm): Digester {
  switch (algorithm) {
    case 'CRC32':
      return new Crc32Digester(crc32);
    case 'CRC32C':
      return new Crc32Digester(crc32c);
    case 'CRC64NVME':
      return new Crc64NvmeDigester();
    case 'SHA1':
      return new NodeHashDigester('sha1');
    case 'SHA256':
      return new NodeHashDigester('sha256');
  }
}

/** The S3 form of a checksum of `data`: base64 of the big-endian digest. */
export function computeChecksum(algorithm: ChecksumAlgorithm, data: Uint8Array): string {
  const d = createDigester(algorithm);
  d.update(data);
  return d.digest().toString('base64');
}

// ---- What the client promised about the body, and the verifier that holds it to that.

export interface ExpectedChecksum {
  algorithm: ChecksumAlgorithm;
  /** Base64 value from a request header; when absent the value comes from the trailer, or is only computed. */
  value?: string;
  /** True when the value arrives as a trailer of an aws-chunked body (named by x-amz-trailer). */
  fromTrailer?: boolean;
}

export interface BodyExpectations {
  /** Content-MD5 header value (base64 of 16 bytes). */
  contentMd5?: string;
  /** Hex SHA-256 the request was signed with (x-amz-content-sha256 when it is a digest). */
  contentSha256?: string;
  /** At most one x-amz-checksum-* algorithm per request, as S3 allows. */
  checksum?: ExpectedChecksum;
  /** Trailers of the aws-chunked body, read when the body ends (AwsChunkedDecoder.trailers). */
  trailers?: () => Readonly<Record<string, string>>;
  /** Exact decoded length, when known and not already enforced by the HTTP layer or the chunk decoder. */
  contentLength?: number;
  /** Compute MD5 for the ETag (default true). */
  md5?: boolean;
}

export interface VerifiedBody {
  length: number;
  /** Hex MD5 of the body, the ETag of a single-part object (without quotes); undefined when md5 was disabled. */
  md5Hex?: string;
  /** Hex SHA-256 when it was computed (signed payload or SHA256 checksum). */
  sha256Hex?: string;
  /** The checksum computed for the requested algorithm, base64 (the value to return in x-amz-checksum-*). */
  checksum?: { algorithm: ChecksumAlgorithm; value: string };
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64Exact(value: string, bytes: number): Buffer | undefined {
  const v = value.trim();
  if (!BASE64_RE.test(v) || v.length % 4 !== 0) return undefined;
  const buf = Buffer.from(v, 'base64');
  return buf.length === bytes ? buf : undefined;
}

function invalidChecksumValue(algorithm: ChecksumAlgorithm): S3Error {
  return S3Errors.invalidRequest(`Value for ${checksumHeaderName(algorithm)} header is invalid.`);
}

function checksumMismatch(algorithm: ChecksumAlgorithm): S3Error {
  return S3Errors.badDigest(`The ${algorithm} you specified did not match the calculated checksum.`);
}

/**
 * A pass-through Transform that hashes the body as it flows and, when it ends, checks every digest the client
 * promised, failing the stream with the matching S3Error before 'end' is emitted. Consumers must commit the
 * object only after the stream ended cleanly; `result` then holds the computed digests.
 */
export class BodyVerifier extends Transform {
  private readonly md5?: Hash;
  private readonly sha256?: Hash;
  private readonly digester?: Digester;
  private readonly expectedMd5?: Buffer;
  private readonly expectedSha256?: Buffer;
  private length = 0;
  private verified?: VerifiedBody;

  constructor(private readonly expect: BodyExpectations = {}) {
    super();
    if (expect.contentMd5 !== undefined) {
      this.expectedMd5 = decodeBase64Exact(expect.contentMd5, 16);
      if (!this.expectedMd5) throw S3Errors.invalidDigest();
    }
    if (expect.contentSha256 !== undefined) {
      if (!/^[0-9a-fA-F]{64}$/.test(expect.contentSha256)) {
        throw S3Errors.invalidArgument('x-amz-content-sha256 must be a valid sha256 value.');
      }
      this.expectedSha256 = Buffer.from(expect.contentSha256, 'hex');
    }
    const cs = expect.checksum;
    if (cs?.value !== undefined && !decodeBase64Exact(cs.value, DIGEST_BYTES[cs.algorithm])) {
      throw invalidChecksumValue(cs.algorithm);
    }
    if (expect.md5 !== false) this.md5 = createHash('md5');
    // One SHA-256 serves both the signed payload hash and a SHA256 checksum.
    if (this.expectedSha256 || cs?.algorithm === 'SHA256') this.sha256 = createHash('sha256');
    if (cs && cs.algorithm !== 'SHA256') this.digester = createDigester(cs.algorithm);
  }

  /** The computed digests; available once the stream has ended. */
  get result(): VerifiedBody {
    if (!this.verified) throw new Error('BodyVerifier.result read before the body ended');
    return this.verified;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.length += chunk.length;
    const max = this.expect.contentLength;
    if (max !== undefined && this.length > max) {
      done(S3Errors.invalidRequest('The request body is longer than its declared length.'));
      return;
    }
    this.md5?.update(chunk);
    this.sha256?.update(chunk);
    this.digester?.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    try {
      this.verified = this.finish();
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  private finish(): VerifiedBody {
    const ex = this.expect;
    if (ex.contentLength !== undefined && this.length < ex.contentLength) {
      throw new S3Error(
        'IncompleteBody',
        400,
        'You did not provide the number of bytes specified by the Content-Length HTTP header.',
      );
    }
    const out: VerifiedBody = { length: this.length };
    if (this.md5) {
      const md5 = this.md5.digest();
      out.md5Hex = md5.toString('hex');
      if (this.expectedMd5 && !md5.equals(this.expectedMd5)) throw S3Errors.badDigest();
    } else if (this.expectedMd5) {
      throw new Error('BodyVerifier: Content-MD5 expected but md5 disabled');
    }
    const sha = this.sha256?.digest();
    if (sha) out.sha256Hex = sha.toString('hex');
    if (this.expectedSha256 && sha && !sha.equals(this.expectedSha256)) {
      throw new S3Error(
        'XAmzContentSHA256Mismatch',
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
        { ClientComputedContentSHA256: ex.contentSha256 ?? '', S3ComputedContentSHA256: sha.toString('hex') },
      );
    }
    const cs = ex.checksum;
    if (cs) {
      const digest = cs.algorithm === 'SHA256' ? sha : this.digester?.digest();
      if (!digest) throw new Error('BodyVerifier: checksum digest missing');
      const value = digest.toString('base64');
      let expected = cs.value;
      if (expected === undefined && cs.fromTrailer) {
        const trailers = ex.trailers?.() ?? {};
        expected = trailers[checksumHeaderName(cs.algorithm)];
        if (expected === undefined) {
          throw S3Errors.invalidRequest(
            `The trailer ${checksumHeaderName(cs.algorithm)} was declared but not sent.`,
          );
        }
        if (!decodeBase64Exact(expected, DIGEST_BYTES[cs.algorithm]))
          throw invalidChecksumValue(cs.algorithm);
      }
      if (expected !== undefined && expected.trim() !== value) throw checksumMismatch(cs.algorithm);
      out.checksum = { algorithm: cs.algorithm, value };
    }
    return out;
  }
}

function headerString(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/**
 * Reads the body promises of a request: Content-MD5, the x-amz-checksum-* header or the one named by x-amz-trailer,
 * x-amz-sdk-checksum-algorithm (compute only), and the signed payload hash from authentication.
 * Throws InvalidRequest / InvalidDigest for contradictory or malformed headers.
 */
export function bodyExpectationsFromHeaders(
  headers: IncomingHttpHeaders,
  opts: { expectedSha256?: string; trailers?: () => Readonly<Record<string, string>> } = {},
): BodyExpectations {
  const expect: BodyExpectations = {};
  const md5 = headerString(headers, 'content-md5');
  if (md5 !== undefined) expect.contentMd5 = md5;
  if (opts.expectedSha256 !== undefined) expect.contentSha256 = opts.expectedSha256;

  const fromHeaders: ExpectedChecksum[] = [];
  for (const alg of CHECKSUM_ALGORITHMS) {
    const v = headerString(headers, checksumHeaderName(alg));
    if (v !== undefined) fromHeaders.push({ algorithm: alg, value: v });
  }
  for (const name of Object.keys(headers)) {
    if (
      name.startsWith('x-amz-checksum-') &&
      !parseChecksumAlgorithm(name) &&
      name !== 'x-amz-checksum-type' &&
      name !== 'x-amz-checksum-algorithm' &&
      name !== 'x-amz-checksum-mode'
    ) {
      throw S3Errors.invalidRequest(`Unsupported checksum header ${name}.`);
    }
  }
  const trailer = headerString(headers, 'x-amz-trailer');
  if (trailer !== undefined && trailer.trim() !== '') {
    const names = trailer
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== '');
    for (const n of names) {
      const alg = parseChecksumAlgorithm(n);
      if (!alg || !n.startsWith('x-amz-checksum-'))
        throw S3Errors.invalidRequest(`Unsupported trailer ${n}.`);
      fromHeaders.push({ algorithm: alg, fromTrailer: true });
    }
    if (!opts.trailers)
      throw S3Errors.invalidRequest('x-amz-trailer requires an aws-chunked body with trailers.');
    expect.trailers = opts.trailers;
  }
  if (fromHeaders.length > 1) {
    throw S3Errors.invalidRequest(
      'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.',
    );
  }
  const sdkAlg =
    headerString(headers, 'x-amz-sdk-checksum-algorithm') ??
    headerString(headers, 'x-amz-checksum-algorithm');
  if (sdkAlg !== undefined) {
    const alg = parseChecksumAlgorithm(sdkAlg);
    if (!alg) throw S3Errors.invalidRequest(`Checksum algorithm ${sdkAlg} is not supported.`);
    if (fromHeaders.length === 1 && fromHeaders[0].algorithm !== alg) {
      throw S3Errors.invalidRequest(
        `Value for x-amz-sdk-checksum-algorithm header is invalid: it does not match the ${checksumHeaderName(fromHeaders[0].algorithm)} sent.`,
      );
    }
    if (fromHeaders.length === 0) fromHeaders.push({ algorithm: alg });
  }
  if (fromHeaders.length === 1) expect.checksum = fromHeaders[0];
  return expect;
}
