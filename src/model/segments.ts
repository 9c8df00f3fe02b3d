// model/segments: turning a byte stream into stored blocks and back. A segment is written block by block
// (bounded memory: at most a few blocks in flight) and read back with each block's hash verified.
import { Readable } from 'node:stream';
import { BlockStore, type BlockHash, type BlockIo } from '../block/block-store.js';
import type { BlockRef, Segment } from './types.js';

const WRITES_IN_FLIGHT = 2;

// Hashes of blocks written for an operation that has not committed yet: the garbage collector must not
// remove them even though no record refers to them.
export class BlockPins {
  private readonly counts = new Map<BlockHash, number>();

  pin(hashes: Iterable<BlockHash>): void {
    for (const h of hashes) this.counts.set(h, (this.counts.get(h) ?? 0) + 1);
  }

  unpin(hashes: Iterable<BlockHash>): void {
    for (const h of hashes) {
      const n = (this.counts.get(h) ?? 0) - 1;
      if (n <= 0) this.counts.delete(h);
      else this.counts.set(h, n);
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

// Consumes `source` and stores it. The returned segment's blocks are pinned; the caller unpins them once the
// record that refers to them has committed (or the operation failed).
export async function writeSegment(
  blocks: BlockIo,
  pins: BlockPins,
  source: AsyncIterable<Buffer | Uint8Array | string>,
  opts: SegmentWriteOptions,
): Promise<Segment> {
  const refs: BlockRef[] = [];
  const inFlight = new Set<Promise<void>>();
  let firstError: unknown;
  let current = Buffer.allocUnsafe(opts.blockSize);
  let fill = 0;
  let total = 0;

  const flushBlock = async (data: Buffer) => {
    const hash = BlockStore.hashOf(data);
    pins.pin([hash]);
    refs.push({ hash, size: data.length });
    const p = blocks
      .write(data, hash)
      .then(() => undefined)
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
        const n = Math.min(chunk.length, opts.blockSize - fill);
        current.set(chunk.subarray(0, n), fill);
        fill += n;
        chunk = chunk.subarray(n);
        if (fill === opts.blockSize) {
          const full = current;
          current = Buffer.allocUnsafe(opts.blockSize);
          fill = 0;
          await flushBlock(full);
        }
      }
    }
    if (refs.length === 0 && total <= opts.inlineThreshold) {
      return {
        plainSize: total,
        storedSize: total,
        blocks: [],
        inline: Buffer.from(current.subarray(0, fill)),
      };
    }
    if (fill > 0) await flushBlock(Buffer.from(current.subarray(0, fill)));
    await Promise.all(inFlight);
    if (firstError) throw firstError;
  } catch (err) {
    await Promise.allSettled(inFlight);
    pins.unpin(refs.map((r) => r.hash));
    throw err;
  }
  return { plainSize: total, storedSize: total, blocks: refs };
}

// Streams stored bytes [start, end) of a segment, verifying every block read (the next block is fetched
// while the current one is consumed).
export function readSegment(blocks: BlockIo, segment: Segment, start: number, end: number): Readable {
  return Readable.from(segmentChunks(blocks, segment, start, end), { objectMode: false, highWaterMark: 1 });
}

async function* segmentChunks(
  blocks: BlockIo,
  segment: Segment,
  start: number,
  end: number,
): AsyncGenerator<Buffer> {
  if (end <= start) return;
  if (segment.inline) {
    yield segment.inline.subarray(start, end);
    return;
  }
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
  let next = wanted.length > 0 ? blocks.read(wanted[0]!.hash) : undefined;
  for (let i = 0; i < wanted.length; i++) {
    const data = await next!;
    next = i + 1 < wanted.length ? blocks.read(wanted[i + 1]!.hash) : undefined;
    next?.catch(() => undefined); // surfaced when awaited
    const w = wanted[i]!;
    yield data.subarray(w.from, w.to);
  }
}
