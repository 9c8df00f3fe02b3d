// model/segments: turning a byte stream into stored blocks and back. A segment is written block by block
// (bounded memory: at most a few blocks in flight) and read back with each block's hash verified (unless the
// reader authenticates the bytes itself: BlockReadOptions).
import { Readable } from 'node:stream';
import type { BlockHash, BlockIo, BlockReadOptions } from '../block/block-store.js';
import { hashBlock } from '../block/pool.js';
import type { FileSlice } from '../util/file-slice.js';
import type { BlockRef, Segment } from './types.js';

/** A stream's last block may be this fraction of a block larger rather than followed by a tiny one. */
const TAIL_FRACTION = 16;
/** Blocks being hashed and written at once, per segment (memory: this many blocks per upload). */
const WRITES_IN_FLIGHT = 3;

// Hashes of blocks written for an operation that has not committed yet: the garbage collector must not
// remove them even though no record refers to them. `onReleased` hears of each hash no longer pinned (its
// operation committed, or failed and left the block to nobody).
export class BlockPins {
  private readonly counts = new Map<BlockHash, number>();

  constructor(private readonly onReleased?: (hash: BlockHash) => void) {}

  pin(hashes: Iterable<BlockHash>): void {
    for (const h of hashes) this.counts.set(h, (this.counts.get(h) ?? 0) + 1);
  }

  unpin(hashes: Iterable<BlockHash>): void {
    for (const h of hashes) {
      const n = (this.counts.get(h) ?? 0) - 1;
      if (n <= 0) {
        this.counts.delete(h);
        this.onReleased?.(h);
      } else this.counts.set(h, n);
    }
  }

  isPinned(hash: BlockHash): boolean {
    return this.counts.has(hash);
  }
}

export interface SegmentWriteOptions {
  blockSize: number;
  inlineThreshold: number;
}

/**
 * Seals a segment's bytes block by block on their way to storage (encryption at rest, sse/). The segment is
 * cut into blocks of whole units of plaintext; each is sealed into a stored block, named and returned.
 */
export interface BlockSealer {
  /** Plaintext granularity: every block but the last holds a whole number of units. */
  readonly unit: number;
  /** Stored bytes of the block holding `plainBytes` of plaintext from offset `at` of the segment. */
  sealedSize(plainBytes: number, at: number): number;
  /**
   * Seals the block of plaintext `plain` found at offset `at` (`last` when it ends the segment) into `out`,
   * which is at least sealedSize long. Both buffers' memory is given up; the sealed block (a view of `out`'s
   * memory) and `plain`'s memory come back with the block's hash — unless `named` is false (a store that
   * keeps no blocks by name, backend/seal-stream): the hash is then '' and the pass over the block saved.
   */
  seal(
    plain: Buffer,
    out: Buffer,
    at: number,
    last: boolean,
    named?: boolean,
  ): Promise<{ sealed: Buffer; hash: BlockHash; plain: Buffer }>;
  /** The whole sealed segment of a small plaintext, to keep inline. */
  sealInline(plain: Buffer): Buffer;
}

/**
 * Block buffers whose blocks are on disk, kept for the next blocks of any upload: a fresh megabyte per block
 * kept the collector's helper threads busy (they cost more CPU than the hashing did). At most SPARE_BLOCKS are
 * kept; a buffer comes back only after its write finished, so nothing else still reads it.
 */
class SpareBlocks {
  private readonly free = new Map<number, Buffer[]>();
  private count = 0;

  take(capacity: number): Buffer {
    const list = this.free.get(capacity);
    const found = list?.pop();
    if (found) {
      this.count--;
      return found;
    }
    return Buffer.allocUnsafe(capacity);
  }

  give(memory: ArrayBufferLike, capacity: number): void {
    if (memory.byteLength !== capacity || this.count >= SPARE_BLOCKS) return;
    let list = this.free.get(capacity);
    if (!list) this.free.set(capacity, (list = []));
    list.push(Buffer.from(memory, 0, capacity));
    this.count++;
  }
}

const SPARE_BLOCKS = 12;
const spareBlocks = new SpareBlocks();

/** Names a block of a stream and its stored bytes: hashed as it is, or sealed first. */
type BlockNamer = (
  data: Buffer,
  at: number,
  last: boolean,
) => Promise<{ stored: Buffer; hash: BlockHash; release: () => void }>;

function namerFor(sealer: BlockSealer | undefined, capacity: number): BlockNamer {
  if (!sealer) {
    return async (data) => {
      const { hash, block } = await hashBlock(data);
      return { stored: block, hash, release: () => spareBlocks.give(block.buffer, capacity) };
    };
  }
  const sealedCapacity = sealer.sealedSize(capacity, 0);
  return async (data, at, last) => {
    const out = spareBlocks.take(sealedCapacity);
    const { sealed, hash, plain } = await sealer.seal(data, out, at, last);
    spareBlocks.give(plain.buffer, capacity);
    return { stored: sealed, hash, release: () => spareBlocks.give(sealed.buffer, sealedCapacity) };
  };
}

// Consumes `source` and stores it, sealed by `sealer` if given. The returned segment's blocks are pinned; the
// caller unpins them once the record that refers to them has committed (or the operation failed).
export async function writeSegment(
  blocks: BlockIo,
  pins: BlockPins,
  source: AsyncIterable<Buffer | Uint8Array | string>,
  opts: SegmentWriteOptions,
  sealer?: BlockSealer,
): Promise<Segment> {
  const refs: BlockRef[] = [];
  const inFlight = new Set<Promise<void>>();
  let firstError: unknown;
  // Plaintext per block: the block size, or for a sealed segment the whole units that fit in it.
  const blockSize = sealer
    ? Math.max(1, Math.floor(opts.blockSize / sealer.unit)) * sealer.unit
    : opts.blockSize;
  // The last full block is held back until more than a tail's worth of bytes follows it: a stream that ends
  // sooner makes one slightly larger block instead of a second tiny one, with its own file, fsync and read.
  // Blocks are allocated with room for that tail.
  const tailLimit = Math.floor(opts.blockSize / TAIL_FRACTION);
  const capacity = blockSize + tailLimit;
  const nameBlock = namerFor(sealer, capacity);
  // Block memory is reused once a block is written (see SpareBlocks).
  const newBlock = () => spareBlocks.take(capacity);
  let held: Buffer | undefined;
  let current = newBlock();
  let fill = 0;
  let total = 0;
  let stored = 0;
  let flushed = 0;

  // A block is named (hashed, or sealed, on a worker) and written while the next ones fill; its ref takes its
  // place in `refs` at once and its name and size when known. It is pinned before it is written.
  const flushBlock = async (data: Buffer, last: boolean) => {
    const ref: BlockRef = { hash: '', size: 0 };
    refs.push(ref);
    const at = flushed;
    flushed += data.length;
    const p = nameBlock(data, at, last)
      .then(({ stored: block, hash, release }) => {
        ref.hash = hash;
        ref.size = block.length;
        stored += block.length;
        pins.pin([hash]);
        return blocks.write(block, hash).then(release);
      })
      .catch((err: unknown) => {
        firstError ??= err;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight);
    if (firstError) throw firstError;
  };

  try {
    for await (const piece of source) {
      let chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
      total += chunk.length;
      while (chunk.length > 0) {
        const n = Math.min(chunk.length, blockSize - fill);
        current.set(chunk.subarray(0, n), fill);
        fill += n;
        chunk = chunk.subarray(n);
        if (held && fill > tailLimit) {
          const full = held;
          held = undefined;
          await flushBlock(full.subarray(0, blockSize), false);
        }
        if (fill === blockSize) {
          held = current;
          current = newBlock();
          fill = 0;
        }
      }
    }
    if (refs.length === 0 && !held) {
      const size = sealer ? sealer.sealedSize(total, 0) : total;
      if (size <= opts.inlineThreshold) {
        const plain = current.subarray(0, fill);
        const inline = sealer ? sealer.sealInline(plain) : Buffer.from(plain);
        return { plainSize: total, storedSize: inline.length, blocks: [], inline };
      }
    }
    if (held) {
      current.copy(held, blockSize, 0, fill);
      await flushBlock(held.subarray(0, blockSize + fill), true);
    } else if (fill > 0 || refs.length === 0) {
      // A last block of its own (or a sealed segment's only one, which holds at least the stream's header).
      await flushBlock(current.subarray(0, fill), true);
    }
    await Promise.all(inFlight);
    if (firstError) throw firstError;
  } catch (err) {
    await Promise.allSettled(inFlight);
    pins.unpin(refs.filter((r) => r.hash !== '').map((r) => r.hash));
    throw err;
  }
  return { plainSize: total, storedSize: stored, blocks: refs };
}

/** Blocks being read ahead of a segment's consumer (memory: this many blocks per open read). */
const READ_AHEAD = 3;

// Streams stored bytes [start, end) of a segment, verifying every block read as `opts` asks (the next blocks
// are fetched while the current one is consumed). Each block buffer yielded is the consumer's own (inline data is not).
// The stream is in object mode so that a reader takes the blocks one by one, never joined into a copy.
export function readSegment(
  blocks: BlockIo,
  segment: Segment,
  start: number,
  end: number,
  opts: BlockReadOptions = {},
): Readable {
  return Readable.from(segmentChunks(blocks, segment, start, end, opts), {
    objectMode: true,
    highWaterMark: 1,
  });
}

/**
 * Stored bytes [start, end) of a segment for a reader that authenticates them itself (BlockReadOptions.verify
 * false): blocks on this node's disk as file slices, for the reader to read where it uses them (a worker
 * thread), others read without their hash check. Inline bytes come as they are.
 */
export async function* segmentSlices(
  blocks: BlockIo,
  segment: Segment,
  start: number,
  end: number,
): AsyncGenerator<Buffer | FileSlice> {
  if (end <= start) return;
  if (!segment.inline && blocks.slice) {
    const slices = blocksTouched(segment, start, end).map((w) => blocks.slice!(w.hash, w.from, w.to));
    if (slices.every((slice) => slice !== undefined)) {
      yield* slices as FileSlice[];
      return;
    }
  }
  yield* segmentChunks(blocks, segment, start, end, { verify: false });
}

/** The blocks of `segment` that hold bytes [start, end), and which of their bytes. */
function blocksTouched(
  segment: Segment,
  start: number,
  end: number,
): { hash: BlockHash; from: number; to: number }[] {
  const wanted: { hash: BlockHash; from: number; to: number }[] = [];
  let offset = 0;
  for (const ref of segment.blocks) {
    const blockStart = offset;
    const blockEnd = offset + ref.size;
    offset = blockEnd;
    if (blockEnd <= start) continue;
    if (blockStart >= end) break;
    wanted.push({
      hash: ref.hash,
      from: Math.max(start, blockStart) - blockStart,
      to: Math.min(end, blockEnd) - blockStart,
    });
  }
  return wanted;
}

async function* segmentChunks(
  blocks: BlockIo,
  segment: Segment,
  start: number,
  end: number,
  opts: BlockReadOptions,
): AsyncGenerator<Buffer> {
  if (end <= start) return;
  if (segment.inline) {
    yield segment.inline.subarray(start, end);
    return;
  }
  const wanted = blocksTouched(segment, start, end);
  // Reads run ahead of the consumer by READ_AHEAD blocks, so the reader threads stay busy while it works.
  const reads: Promise<Buffer>[] = [];
  let issued = 0;
  const issue = () => {
    while (issued < wanted.length && reads.length < READ_AHEAD) {
      const p = blocks.read(wanted[issued++]!.hash, opts);
      p.catch(() => undefined); // surfaced when awaited
      reads.push(p);
    }
  };
  for (let i = 0; i < wanted.length; i++) {
    issue();
    const data = await reads.shift()!;
    issue();
    const w = wanted[i]!;
    yield data.subarray(w.from, w.to);
  }
}
