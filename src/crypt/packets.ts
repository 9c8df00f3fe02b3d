// crypt/packets: OpenPGP packet framing (RFC 4880 §4) — headers in both the old and the new format, streamed bodies
// with definite, partial and indeterminate lengths. gpg writes old-format headers for PKESK/SKESK and compressed
// packets, and partial lengths for large bodies, so a reader must accept all of them.
import { ByteReader } from './byte-reader.js';

/** Packet tags used by git-annex's gpg output and by coffre's writer. */
export const Tag = {
  PKESK: 1,
  SKESK: 3,
  OnePassSignature: 4,
  Compressed: 8,
  SymEncrypted: 9,
  Marker: 10,
  Literal: 11,
  SEIPD: 18,
  MDC: 19,
  AEADEncrypted: 20,
  Padding: 21,
} as const;

export interface PacketHeader {
  tag: number;
  /** 'definite' with a length, 'partial' (new format, more lengths follow) or 'indeterminate' (to end of stream). */
  kind: 'definite' | 'partial' | 'indeterminate';
  length: number;
}

/** Reads the next packet header, or null at the end of the stream. */
export async function readPacketHeader(reader: ByteReader): Promise<PacketHeader | null> {
  if (await reader.atEnd()) return null;
  const ctb = await reader.readByte();
  if ((ctb & 0x80) === 0) throw new FormatError(`not an OpenPGP packet (header byte 0x${ctb.toString(16)})`);
  if (ctb & 0x40) {
    const tag = ctb & 0x3f;
    return { tag, ...(await readNewLength(reader)) };
  }
  const tag = (ctb >> 2) & 0x0f;
  const lengthType = ctb & 3;
  if (lengthType === 0) return { tag, kind: 'definite', length: await reader.readByte() };
  if (lengthType === 1) return { tag, kind: 'definite', length: (await reader.readExact(2)).readUInt16BE(0) };
  if (lengthType === 2) return { tag, kind: 'definite', length: (await reader.readExact(4)).readUInt32BE(0) };
  return { tag, kind: 'indeterminate', length: 0 };
}

async function readNewLength(reader: ByteReader): Promise<{ kind: 'definite' | 'partial'; length: number }> {
  const first = await reader.readByte();
  if (first < 192) return { kind: 'definite', length: first };
  if (first < 224)
    return { kind: 'definite', length: ((first - 192) << 8) + (await reader.readByte()) + 192 };
  if (first === 255) return { kind: 'definite', length: (await reader.readExact(4)).readUInt32BE(0) };
  return { kind: 'partial', length: 1 << (first & 0x1f) };
}

/** Streams a packet's body, following partial lengths; leaves the reader at the next packet. */
export async function* packetBody(reader: ByteReader, header: PacketHeader): AsyncGenerator<Buffer> {
  const MAX_PIECE = 1 << 20;
  if (header.kind === 'indeterminate') {
    for (let piece = await reader.readUpTo(MAX_PIECE); piece; piece = await reader.readUpTo(MAX_PIECE))
      yield piece;
    return;
  }
  let { kind, length } = header;
  for (;;) {
    while (length > 0) {
      const piece = await reader.readUpTo(Math.min(length, MAX_PIECE));
      if (!piece) throw new FormatError('packet body truncated');
      length -= piece.length;
      yield piece;
    }
    if (kind !== 'partial') return;
    ({ kind, length } = await readNewLength(reader));
  }
}

/** Reads a whole (small) packet body into memory. */
export async function readWholeBody(
  reader: ByteReader,
  header: PacketHeader,
  limit = 1 << 20,
): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const piece of packetBody(reader, header)) {
    total += piece.length;
    if (total > limit) throw new FormatError(`packet ${header.tag} larger than ${limit} bytes`);
    parts.push(piece);
  }
  return Buffer.concat(parts);
}

/** A new-format header with a definite length (RFC 4880 §4.2.2). */
export function newFormatHeader(tag: number, length: number): Buffer {
  const ctb = 0xc0 | tag;
  if (length < 192) return Buffer.from([ctb, length]);
  if (length < 8384) {
    const v = length - 192;
    return Buffer.from([ctb, (v >> 8) + 192, v & 0xff]);
  }
  const out = Buffer.alloc(6);
  out[0] = ctb;
  out[1] = 255;
  out.writeUInt32BE(length, 2);
  return out;
}

export class FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FormatError';
  }
}
