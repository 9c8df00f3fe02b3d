// crypt/padding: hiding object sizes inside standard OpenPGP, so gpg and git-annex still read padded objects.
//
// The literal packet goes inside a ZIP (raw deflate) compressed packet made only of *stored* blocks — no
// compression work, just 5-byte block headers — and the padding is empty, non-final stored blocks (5 bytes each,
// valid deflate that every inflater skips). The residue below 5 bytes goes into the literal packet's file name,
// which gpg ignores when decrypting to stdout. Sizes are rounded up with Padmé (Nikitin et al., "Reducing
// Metadata Leakage from Encrypted Files and Communication with PURBs"): at most ~12% overhead, and a padded
// length reveals only O(log log n) bits of the real one.
import { Tag, newFormatHeader } from './packets.js';

/** Smallest padded plaintext: every object below this looks the same size. DO NOT lower for existing remotes. */
export const MIN_PADDED = 1024;
/** Largest stored deflate block (RFC 1951 §3.2.4). */
const STORED_MAX = 65535;
const STORED_HEADER = 5;
/** Literal packet fields after the file name: format 'b' then name length, and a zero date after the name. */
const LITERAL_FORMAT = 0x62;
const ZIP = 1;

export function padme(length: number): number {
  const L = Math.max(length, MIN_PADDED);
  const E = Math.floor(Math.log2(L));
  const S = Math.floor(Math.log2(E)) + 1;
  const unit = 2 ** (E - S);
  return Math.ceil(L / unit) * unit;
}

function literalPacketLength(size: number, nameLength: number): number {
  const body = 2 + nameLength + 4 + size;
  return newFormatHeader(Tag.Literal, body).length + body;
}

function deflateLength(inner: number, padBlocks: number): number {
  return STORED_HEADER * (Math.max(1, Math.ceil(inner / STORED_MAX)) + padBlocks) + inner;
}

export interface PaddedLayout {
  nameLength: number;
  padBlocks: number;
  /** Bytes of the whole compressed packet (header included). */
  packetLength: number;
}

/** How to frame `size` bytes so the compressed packet is as long as the one for `target` unpadded bytes. */
export function paddedLayout(size: number, target: number): PaddedLayout {
  const want = deflateLength(literalPacketLength(target, 0), 0);
  const base = deflateLength(literalPacketLength(size, 0), 0);
  const gap = Math.max(0, want - base);
  const nameLength = Math.min(gap % STORED_HEADER, 255);
  const inner = literalPacketLength(size, nameLength);
  const padBlocks = Math.max(0, Math.floor((want - deflateLength(inner, 0)) / STORED_HEADER));
  const body = 1 + deflateLength(inner, padBlocks);
  return { nameLength, padBlocks, packetLength: newFormatHeader(Tag.Compressed, body).length + body };
}

/** The compressed packet around a literal packet holding `source` (exactly `size` bytes), padded per `layout`. */
export async function* paddedPackets(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
  layout: PaddedLayout,
): AsyncGenerator<Buffer> {
  const inner = literalPacketLength(size, layout.nameLength);
  const body = 1 + deflateLength(inner, layout.padBlocks);
  const emptyBlock = Buffer.from([0, 0, 0, 0xff, 0xff]);
  const head: Buffer[] = [newFormatHeader(Tag.Compressed, body), Buffer.from([ZIP])];
  for (let i = 0; i < layout.padBlocks; i++) head.push(emptyBlock);
  yield Buffer.concat(head);

  const literalBody = 2 + layout.nameLength + 4 + size;
  const literalHead = Buffer.concat([
    newFormatHeader(Tag.Literal, literalBody),
    Buffer.from([LITERAL_FORMAT, layout.nameLength]),
    Buffer.alloc(layout.nameLength, 0x5f),
    Buffer.alloc(4),
  ]);
  let remaining = inner;
  let leftInBlock = 0;
  const blockHeader = (): Buffer => {
    const n = Math.min(STORED_MAX, remaining);
    leftInBlock = n;
    const h = Buffer.alloc(STORED_HEADER);
    h[0] = n === remaining ? 1 : 0; // BFINAL on the last block, BTYPE 00 = stored
    h.writeUInt16LE(n, 1);
    h.writeUInt16LE(n ^ 0xffff, 3);
    return h;
  };
  const frame = function* (piece: Buffer): Generator<Buffer> {
    let offset = 0;
    while (offset < piece.length) {
      if (leftInBlock === 0) yield blockHeader();
      const n = Math.min(leftInBlock, piece.length - offset);
      yield piece.subarray(offset, offset + n);
      offset += n;
      leftInBlock -= n;
      remaining -= n;
    }
  };
  yield* frame(literalHead);
  for await (const chunk of source) yield* frame(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  if (inner === 0 || remaining !== 0) throw new RangeError('padded framing: source length does not match');
}
