// backend/seal-stream: a plaintext body sealed on its way to the backend, block by block with the same sealer
// the block store uses (sse/ ObjectSealer: whole 64 KiB chunks per block, on a worker thread), so the bytes
// stored are the encrypted stream of crypto/aead-stream. The next blocks are sealed while one is sent, and
// nothing is kept once sent: an object of any size goes through in a few blocks of memory.
import { CHUNK_SIZE } from '../crypto/aead-stream.js';
import type { BlockSealer } from '../model/segments.js';
import { S3Error } from '../util/s3-error.js';

/** Plaintext per sealed block: 16 chunks, the size the block store uses by default. */
const BLOCK_PLAIN = 16 * CHUNK_SIZE;
/** A whole object up to this size is sealed on this thread (as the block store seals inline objects): a trip
 * to the worker would cost more than the sealing. */
const SEAL_HERE_MAX = CHUNK_SIZE;
/**
 * Blocks sealed ahead of the one being sent: while the backend is slow to take a block (it writes it), the
 * client's next blocks are still read and sealed, so that neither side waits on the other at every block.
 */
const SEALED_AHEAD = 3;

function incomplete(declared: number, got: number): S3Error {
  return new S3Error(
    'IncompleteBody',
    400,
    `You did not provide the number of bytes specified by the Content-Length HTTP header (${declared}, got ${got}).`,
  );
}

/**
 * The sealed stream of `source`, which must be exactly `plainSize` bytes (a body that is shorter or longer
 * fails before its last block is sent, so the backend never stores it).
 */
export async function* sealStream(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  plainSize: number,
  sealer: BlockSealer,
): AsyncGenerator<Buffer> {
  // Own memory (never the shared pool): the sealer moves it to a worker thread and back. No block is larger
  // than what is left of the body (at least a byte, so that a body longer than declared is seen).
  const blockFor = (left: number) => Buffer.allocUnsafeSlow(Math.min(BLOCK_PLAIN, Math.max(left, 1)));
  let block = blockFor(plainSize);
  let filled = 0;
  let at = 0;
  const sealing: Promise<Buffer>[] = [];
  const seal = (last: boolean): Promise<Buffer> => {
    const plain = block.subarray(0, filled);
    const out = Buffer.allocUnsafeSlow(sealer.sealedSize(filled, at));
    // Named by nothing: the backend keeps the stream by its key, so the block's hash would be a pass for naught.
    const done = sealer.seal(plain, out, at, last, false).then((r) => r.sealed);
    at += filled;
    block = blockFor(plainSize - at);
    filled = 0;
    return done;
  };
  try {
    for await (const piece of source) {
      let bytes = typeof piece === 'string' ? Buffer.from(piece) : piece;
      while (bytes.length > 0) {
        if (filled === block.length) {
          // More follows, so this block is not the last: seal it, and send the oldest sealed one once enough
          // are ahead.
          sealing.push(seal(false));
          if (sealing.length > SEALED_AHEAD) yield await sealing.shift()!;
        }
        const n = Math.min(bytes.length, block.length - filled);
        block.set(bytes.subarray(0, n), filled);
        filled += n;
        bytes = bytes.subarray(n);
        if (at + filled > plainSize) throw incomplete(plainSize, at + filled);
      }
    }
    if (at + filled !== plainSize) throw incomplete(plainSize, at + filled);
    if (at === 0 && filled <= SEAL_HERE_MAX) {
      yield sealer.sealInline(block.subarray(0, filled));
      return;
    }
    sealing.push(seal(true));
    while (sealing.length > 0) yield await sealing.shift()!;
  } finally {
    // A body that failed half-way leaves seals running: let them finish quietly, nothing reads them.
    for (const left of sealing) left.catch(() => undefined);
  }
}
