// Box-stream: the encrypted framing that follows a Secret Handshake. Plaintext is cut into messages of at most
// 4096 bytes; each travels as a 34-byte boxed header (body length and the body's authentication tag) followed
// by the body ciphertext. A boxed header of 18 zero bytes says goodbye; a stream that ends without it has been
// truncated. Layout in docs/formats-rpc.md.
//
// BoxEncoder and BoxDecoder are Transform streams (back-pressure through the usual pipe/write contract). They
// work on whole socket-sized chunks: one output allocation per input chunk, headers and nonces in reused
// buffers, so the cost is the cipher itself.
import { Transform, type TransformCallback } from 'node:stream';
import { SECRETBOX_KEY_BYTES, SECRETBOX_MAC_BYTES, SECRETBOX_NONCE_BYTES, sodium } from './sodium.js';

// ---- Box-stream constants. DO NOT CHANGE: peers (and the reference implementation) depend on them. ----
/** Largest body of one message. */
export const MAX_BODY_LENGTH = 4096;
/** Plaintext header: u16 big-endian body length ‖ 16-byte body tag. */
const HEADER_PLAIN_LENGTH = 2 + SECRETBOX_MAC_BYTES; // 18
/** Boxed header as sent: tag ‖ encrypted plaintext header. */
export const HEADER_LENGTH = HEADER_PLAIN_LENGTH + SECRETBOX_MAC_BYTES; // 34
/** The goodbye is a header whose plaintext is all zeros. */
const GOODBYE_PLAIN = Buffer.alloc(HEADER_PLAIN_LENGTH);

/** Encoder output is pushed in groups of at most this much plaintext so one huge write is not one huge push. */
const PUSH_GROUP_PLAINTEXT = 64 * MAX_BODY_LENGTH;

export class BoxStreamError extends Error {
  constructor(message: string) {
    super(`box-stream: ${message}`);
    this.name = 'BoxStreamError';
  }
}

/** Adds one to a 24-byte big-endian counter, carrying across bytes (and wrapping at 2^192). */
export function incrementNonce(nonce: Uint8Array): void {
  addToNonce(nonce, 1);
}

/** Adds `n` (< 256) to a big-endian counter, carrying across bytes (and wrapping at 2^(8·length)). */
function addToNonce(nonce: Uint8Array, n: number): void {
  let carry = n;
  for (let i = nonce.length - 1; i >= 0 && carry !== 0; i--) {
    const sum = nonce[i]! + carry;
    nonce[i] = sum & 0xff;
    carry = sum >>> 8;
  }
}

function checkKeyAndNonce(key: Buffer, nonce: Buffer): void {
  if (key.length !== SECRETBOX_KEY_BYTES) throw new BoxStreamError('key must be 32 bytes');
  if (nonce.length !== SECRETBOX_NONCE_BYTES) throw new BoxStreamError('nonce must be 24 bytes');
}

export interface BoxStreamOptions {
  /** Readable-side buffering in bytes (default 256 KiB). */
  highWaterMark?: number;
  /**
   * Decoder only: open messages where they arrived, overwriting the input chunks, instead of into a new buffer
   * per chunk. For input nobody else holds on to, such as a socket's reads.
   */
  inPlace?: boolean;
}

/** Plaintext in, box-stream out. end() sends the goodbye. */
export class BoxEncoder extends Transform {
  private readonly key: Buffer;
  /** Message i's header is sealed with nonce n + 2i, its body with n + 2i + 1: two counters, each by twos. */
  private readonly nonce: Buffer;
  private readonly bodyNonce: Buffer;
  private readonly headerPlain = Buffer.alloc(HEADER_PLAIN_LENGTH);
  private readonly staging = Buffer.alloc(MAX_BODY_LENGTH);
  private heldCallback: ((err?: Error | null) => void) | null = null;

  constructor(key: Buffer, nonce: Buffer, opts: BoxStreamOptions = {}) {
    checkKeyAndNonce(key, nonce);
    super({ readableHighWaterMark: opts.highWaterMark ?? 256 * 1024, writableHighWaterMark: 64 * 1024 });
    this.key = Buffer.from(key);
    this.nonce = Buffer.from(nonce);
    this.bodyNonce = Buffer.from(nonce);
    incrementNonce(this.bodyNonce);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    for (let start = 0; start < chunk.length; start += PUSH_GROUP_PLAINTEXT) {
      const end = Math.min(chunk.length, start + PUSH_GROUP_PLAINTEXT);
      this.push(this.seal([chunk.subarray(start, end)], end - start));
    }
    callback();
  }

  // Several buffered writes (framing headers and payloads, small calls) are sealed as one run of full
  // messages, without joining them first: only a message that spans two writes is copied.
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    const parts = chunks.map((c) => c.chunk);
    const total = parts.reduce((n, p) => n + p.length, 0);
    // Back-pressure as Transform does it for single writes: hold the callback while the output is full.
    if (total === 0 || this.push(this.seal(parts, total))) callback();
    else this.heldCallback = callback;
  }

  override _read(size: number): void {
    const held = this.heldCallback;
    this.heldCallback = null;
    held?.();
    super._read(size);
  }

  override _flush(callback: TransformCallback): void {
    const goodbye = Buffer.allocUnsafe(HEADER_LENGTH);
    sodium.crypto_secretbox_easy(goodbye, GOODBYE_PLAIN, this.nonce, this.key);
    this.key.fill(0);
    callback(null, goodbye);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.key.fill(0);
    callback(err);
  }

  /** Seals the concatenation of `parts` (`total` bytes) into consecutive full messages in one buffer. */
  private seal(parts: Buffer[], total: number): Buffer {
    const messages = Math.ceil(total / MAX_BODY_LENGTH);
    const out = Buffer.allocUnsafe(total + messages * HEADER_LENGTH);
    const head = this.headerPlain;
    const tag = head.subarray(2);
    let part = 0;
    let partPos = 0;
    let done = 0;
    let outPos = 0;
    while (done < total) {
      const len = Math.min(MAX_BODY_LENGTH, total - done);
      while (partPos === parts[part].length) {
        part++;
        partPos = 0;
      }
      let plain: Buffer;
      if (parts[part].length - partPos >= len) {
        plain = parts[part].subarray(partPos, partPos + len);
        partPos += len;
      } else {
        // This message spans writes: gather it in the staging buffer.
        let filled = 0;
        while (filled < len) {
          if (partPos === parts[part].length) {
            part++;
            partPos = 0;
            continue;
          }
          const n = Math.min(len - filled, parts[part].length - partPos);
          parts[part].copy(this.staging, filled, partPos, partPos + n);
          filled += n;
          partPos += n;
        }
        plain = this.staging.subarray(0, len);
      }
      // The body is sealed with nonce n+1 so that its tag can travel inside the header, sealed with nonce n.
      const bodyOut = out.subarray(outPos + HEADER_LENGTH, outPos + HEADER_LENGTH + len);
      sodium.crypto_secretbox_detached(bodyOut, tag, plain, this.bodyNonce, this.key);
      head[0] = len >>> 8;
      head[1] = len & 0xff;
      sodium.crypto_secretbox_easy(out.subarray(outPos, outPos + HEADER_LENGTH), head, this.nonce, this.key);
      addToNonce(this.nonce, 2);
      addToNonce(this.bodyNonce, 2);
      done += len;
      outPos += HEADER_LENGTH + len;
    }
    return out;
  }
}

/**
 * Box-stream in, plaintext out. Any authentication failure, a body length of 0 or over 4096, data after the
 * goodbye, or an end without goodbye destroys the stream with a BoxStreamError. After the goodbye the
 * readable side ends (emits 'end') even if the transport stays open.
 */
export class BoxDecoder extends Transform {
  private readonly key: Buffer;
  private readonly nonce: Buffer;
  private readonly headerPlain = Buffer.alloc(HEADER_PLAIN_LENGTH);
  private readonly headerTag = this.headerPlain.subarray(2);
  private pending: Buffer | null = null;
  private goodbye = false;
  private readonly inPlace: boolean;

  constructor(key: Buffer, nonce: Buffer, opts: BoxStreamOptions = {}) {
    checkKeyAndNonce(key, nonce);
    super({ readableHighWaterMark: opts.highWaterMark ?? 256 * 1024, writableHighWaterMark: 64 * 1024 });
    this.key = Buffer.from(key);
    this.nonce = Buffer.from(nonce);
    this.inPlace = opts.inPlace === true;
  }

  /** True once the peer's goodbye has been read. */
  get receivedGoodbye(): boolean {
    return this.goodbye;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.goodbye) {
      if (chunk.length > 0) return callback(new BoxStreamError('data after goodbye'));
      return callback();
    }
    // Plaintext is never longer than its box, so it can be written where the box was read (libsodium allows
    // the overlap): a message's body lands before its own start, never over a message still to be read.
    const out = this.inPlace ? chunk : Buffer.allocUnsafe((this.pending?.length ?? 0) + chunk.length);
    let outPos = 0;
    let pos = 0;
    let straddler: Buffer | undefined;
    try {
      if (this.pending) {
        // Complete the message that straddled the previous chunk, copying only as much of this chunk as it
        // can use (at most one message), rather than the whole chunk.
        const take = Math.min(chunk.length, HEADER_LENGTH + MAX_BODY_LENGTH - this.pending.length);
        const joined = Buffer.concat([this.pending, chunk.subarray(0, take)]);
        this.pending = null;
        const r = this.openMessages(joined, this.inPlace ? joined : out, 0);
        if (this.inPlace) straddler = joined.subarray(0, r.outPos);
        else outPos = r.outPos;
        if (r.consumed < joined.length - take) {
          // Not even the straddling message is complete: keep waiting.
          this.pending = Buffer.from(joined.subarray(r.consumed));
          const ready = straddler ?? out.subarray(0, outPos);
          return callback(null, ready.length > 0 ? ready : undefined);
        }
        pos = r.consumed - (joined.length - take);
        // The goodbye came in the straddling message: nothing of this chunk's own is opened.
        if (this.goodbye)
          return this.endAfterGoodbye(
            pos === chunk.length,
            straddler,
            out,
            this.inPlace ? 0 : outPos,
            callback,
          );
        if (this.inPlace) outPos = pos;
      }
      const r = this.openMessages(chunk.subarray(pos), out, outPos);
      const start = this.inPlace ? pos : 0;
      outPos = r.outPos;
      pos += r.consumed;
      if (this.goodbye)
        return this.endAfterGoodbye(
          pos === chunk.length,
          straddler,
          out.subarray(start),
          outPos - start,
          callback,
        );
      if (pos < chunk.length) this.pending = Buffer.from(chunk.subarray(pos));
      if (straddler && straddler.length > 0) this.push(straddler);
      callback(null, outPos > start ? out.subarray(start, outPos) : undefined);
    } catch (err) {
      callback(err as Error);
    }
  }

  private endAfterGoodbye(
    atEnd: boolean,
    straddler: Buffer | undefined,
    out: Buffer,
    outPos: number,
    callback: TransformCallback,
  ): void {
    this.key.fill(0);
    if (!atEnd) return callback(new BoxStreamError('data after goodbye'));
    if (straddler && straddler.length > 0) this.push(straddler);
    if (outPos > 0) this.push(out.subarray(0, outPos));
    this.push(null);
    callback();
  }

  /**
   * Opens complete messages from the start of `data` into `out`; stops at an incomplete message or at the
   * goodbye (which sets `goodbye`). Throws BoxStreamError on anything invalid.
   */
  private openMessages(data: Buffer, out: Buffer, outStart: number): { consumed: number; outPos: number } {
    const head = this.headerPlain;
    let pos = 0;
    let outPos = outStart;
    while (data.length - pos >= HEADER_LENGTH) {
      if (
        !sodium.crypto_secretbox_open_easy(
          head,
          data.subarray(pos, pos + HEADER_LENGTH),
          this.nonce,
          this.key,
        )
      ) {
        throw new BoxStreamError('header authentication failed');
      }
      const len = (head[0]! << 8) | head[1]!;
      if (len === 0) {
        if (!sodium.sodium_is_zero(head)) throw new BoxStreamError('empty body');
        this.goodbye = true;
        return { consumed: pos + HEADER_LENGTH, outPos };
      }
      if (len > MAX_BODY_LENGTH) throw new BoxStreamError(`body length ${len} exceeds ${MAX_BODY_LENGTH}`);
      if (data.length - pos < HEADER_LENGTH + len) break; // body not here yet: re-open this header next time
      addToNonce(this.nonce, 1);
      const body = data.subarray(pos + HEADER_LENGTH, pos + HEADER_LENGTH + len);
      if (
        !sodium.crypto_secretbox_open_detached(
          out.subarray(outPos, outPos + len),
          body,
          this.headerTag,
          this.nonce,
          this.key,
        )
      ) {
        throw new BoxStreamError('body authentication failed');
      }
      addToNonce(this.nonce, 1);
      outPos += len;
      pos += HEADER_LENGTH + len;
    }
    return { consumed: pos, outPos };
  }

  override _flush(callback: TransformCallback): void {
    if (!this.goodbye) return callback(new BoxStreamError('stream ended without goodbye (truncated)'));
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.key.fill(0);
    this.pending = null;
    callback(err);
  }
}
