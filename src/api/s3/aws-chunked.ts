// Decoder for `Content-Encoding: aws-chunked` request bodies (SigV4 streaming uploads). Each chunk is
//   hex-size[;chunk-signature=<64 hex>] CRLF <size bytes> CRLF
// ending with a zero-size chunk, then optional trailer lines (`x-amz-checksum-crc32:<base64>`, and for signed
// trailers `x-amz-trailer-signature:<64 hex>`) and a final CRLF. Chunk signatures chain from the request's seed
// signature, so chunks cannot be dropped, reordered or altered without the chain breaking.
//
// Data bytes are passed downstream as slices of the incoming buffers (never copied) as soon as they arrive;
// a chunk's signature is checked when its last byte has been seen. The stream therefore fails before 'end' if
// anything is wrong, and consumers must commit only after a clean end (as with BodyVerifier).

import { createHash, type Hash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { EMPTY_SHA256, hmacSha256, signaturesEqual, sha256Hex, type AuthContext } from './signature.js';

// ---- Format limits (protect the server from garbage; generous for every real client).
/** Longest chunk header line: 16 hex digits + ';chunk-signature=' + 64 hex, with room for extensions. */
const MAX_CHUNK_LINE = 256;
/** Longest trailer line (name and base64 digest). */
const MAX_TRAILER_LINE = 512;
const MAX_TRAILERS = 8;
/** Largest single chunk accepted when no decoded length bounds it. */
const MAX_CHUNK_SIZE = 256 * 1024 * 1024;

const CHUNK_STS_PREFIX = 'AWS4-HMAC-SHA256-PAYLOAD';
const TRAILER_STS_PREFIX = 'AWS4-HMAC-SHA256-TRAILER';
const TRAILER_SIGNATURE = 'x-amz-trailer-signature';

export type StreamingMode = 'streaming-signed' | 'streaming-unsigned-trailer' | 'streaming-signed-trailer';

export interface ChunkSigning {
  signingKey: Buffer;
  amzDate: string;
  scope: string;
  seedSignature: string;
}

export interface AwsChunkedOptions {
  mode: StreamingMode;
  /** Required for the signed modes. */
  signing?: ChunkSigning;
  /** x-amz-decoded-content-length: the exact number of data bytes. */
  decodedContentLength?: number;
  /** Trailer names announced in x-amz-trailer; other trailers are refused. Undefined: any x-amz-checksum-*. */
  expectedTrailers?: string[];
}

function incompleteBody(): S3Error {
  return new S3Error('IncompleteBody', 400, 'The request body terminated unexpectedly');
}

function chunkSignatureMismatch(): S3Error {
  return new S3Error(
    'SignatureDoesNotMatch',
    403,
    'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
  );
}

function malformedChunk(what: string): S3Error {
  return S3Errors.invalidRequest(`Malformed aws-chunked body: ${what}.`);
}

const enum State {
  ChunkLine,
  Data,
  DataCr,
  DataLf,
  Trailer,
  Done,
}

const CR = 0x0d;
const LF = 0x0a;

export class AwsChunkedDecoder extends Transform {
  private readonly signed: boolean;
  private readonly withTrailer: boolean;
  private state = State.ChunkLine;
  // Bytes of the line being read, held only across buffer boundaries and bounded by the line limits.
  private line: Buffer[] = [];
  private lineLength = 0;
  private remaining = 0;
  private chunkSignature = '';
  private previousSignature: string;
  private chunkHash?: Hash;
  private decoded = 0;
  private readonly trailerLines: [string, string][] = [];
  private trailerSignature?: string;
  private blankSeen = false;
  private received: Record<string, string> = {};
  private finished = false;

  constructor(private readonly opts: AwsChunkedOptions) {
    super();
    this.signed = opts.mode !== 'streaming-unsigned-trailer';
    this.withTrailer = opts.mode !== 'streaming-signed';
    if (this.signed && !opts.signing)
      throw new Error('AwsChunkedDecoder: signed mode needs signing parameters');
    this.previousSignature = opts.signing?.seedSignature ?? '';
  }

  /** Trailers received (lowercase names, trimmed values, without the trailer signature); complete after 'end'. */
  get trailers(): Readonly<Record<string, string>> {
    return this.received;
  }

  /** Number of decoded data bytes passed on so far. */
  get decodedLength(): number {
    return this.decoded;
  }

  override _transform(buf: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.consume(buf);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      // The closing empty line is optional: some SDKs end the body right after `0\r\n` when they send no
      // trailer, and AWS's signed trailer example ends right after the trailer signature line.
      if (this.state === State.Trailer && this.lineLength === 0) {
        this.finishTrailers();
        this.state = State.Done;
      }
      if (this.state !== State.Done) throw incompleteBody();
      const expected = this.opts.decodedContentLength;
      if (expected !== undefined && this.decoded !== expected) throw incompleteBody();
      this.finished = true;
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  /** True once the whole body decoded and verified. */
  get complete(): boolean {
    return this.finished;
  }

  private signedTrailer(): boolean {
    return this.opts.mode === 'streaming-signed-trailer';
  }

  private consume(buf: Buffer): void {
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case State.ChunkLine:
        case State.Trailer: {
          const nl = buf.indexOf(LF, pos);
          const end = nl < 0 ? buf.length : nl;
          const limit = this.state === State.ChunkLine ? MAX_CHUNK_LINE : MAX_TRAILER_LINE;
          if (this.lineLength + (end - pos) > limit) throw malformedChunk('line too long');
          if (nl < 0) {
            this.line.push(buf.subarray(pos));
            this.lineLength += buf.length - pos;
            return;
          }
          const piece = buf.subarray(pos, nl);
          const whole = this.lineLength === 0 ? piece : Buffer.concat([...this.line, piece]);
          this.line = [];
          this.lineLength = 0;
          pos = nl + 1;
          if (whole.length === 0 || whole[whole.length - 1] !== CR)
            throw malformedChunk('line not ended by CRLF');
          const text = whole.toString('latin1', 0, whole.length - 1);
          if (this.state === State.ChunkLine) this.onChunkLine(text);
          else this.onTrailerLine(text);
          break;
        }
        case State.Data: {
          const n = Math.min(this.remaining, buf.length - pos);
          const slice = buf.subarray(pos, pos + n);
          this.chunkHash?.update(slice);
          this.push(slice);
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) this.state = State.DataCr;
          break;
        }
        case State.DataCr:
          if (buf[pos++] !== CR) throw malformedChunk('chunk data not followed by CRLF');
          this.state = State.DataLf;
          break;
        case State.DataLf:
          if (buf[pos++] !== LF) throw malformedChunk('chunk data not followed by CRLF');
          this.endChunk();
          this.state = State.ChunkLine;
          break;
        case State.Done:
          throw malformedChunk('data after the final chunk');
      }
    }
  }

  private onChunkLine(line: string): void {
    const semi = line.indexOf(';');
    const sizeText = semi < 0 ? line : line.slice(0, semi);
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeText)) throw malformedChunk('invalid chunk size');
    const size = parseInt(sizeText, 16);
    this.chunkSignature = '';
    if (semi >= 0) {
      for (const ext of line.slice(semi + 1).split(';')) {
        const eq = ext.indexOf('=');
        const name = eq < 0 ? ext : ext.slice(0, eq);
        if (name === 'chunk-signature') this.chunkSignature = ext.slice(eq + 1);
      }
    }
    if (this.signed && !/^[0-9a-f]{64}$/.test(this.chunkSignature))
      throw malformedChunk('missing chunk signature');
    const limit =
      this.opts.decodedContentLength !== undefined
        ? this.opts.decodedContentLength - this.decoded
        : MAX_CHUNK_SIZE;
    if (size > limit) {
      throw this.opts.decodedContentLength !== undefined
        ? S3Errors.invalidRequest('The aws-chunked body is longer than x-amz-decoded-content-length.')
        : malformedChunk('chunk too large');
    }
    if (this.signed) this.chunkHash = createHash('sha256');
    if (size === 0) {
      this.verifyChunkSignature(EMPTY_SHA256);
      this.state = State.Trailer;
      return;
    }
    this.remaining = size;
    this.decoded += size;
    this.state = State.Data;
  }

  private endChunk(): void {
    if (this.signed && this.chunkHash) {
      this.verifyChunkSignature(this.chunkHash.digest('hex'));
      this.chunkHash = undefined;
    }
  }

  private verifyChunkSignature(dataHash: string): void {
    if (!this.signed) return;
    const s = this.opts.signing as ChunkSigning;
    const sts = [CHUNK_STS_PREFIX, s.amzDate, s.scope, this.previousSignature, EMPTY_SHA256, dataHash].join(
      '\n',
    );
    const expected = hmacSha256(s.signingKey, sts).toString('hex');
    if (!signaturesEqual(expected, this.chunkSignature)) throw chunkSignatureMismatch();
    this.previousSignature = this.chunkSignature;
  }

  private onTrailerLine(line: string): void {
    if (line === '') {
      // In trailer modes an empty line may also separate the final chunk from the trailers.
      if (
        this.withTrailer &&
        !this.blankSeen &&
        this.trailerLines.length === 0 &&
        this.trailerSignature === undefined
      ) {
        this.blankSeen = true;
        return;
      }
      this.finishTrailers();
      this.state = State.Done;
      return;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformedChunk('invalid trailer line');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (!this.withTrailer) throw malformedChunk('trailers sent without a trailer payload mode');
    if (this.trailerSignature !== undefined) throw malformedChunk('trailer after the trailer signature');
    if (name === TRAILER_SIGNATURE) {
      if (!this.signedTrailer()) throw malformedChunk('unexpected trailer signature');
      this.trailerSignature = value;
      return;
    }
    const allowed = this.opts.expectedTrailers;
    if (allowed ? !allowed.includes(name) : !name.startsWith('x-amz-checksum-')) {
      throw S3Errors.invalidRequest(`The trailer ${name} was not announced in x-amz-trailer.`);
    }
    if (name in this.received || this.trailerLines.length >= MAX_TRAILERS)
      throw malformedChunk('too many trailers');
    this.trailerLines.push([name, value]);
    this.received[name] = value;
  }

  private finishTrailers(): void {
    if (!this.signedTrailer()) return;
    const signature = this.trailerSignature;
    if (signature === undefined) throw malformedChunk('missing trailer signature');
    const s = this.opts.signing as ChunkSigning;
    const canonical = this.trailerLines.map(([n, v]) => `${n}:${v}\n`).join('');
    const sts = [TRAILER_STS_PREFIX, s.amzDate, s.scope, this.previousSignature, sha256Hex(canonical)].join(
      '\n',
    );
    const expected = hmacSha256(s.signingKey, sts).toString('hex');
    if (!signaturesEqual(expected, signature)) throw chunkSignatureMismatch();
  }
}

function headerString(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** True when the authenticated payload mode means the body is aws-chunked. */
export function isStreamingPayload(auth: Pick<AuthContext, 'payloadMode'>): boolean {
  return auth.payloadMode.startsWith('streaming-');
}

/**
 * Builds the decoder for an authenticated streaming request, reading x-amz-decoded-content-length and
 * x-amz-trailer. Throws MissingContentLength (411) when the decoded length is absent.
 */
export function awsChunkedDecoderFor(auth: AuthContext, headers: IncomingHttpHeaders): AwsChunkedDecoder {
  if (!isStreamingPayload(auth)) throw new Error('awsChunkedDecoderFor: payload is not streaming');
  const lengthText = headerString(headers, 'x-amz-decoded-content-length');
  if (lengthText === undefined) {
    throw new S3Error(
      'MissingContentLength',
      411,
      'You must provide the x-amz-decoded-content-length HTTP header.',
    );
  }
  if (!/^\d{1,16}$/.test(lengthText.trim())) {
    throw S3Errors.invalidArgument('x-amz-decoded-content-length is not a valid length.', {
      ArgumentName: 'x-amz-decoded-content-length',
    });
  }
  const trailer = headerString(headers, 'x-amz-trailer');
  const opts: AwsChunkedOptions = {
    mode: auth.payloadMode as StreamingMode,
    decodedContentLength: Number(lengthText.trim()),
  };
  if (trailer !== undefined) {
    opts.expectedTrailers = trailer
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== '');
  }
  if (auth.payloadMode !== 'streaming-unsigned-trailer') {
    opts.signing = {
      signingKey: auth.signingKey,
      amzDate: auth.amzDate,
      scope: auth.scope,
      seedSignature: auth.seedSignature,
    };
  }
  return new AwsChunkedDecoder(opts);
}
