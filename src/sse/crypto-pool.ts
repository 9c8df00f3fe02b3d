// sse/crypto-pool: the encryption and decryption of object data on worker threads (crypto-worker), so that the
// thread serving requests only moves bytes: an SSE-C PUT or GET then costs it about what a plaintext one does.
//
// - Writes: each stored block is sealed on its own (crypto/aead-stream sealRun) into memory the caller reuses,
//   and named (SHA-256) in the same visit, so a block crosses to the worker and back once.
// - Reads: each read is a session on one worker (util/worker-pool throughSession): the worker holds the read's
//   RangeOpener, and ciphertext pieces reach it in order, a few ahead of the consumer.
// Stream keys travel as KeyObjects, never as JavaScript buffers.
import type { KeyObject } from 'node:crypto';
import type { BlockHash } from '../block/hash.js';
import { IntegrityError, type RangeDecryptOptions } from '../crypto/aead-stream.js';
import { BlockMissingError } from '../block/block-store.js';
import type { FileSlice } from '../util/file-slice.js';
import {
  lazyWorkerPool,
  moveBytes,
  reviveKnown,
  throughSession,
  type MovedBytes,
} from '../util/worker-pool.js';

/** What a decryption session is opened with. */
export interface DecryptSetup {
  key: KeyObject;
  options: RangeDecryptOptions;
}

/** A block to seal: the run of plaintext at chunk `firstChunk` of the stream, into `out`. */
export interface SealCall {
  op: 'seal';
  key: KeyObject;
  /** The stream's header: written first when firstChunk is 0. */
  header: Uint8Array;
  firstChunk: number;
  endsStream: boolean;
  /** Whether the sealed block is named (its SHA-256): '' comes back otherwise. */
  named: boolean;
  plain: MovedBytes;
  out: ArrayBuffer;
}

export interface SealReply {
  out: ArrayBuffer;
  length: number;
  hash: BlockHash;
  plain: ArrayBuffer;
}

/**
 * The S3 error for a block file slice that could not be read (util/file-slice fileMissing), as BlockStore
 * reports a missing block; others unchanged.
 */
export function storedDataError(err: unknown): never {
  if (err instanceof Error && err.name === 'FileMissing') throw new BlockMissingError(err.message);
  throw err;
}

const cryptoPool = lazyWorkerPool(new URL('./crypto-worker.js', import.meta.url), () =>
  reviveKnown({ IntegrityError, RangeError, FileMissing: BlockMissingError }),
);

/**
 * Seals a block on a worker: see SealCall. `plain` and `out` must each be the only view of their whole
 * memory that anyone uses (both move to the worker); both come back, `sealed` as a view of out's memory.
 */
export async function sealOffThread(
  key: KeyObject,
  header: Uint8Array,
  plain: Buffer,
  out: Buffer,
  firstChunk: number,
  endsStream: boolean,
  named = true,
): Promise<{ sealed: Buffer; hash: BlockHash; plain: Buffer }> {
  const moved = moveBytes(plain, true);
  const outMemory = moveBytes(out, true).data;
  const call: SealCall = {
    op: 'seal',
    key,
    header: Uint8Array.from(header),
    firstChunk,
    endsStream,
    named,
    plain: moved,
    out: outMemory,
  };
  const reply = await cryptoPool().call<SealReply>(call as unknown as Record<string, unknown>, [
    moved.data,
    outMemory,
  ]);
  return {
    sealed: Buffer.from(reply.out, 0, reply.length),
    hash: reply.hash,
    plain: Buffer.from(reply.plain, moved.offset, moved.length),
  };
}

/**
 * Decrypts `cipher` (exactly the slice `options.range` names) on a worker, yielding verified plaintext in order;
 * pieces given as file slices are read by the worker. Throws IntegrityError as RangeOpener does, and a 500
 * S3Error for a file slice that cannot be read. With `cipherOwned`, each piece's whole ArrayBuffer is the
 * caller's to give up and moves to the worker without a copy.
 */
export function decryptOffThread(
  key: KeyObject,
  options: RangeDecryptOptions,
  cipher: AsyncIterable<Buffer | FileSlice>,
  cipherOwned: boolean,
): AsyncGenerator<Buffer> {
  // Small values are copied into the message on their own: cloning a view clones all of its ArrayBuffer.
  const { header, range, context } = options;
  const own = { header: Uint8Array.from(header), range, context: context && Uint8Array.from(context) };
  const setup: DecryptSetup = { key, options: own };
  return throughSession(cryptoPool(), setup, cipher, cipherOwned);
}
